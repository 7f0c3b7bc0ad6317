/*
 * t_keys.c - peer key pairs: generation, file modes, refusal of unsafe
 * private keys, load round trip, strict parsing, fingerprints.
 *
 * Works in a fresh temporary directory under $TMPDIR (default /tmp).
 */
#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mgate/keys.h"
#include "tap.h"

static const char *
S(const char *s)
{
	return s;
}

static char dir[256];

static const char *
P(const char *name)
{
	static char buf[4][512];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

int
main(void)
{
	struct mg_keypair	*kp = NULL, *kp2 = NULL;
	struct mg_pubkey	 pub, pub2;
	struct stat		 st;
	char			 line[512], fpr[MG_KEY_FPR_LEN], fpr2[MG_KEY_FPR_LEN];
	const char		*tmp = getenv("TMPDIR");
	FILE			*f;
	enum mg_err		 e;
	size_t			 i;

	snprintf(dir, sizeof(dir), "%s/t_keys.XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}

	e = keys_generate_comment(P("site.key"), P("site.pub"), "site one");
	is_int(e, MG_OK, "keygen %s", keys_errmsg());
	ok(stat(P("site.key"), &st) == 0 && (st.st_mode & 0777) == 0600,
	    "private key file mode 0600");
	ok(stat(P("site.pub"), &st) == 0 && (st.st_mode & 0077) != 0077,
	    "public key file exists");
	e = keys_generate(P("site.key"), P("other.pub"));
	is_int(e, MG_EEXIST, "keygen refuses to overwrite a private key");
	ok(access(P("other.pub"), F_OK) != 0, "... and writes no public key");
	e = keys_generate(P("new.key"), P("site.pub"));
	is_int(e, MG_EEXIST, "keygen refuses to overwrite a public key");
	ok(access(P("new.key"), F_OK) != 0,
	    "... and removes the private key it made");

	e = keys_load_private(P("site.key"), &kp);
	is_int(e, MG_OK, "load private key %s", keys_errmsg());
	e = keys_load_public(P("site.pub"), &pub);
	is_int(e, MG_OK, "load public key %s", keys_errmsg());
	ok(kp != NULL && memcmp(kp->pub.sign, pub.sign, MG_KEY_LEN) == 0 &&
	    memcmp(kp->pub.kx, pub.kx, MG_KEY_LEN) == 0,
	    "public key file matches the private key");
	is_str(S(pub.comment), "site one", "comment kept");
	keys_fingerprint(&pub, fpr, sizeof(fpr));
	keys_fingerprint(&kp->pub, fpr2, sizeof(fpr2));
	ok(strncmp(fpr, "SHA256:", 7) == 0 && strlen(fpr) == 7 + 43 &&
	    strcmp(fpr, fpr2) == 0, "fingerprint %s", fpr);
	is_int(keys_format_public(&pub, line, sizeof(line)), MG_OK,
	    "format public line");
	e = keys_parse_public(line, &pub2);
	ok(e == MG_OK && memcmp(&pub, &pub2, sizeof(pub)) == 0,
	    "public line round trip: %s", line);

	/* Unsafe modes are refused, with what to do. */
	{
		static const mode_t modes[] = { 0640, 0604, 0660, 0644, 0602,
		    0620 };

		for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
			chmod(P("site.key"), modes[i]);
			e = keys_load_private(P("site.key"), &kp2);
			ok(e == MG_ENOPERM && kp2 == NULL &&
			    strstr(keys_errmsg(), "chmod 600") != NULL,
			    "mode %04o refused: %s", (unsigned)modes[i],
			    keys_errmsg());
		}
		chmod(P("site.key"), 0600);
	}
	/* A symlink to the private key is refused. */
	symlink(P("site.key"), P("link.key"));
	e = keys_load_private(P("link.key"), &kp2);
	ok(e == MG_ENOPERM && strstr(keys_errmsg(), "symbolic"),
	    "symlink refused: %s", keys_errmsg());
	e = keys_load_private(P("missing.key"), &kp2);
	is_int(e, MG_ENOTFOUND, "missing key: %s", keys_errmsg());

	/* Malformed lines. */
	{
		static const char *bad[] = {
			"",
			"mgate-peer-2 AAAA AAAA",
			"mgate-peer-1 xwG/kTH7NdziJkCeYiFBsrz02wMxOQ48oxGea/XTeUA=",
			"mgate-peer-1 xwG/kTH7NdziJkCeYiFBsrz02wMxOQ48oxGea/XTeU= "
			    "r16AZhIg6mnYawC8+rjXIOtzY4wN+HgJYOKQ1AILMCs=",
			"mgate-peer-1 xwG/kTH7NdziJkCeYiFBsrz02wMxOQ48oxGea/XTeUA= "
			    "r16AZhIg6mnYawC8+rjXIOtzY4wN+HgJYOKQ1AILM!s=",
		};

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			e = keys_parse_public(bad[i], &pub2);
			ok(e == MG_EDATA, "bad public line %zu refused: %s", i,
			    keys_errmsg());
		}
		e = keys_parse_public("mgate-peer-1 xwG/kTH7NdziJkCeYiFBsrz02w"
		    "MxOQ48oxGea/XTeUA= r16AZhIg6mnYawC8+rjXIOtzY4wN+HgJYOKQ1A"
		    "ILMCs=\n", &pub2);
		ok(e == MG_OK && pub2.comment[0] == '\0',
		    "public line without comment");
		e = keys_parse_private("mgate-private-1 AAAA BBBB", &kp2);
		ok(e == MG_EDATA && kp2 == NULL, "bad private line refused: %s",
		    keys_errmsg());
	}
	/* A public key file with comments first; a private file with junk. */
	f = fopen(P("c.pub"), "w");
	fprintf(f, "# peer gateway\n\n%s", line);
	fclose(f);
	e = keys_load_public(P("c.pub"), &pub2);
	ok(e == MG_OK && memcmp(pub2.sign, pub.sign, MG_KEY_LEN) == 0,
	    "public key file with leading comments");
	f = fopen(P("junk.key"), "w");
	fprintf(f, "hello\n");
	fclose(f);
	chmod(P("junk.key"), 0600);
	e = keys_load_private(P("junk.key"), &kp2);
	ok(e == MG_EDATA && strstr(keys_errmsg(), "junk.key: not an mgate "
	    "private key"), "junk private key: %s", keys_errmsg());

	keys_free(kp);
	unlink(P("site.key"));
	unlink(P("site.pub"));
	unlink(P("link.key"));
	unlink(P("c.pub"));
	unlink(P("junk.key"));
	rmdir(dir);
	return done();
}
