/*
 * config.h - mgate.conf, parsed from one table.
 *
 * The file holds `key = value' lines for global settings and sections
 * `[peer NAME]' whose keys describe the other end of a link.  Every key
 * has one row in a table (config.c): name, type, default, bounds and a
 * line of documentation; the parser, the validator and
 * `mgate check-config' all walk that table.  Errors read
 * "FILE:LINE: what is wrong" and map to EX_CONFIG.
 */
#ifndef MGATE_CONFIG_H
#define MGATE_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "mgate/err.h"

#define MG_CONFIG_DEFAULT	"/etc/mgate/mgate.conf"

enum mg_transport { MG_TR_SSH, MG_TR_SMTP, MG_TR_SMARTHOST, MG_TR_FILE };
enum mg_logdest_cfg { MG_LD_SYSLOG, MG_LD_STDERR };
enum mg_role { MG_ROLE_SITE, MG_ROLE_GATEWAY };
enum mg_local { MG_LOCAL_MAILDIR, MG_LOCAL_MBOX, MG_LOCAL_MDA };

struct mg_peer {
	char		*name;
	int		 line;		/* where the section starts */
	int		 transport;	/* enum mg_transport */
	char		*host;
	uint64_t	 port;
	char		*user;
	char		*identity_file;
	char		*known_hosts;
	char		*public_key;	/* the peer's bundle public key */
	uint64_t	 max_bundle_size;
	uint64_t	 connect_timeout;
	uint64_t	 io_timeout;
	char		*sender_domains;
	char		*recipients;
	char		*domains;
	char		*smtp_password_hash;
	char		*password_file;
	char		*tls_ca_file;
	char		*tls_fingerprint;
	struct mg_peer	*next;
};

struct mg_config {
	char		*path;
	int		 role;			/* enum mg_role */
	char		*spool_directory;
	char		*myhostname;
	char		*mydomain;
	int		 log_destination;	/* enum mg_logdest_cfg */
	uint64_t	 message_size_limit;
	uint64_t	 header_size_limit;
	uint64_t	 recipient_limit;
	int		 allow_nul_bytes;
	int		 pickup_after_queue;
	char		*local_name;
	char		*private_key;
	char		*default_peer;
	int		 local_delivery;	/* MG_LOCAL_* */
	char		*local_mailbox;
	char		*mda_command;
	char		*dns_resolver;
	uint64_t	 smtp_port;
	char		*smtp_helo_name;
	int		 smtp_tls_policy;	/* enum tls_policy */
	char		*smtp_tls_policy_map;
	char		*smtp_tls_ca_file;
	uint64_t	 smtp_connect_timeout;
	uint64_t	 smtp_command_timeout;
	uint64_t	 smtp_data_timeout;
	uint64_t	 delivery_concurrency;
	uint64_t	 destination_concurrency;
	uint64_t	 retry_first;
	uint64_t	 maximal_backoff;
	uint64_t	 maximal_queue_lifetime;
	uint64_t	 history_lifetime;
	uint64_t	 queue_run_interval;
	uint64_t	 max_received_headers;
	char		*daemon_user;
	char		*smtpd_listen;
	char		*smtpd_tls_cert_file;
	char		*smtpd_tls_key_file;
	uint64_t	 smtpd_max_sessions;
	uint64_t	 smtpd_timeout;
	uint64_t	 smtpd_max_errors;
	struct mg_peer	*peers;
};

/*
 * Load path (NULL: $MGATE_CONFIG, else MG_CONFIG_DEFAULT).  On error
 * *cfg is NULL and errbuf holds "file:line: reason".
 */
enum mg_err mg_config_load(const char *path, struct mg_config **cfg,
	    char *errbuf, size_t errlen);
/* Parse text already in memory; name is used in messages. */
enum mg_err mg_config_parse(const char *name, const char *text, size_t len,
	    struct mg_config **cfg, char *errbuf, size_t errlen);
void	mg_config_free(struct mg_config *);
/* Print the effective configuration (defaults included) as a config file. */
void	mg_config_print(const struct mg_config *, FILE *);
/* Print every key with its type, default and documentation. */
void	mg_config_print_doc(FILE *);
const struct mg_peer *mg_config_peer(const struct mg_config *,
	    const char *name);
const char *mg_transport_name(int);

#endif
