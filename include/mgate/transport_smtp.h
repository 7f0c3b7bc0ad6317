/*
 * transport_smtp.h - the sync protocol over an SMTP connection.
 *
 * For sites that can reach only a submission port: connect to the
 * gateway's listener, STARTTLS (always; the certificate checked against
 * tls_ca_file, a pinned tls_fingerprint, or the system's CAs), AUTH
 * PLAIN with the site's password, then the X-MGATE-SYNC verb; from there
 * on the connection carries the same sync protocol as an SSH channel.
 */
#ifndef MGATE_TRANSPORT_SMTP_H
#define MGATE_TRANSPORT_SMTP_H

#include <stddef.h>

#include "mgate/config.h"
#include "mgate/err.h"

struct mg_stream;
struct smtp_sync_conn;

enum mg_err smtp_sync_connect(const struct mg_peer *, const char *login,
	    struct smtp_sync_conn **, char *errbuf, size_t errlen);
struct mg_stream *smtp_sync_stream(struct smtp_sync_conn *);
void	smtp_sync_wire_bytes(struct smtp_sync_conn *, unsigned long long *out,
	    unsigned long long *in);
void	smtp_sync_close(struct smtp_sync_conn *);

#endif
