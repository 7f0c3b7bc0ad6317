/*
 * cmd_bundle.c - keygen, export and import: bundles by hand.
 *
 * `mgate export' packs what is queued for a peer into a bundle file for
 * a USB stick; `mgate import' verifies a bundle file, commits what it
 * carries, and writes an acknowledgement bundle to carry back.  The
 * messages stay "bundled" at the sender until that acknowledgement is
 * imported there.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mgate/cmd.h"
#include "mgate/fsutil.h"
#include "mgate/history.h"
#include "mgate/inbound.h"
#include "mgate/passwd.h"
#include "mgate/keys.h"
#include "mgate/log.h"
#include "mgate/packer.h"
#include "mgate/spool.h"
#include "mgate/unpacker.h"

int
cmd_keygen(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mg_pubkey	 pub;
	const char		*comment = NULL, *priv, *pubpath;
	char			 def[4200], line[512], fpr[MG_KEY_FPR_LEN];
	enum mg_err		 e;
	int			 i = 0;

	if (argc >= 2 && strcmp(argv[0], "-C") == 0) {
		comment = argv[1];
		i = 2;
	}
	if (argc - i < 1 || argc - i > 2) {
		cmd_die_msg(ctx, "usage: mgate keygen [-C comment] PRIVATE "
		    "[PUBLIC]");
		return EX_USAGE;
	}
	priv = argv[i];
	if (argc - i == 2)
		pubpath = argv[i + 1];
	else {
		if (mg_path(def, sizeof(def), "%s.pub", priv) != MG_OK) {
			cmd_die_msg(ctx, "%s: path too long", priv);
			return EX_USAGE;
		}
		pubpath = def;
	}
	if ((e = keys_generate_comment(priv, pubpath, comment)) != MG_OK) {
		cmd_die_msg(ctx, "%s", keys_errmsg());
		return mg_err_exit(e);
	}
	if (keys_load_public(pubpath, &pub) == MG_OK &&
	    keys_format_public(&pub, line, sizeof(line)) == MG_OK) {
		keys_fingerprint(&pub, fpr, sizeof(fpr));
		printf("private key: %s (keep it secret, mode 0600)\n"
		    "public key:  %s\nfingerprint: %s\n%s", priv, pubpath, fpr,
		    line);
	}
	return EX_OK;
}


/* Copy src to dst durably (tmp, fsync, rename, fsync dir). */
static enum mg_err
copy_file(const char *src, const char *dst, char *err, size_t errlen)
{
	char		 tmp[4200], dir[4200], buf[65536], *slash;
	ssize_t		 n;
	int		 in = -1, out = -1;
	enum mg_err	 e = MG_OK;

	if (mg_path(tmp, sizeof(tmp), "%s.tmp", dst) ||
	    mg_path(dir, sizeof(dir), "%s", dst)) {
		snprintf(err, errlen, "%s: path too long", dst);
		return MG_EUSAGE;
	}
	if ((slash = strrchr(dir, '/')) != NULL)
		*(slash == dir ? slash + 1 : slash) = '\0';
	else
		strcpy(dir, ".");
	{
		struct stat st;

		/* Never rename over a device or a directory: /dev/null! */
		if (lstat(dst, &st) == 0 && !S_ISREG(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a regular "
			    "file; name a new file", dst);
			return MG_EEXIST;
		}
	}
	if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0 ||
	    (out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) < 0) {
		snprintf(err, errlen, "%s: %s", in < 0 ? src : tmp,
		    strerror(errno));
		e = MG_EIO;
		goto out;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if ((e = mg_write_all(out, buf, (size_t)n)) != MG_OK)
			break;
	if (n < 0 || e != MG_OK || fsync(out) < 0 || close(out) < 0) {
		out = -1;
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		e = errno == ENOSPC ? MG_ENOSPC : MG_EIO;
		goto out;
	}
	out = -1;
	if (rename(tmp, dst) < 0 || mg_fsync_dir(dir) != MG_OK) {
		snprintf(err, errlen, "%s: %s", dst, strerror(errno));
		e = MG_EIO;
	}
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (e != MG_OK)
		unlink(tmp);
	return e;
}

int
cmd_export(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mg_config	*cfg = NULL;
	const struct mg_peer	*peer;
	struct spool		*sp = NULL;
	struct peer_keys	 pk;
	struct pack_result	 res;
	struct spool_bundle	*v = NULL;
	const char		*pname = NULL, *file = NULL, *resend = NULL;
	char			 err[1024], path[4200];
	size_t			 picked, nb = 0, pending = 0;
	enum mg_err		 e;
	int			 rc = EX_OK;

	memset(&pk, 0, sizeof(pk));
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--peer") == 0 && i + 1 < argc)
			pname = argv[++i];
		else if (strcmp(argv[i], "--resend") == 0 && i + 1 < argc)
			resend = argv[++i];
		else if (argv[i][0] != '-' && file == NULL)
			file = argv[i];
		else
			file = NULL, i = argc;
	}
	if (file == NULL) {
		cmd_die_msg(ctx, "usage: mgate export [--peer NAME] "
		    "[--resend BUNDLE-ID] FILE");
		return EX_USAGE;
	}
	if ((cfg = cmd_load_config(ctx)) == NULL)
		return EX_CONFIG;
	if ((peer = cmd_pick_peer(ctx, cfg, pname)) == NULL) {
		rc = EX_CONFIG;
		goto out;
	}
	if ((e = spool_open(cfg->spool_directory, SPOOL_CREATE, &sp, err,
	    sizeof(err))) != MG_OK) {
		cmd_die_msg(ctx, "%s", err);
		rc = mg_err_exit(e);
		goto out;
	}
	if (resend) {
		struct spool_bundle sb;

		if (spool_bundle_get(sp, resend, &sb) != MG_OK) {
			cmd_die_msg(ctx, "bundle %s: not waiting for an "
			    "acknowledgement", resend);
			rc = EX_NOINPUT;
			goto out;
		}
		spool_bundle_free(&sb);
		if ((e = spool_bundle_path(sp, resend, path, sizeof(path))) ||
		    (e = copy_file(path, file, err, sizeof(err)))) {
			cmd_die_msg(ctx, "%s", err);
			rc = mg_err_exit(e);
			goto out;
		}
		printf("bundle %s written again to %s\n", resend, file);
		goto out;
	}
	if ((e = peer_keys_load(cfg, peer, &pk, err, sizeof(err))) != MG_OK) {
		cmd_die_msg(ctx, "%s", err);
		rc = mg_err_exit(e);
		goto out;
	}
	spool_pickup(sp, &picked);
	e = packer_build(sp, &pk, &res, err, sizeof(err));
	if (e == MG_ENOTFOUND) {
		printf("nothing queued for %s; no file written\n", peer->name);
	} else if (e != MG_OK) {
		cmd_die_msg(ctx, "%s", err);
		rc = mg_err_exit(e);
		goto out;
	} else {
		if ((e = spool_bundle_path(sp, res.id, path, sizeof(path))) ||
		    (e = copy_file(path, file, err, sizeof(err)))) {
			cmd_die_msg(ctx, "%s (the bundle stays in the spool: "
			    "mgate export --resend %s FILE)", err, res.id);
			rc = mg_err_exit(e);
			goto out;
		}
		printf("bundle %s for %s: %zu message%s, %zu status record%s,"
		    " %llu bytes (%llu before compression) -> %s\n", res.id,
		    peer->name, res.nmsg, res.nmsg == 1 ? "" : "s",
		    res.nstatus, res.nstatus == 1 ? "" : "s",
		    (unsigned long long)res.size,
		    (unsigned long long)res.raw, file);
	}
	if (spool_bundle_list(sp, peer->name, &v, &nb) == MG_OK) {
		for (size_t i = 0; i < nb; i++) {
			if (v[i].state == SB_READY && (e != MG_OK ||
			    strcmp(v[i].id, res.id) != 0))
				pending++;
			spool_bundle_free(&v[i]);
		}
		free(v);
		if (pending)
			printf("note: %zu earlier bundle%s for %s not yet "
			    "acknowledged (mgate export --resend ID FILE "
			    "writes one again)\n", pending, pending == 1 ?
			    " is" : "s are", peer->name);
	}
out:
	peer_keys_free(&pk);
	spool_close(sp);
	mg_config_free(cfg);
	return rc;
}

int
cmd_import(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mg_config	*cfg = NULL;
	struct spool		*sp = NULL;
	struct mg_keypair	*self = NULL;
	struct peer_keys	 pk;
	struct unpack_result	 res;
	const char		*file = NULL, *ackpath = NULL;
	char			 err[1024], defack[4200], *ids[1];
	enum mg_err		 e;
	int			 rc = EX_OK;

	memset(&pk, 0, sizeof(pk));
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--ack") == 0 && i + 1 < argc)
			ackpath = argv[++i];
		else if (argv[i][0] != '-' && file == NULL)
			file = argv[i];
		else
			file = NULL, i = argc;
	}
	if (file == NULL) {
		cmd_die_msg(ctx, "usage: mgate import [--ack ACKFILE] FILE");
		return EX_USAGE;
	}
	if ((cfg = cmd_load_config(ctx)) == NULL)
		return EX_CONFIG;
	if (cfg->private_key == NULL) {
		cmd_die_msg(ctx, "%s: private_key is not set (make one with "
		    "`mgate keygen')", cfg->path);
		rc = EX_CONFIG;
		goto out;
	}
	if ((e = keys_load_private(cfg->private_key, &self)) != MG_OK) {
		cmd_die_msg(ctx, "%s", keys_errmsg());
		rc = e == MG_ENOPERM ? EX_NOPERM : EX_CONFIG;
		goto out;
	}
	if ((e = spool_open(cfg->spool_directory, SPOOL_CREATE, &sp, err,
	    sizeof(err))) != MG_OK) {
		cmd_die_msg(ctx, "%s", err);
		rc = mg_err_exit(e);
		goto out;
	}
	e = unpacker_apply(sp, cfg, self, NULL, file, &res, err, sizeof(err));
	if (e != MG_OK) {
		cmd_die_msg(ctx, "%s: rejected, nothing imported: %s", file,
		    err);
		rc = mg_err_exit(e);
		goto out;
	}
	if (res.replay)
		printf("bundle %s from %s: imported before; nothing changed\n",
		    res.id, res.peer);
	else
		printf("bundle %s from %s: %zu message%s (%zu new, %zu known),"
		    " %zu status record%s, %zu bundle%s acknowledged\n",
		    res.id, res.peer, res.nmsg, res.nmsg == 1 ? "" : "s",
		    res.created, res.dups, res.nstatus, res.nstatus == 1 ?
		    "" : "s", res.nack, res.nack == 1 ? "" : "s");
	if (cfg->role == MG_ROLE_SITE) {
		size_t n = 0;

		inbound_deliver(sp, cfg, &n);
		if (n)
			printf("%zu recipient%s delivered to local mailboxes\n",
			    n, n == 1 ? "" : "s");
		history_expire(sp, cfg, NULL);
	}
	/*
	 * Acknowledge anything but a pure acknowledgement, also when it
	 * is imported again (remembered, since a replay is not decoded).
	 */
	{
		char key[600];

		snprintf(key, sizeof(key), "%s:%s", res.peer, res.id);
		if (!res.replay && res.nmsg == 0 && res.nstatus == 0) {
			spool_seen_add(sp, "noack", key);
			goto out;
		}
		if (res.replay && spool_seen_check(sp, "noack", key) == MG_OK)
			goto out;
	}
	if (ackpath == NULL) {
		if (mg_path(defack, sizeof(defack), "%s.ack", file) != MG_OK) {
			cmd_die_msg(ctx, "%s: path too long", file);
			rc = EX_USAGE;
			goto out;
		}
		ackpath = defack;
	}
	if ((e = peer_keys_load(cfg, mg_config_peer(cfg, res.peer), &pk, err,
	    sizeof(err))) != MG_OK ||
	    (ids[0] = res.id, e = packer_write_ack(&pk, ids, 1, ackpath, err,
	    sizeof(err))) != MG_OK) {
		cmd_die_msg(ctx, "imported, but the acknowledgement could not"
		    " be written: %s (import the file again to retry)", err);
		rc = mg_err_exit(e);
		goto out;
	}
	printf("acknowledgement for %s written to %s: carry it back and "
	    "`mgate import' it there\n", res.peer, ackpath);
out:
	peer_keys_free(&pk);
	keys_free(self);
	spool_close(sp);
	mg_config_free(cfg);
	return rc;
}

int
cmd_passwd_hash(struct cmd_ctx *ctx, int argc, char **argv)
{
	char	pw[512], hash[256];

	if (argc != 0) {
		cmd_die_msg(ctx, "usage: mgate passwd-hash < password");
		return EX_USAGE;
	}
	if (fgets(pw, sizeof(pw), stdin) == NULL) {
		cmd_die_msg(ctx, "no password on standard input");
		return EX_DATAERR;
	}
	pw[strcspn(pw, "\r\n")] = '\0';
	if (strlen(pw) < 12) {
		cmd_die_msg(ctx, "a password needs at least 12 characters");
		explicit_bzero(pw, sizeof(pw));
		return EX_DATAERR;
	}
	if (passwd_hash(pw, hash, sizeof(hash)) != MG_OK) {
		cmd_die_msg(ctx, "cannot hash the password");
		explicit_bzero(pw, sizeof(pw));
		return EX_SOFTWARE;
	}
	explicit_bzero(pw, sizeof(pw));
	printf("%s\n", hash);
	return EX_OK;
}
