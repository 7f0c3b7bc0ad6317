#!/usr/bin/env bash
# 82-smarthost.t - `transport = smarthost' (src/smarthost.c, `mgate sync
# --peer NAME'): a site without a gateway relays its queue message by
# message through a real Postfix submission server with SASL (Cyrus
# sasldb) and TLS from a test CA.  Issue 6.
#
# One Postfix instance (tests/lib/postfix-instance, Maildirs for
# example.com and example.net) with extra smtpd services (master.cf.extra):
#   sub      127.0.0.1:free   STARTTLS required, AUTH only under TLS, mail
#                             only from authenticated clients (port 587's
#                             role: any port but 465 means STARTTLS)
#   smtps    127.A.B.C:465    TLS from the first byte (smtpd_tls_wrappermode);
#                             on a random loopback address, as mgate takes
#                             port 465 to mean implicit TLS
#   clear    127.0.0.1:free   no STARTTLS, AUTH offered in clear
#   mixed    127.0.0.1:free   STARTTLS offered, AUTH offered before TLS too
#   badname  127.0.0.1:free   like sub, certificate for another name
# clear and mixed are reached through socat relays that record every byte
# the client sends (socat -r): what went over the wire in clear.
#
# Refusals first, with one message queued: each exits 75 (EX_TEMPFAIL) with
# its reason on stderr, the message stays queued, nothing is delivered, and
# Postfix saw no MAIL (and no AUTH where TLS failed):
#   (6) dead link (nothing listens);  (3) wrong password (Postfix logs the
#   failed AUTH);  (7) certificate for another name, a CA file that did not
#   sign it, no CA file (the system's CAs): Postfix logs the client's TLS
#   alert, no AUTH, no MAIL;  (8) a server without STARTTLS
#   that offers AUTH in clear: no AUTH, neither the password nor its base64
#   on the wire.  A password file readable by others: EX_CONFIG (78).
# Then:
#   (1) 587 + STARTTLS + AUTH: the stuck message, three corpus messages and
#       a crafted one (lines starting with ".", a lone "." line, 8-bit
#       text) in ONE connection (connection reuse) with one AUTH, each
#       message byte for byte as `mgate cat' printed it, below Postfix's
#       trace fields (Received ... with ESMTPSA); Postfix logs
#       sasl_username for each; the site's queue is empty afterwards;
#   (2) 465 implicit TLS + AUTH: delivered, no STARTTLS in the session;
#       then by host name (a private /etc/hosts in a mount namespace)
#       with two addresses, the first dead: delivered through the second,
#       the certificate checked against the name;
#   (8) the mixed server: delivered, and the client's clear-text bytes
#       hold STARTTLS but no AUTH and no password;
#   (4) 550 from recipient_access: a message whose only recipient is
#       refused (DATA never sent, RSET, the connection reused for the next
#       message) and one with a refused and an accepted recipient: an RFC
#       3464 report per message in the sender's Maildir (Python's email
#       package: multipart/report, Status 5.1.1, the recipient, the
#       server's reply), the refused recipients "bounced", never retried;
#   (5) 450 for one of two recipients: the other delivered, the 450 one
#       stays queued with the reply in `mgate status', no report, exit 0
#       (every message was tried); after the map changes and Postfix
#       reloads, the next run delivers it exactly once (the other
#       recipient is not sent again); a last run tries nothing.
#
# Needs root (Postfix), postfix, saslpasswd2 (sasl2-bin), openssl, socat,
# jq, python3.
set -uo pipefail
. "$(dirname "$0")/lib/testlib.sh"

need_root "starts Postfix"
need_mgate
need_cmd postfix saslpasswd2 openssl socat jq ss script
CORPUS=$(corpus_dir) || _tap_missing "the shared corpus (../shared/corpus/spamassassin-public)"
mgate_setup

MX=$T/mx
SITE_CONF=$T/site.conf
site() { "$MGATE" -c "$SITE_CONF" "$@"; }
SASL_USER=site
SASL_REALM=smarthost.test
PW='Sm4rthost-test-password'
PW_B64=$(printf '\0%s\0%s' "$SASL_USER" "$PW" | base64 -w0)

# ---------------------------------------------------------------------------
# Addresses and ports.

free_ports() { # N: N distinct free ports on 127.0.0.1
	"$PYTHON3" -c 'import socket, sys
ss = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    ss.append(s)
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}
listening() { [ -n "$(ss -Hltn "src $1 and sport = :$2" 2>/dev/null)" ]; }

# The smtps service: port 465 on a random loopback address nobody uses.
SMTPS_ADDR=
for _ in $(seq 20); do
	a=127.$((RANDOM % 254 + 1)).$((RANDOM % 254 + 1)).$((RANDOM % 253 + 2))
	if ! listening "$a" 465 && ! listening 0.0.0.0 465; then
		SMTPS_ADDR=$a
		break
	fi
done
[ -n "$SMTPS_ADDR" ] || BAIL_OUT "no free loopback address for port 465"

# ---------------------------------------------------------------------------
# Certificates: a test CA; the server's certificate (names
# smtp.smarthost.test, 127.0.0.1 and the smtps address); one for another
# name from the same CA; another CA that signed none of them.

mkdir -p "$T/tls"
(
	cd "$T/tls" || exit 1
	for ca in ca otherca; do
		openssl req -x509 -newkey rsa:2048 -nodes -keyout $ca.key -out $ca.pem \
		    -days 7 -subj "/CN=mgate smarthost test $ca" \
		    -addext "basicConstraints=critical,CA:TRUE" \
		    -addext "keyUsage=critical,keyCertSign,cRLSign" || exit 1
	done
	for c in "right:smtp.smarthost.test:DNS:smtp.smarthost.test,IP:127.0.0.1,IP:$SMTPS_ADDR" \
	    "wrong:wrong.example.org:DNS:wrong.example.org"; do
		IFS=: read -r n cn san <<<"$c"
		openssl req -newkey rsa:2048 -nodes -keyout "$n.key" \
		    -out "$n.csr" -subj "/CN=$cn" || exit 1
		printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
		    "$san" >"$n.ext"
		openssl x509 -req -in "$n.csr" -CA ca.pem -CAkey ca.key \
		    -CAcreateserial -out "$n.pem" -days 7 -extfile "$n.ext" || exit 1
	done
	chmod 644 ./*.pem ./*.key
) >"$T/openssl.log" 2>&1 || BAIL_OUT "openssl: $(tail -n 5 "$T/openssl.log")"

# ---------------------------------------------------------------------------
# Postfix with Cyrus SASL (sasldb, PLAIN and LOGIN).  Debian's Postfix
# reads $config_directory/sasl/smtpd.conf; cyrus_sasl_config_path says the
# same for any other build.

mkdir -p "$MX/conf/sasl"
chmod 0755 "$MX" "$MX/conf" "$MX/conf/sasl"
cat >"$MX/conf/sasl/smtpd.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
sasldb_path: $MX/conf/sasl/sasldb2
mech_list: PLAIN LOGIN
EOF
printf '%s' "$PW" | saslpasswd2 -p -f "$MX/conf/sasl/sasldb2" -c -u "$SASL_REALM" "$SASL_USER" ||
    BAIL_OUT "saslpasswd2 failed"
chown postfix "$MX/conf/sasl/sasldb2"
chmod 0644 "$MX/conf/sasl/smtpd.conf"

cat >"$MX/conf/main.cf.extra" <<EOF
smtpd_tls_cert_file = $T/tls/right.pem
smtpd_tls_key_file = $T/tls/right.key
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_sasl_type = cyrus
cyrus_sasl_config_path = $MX/conf/sasl
smtpd_sasl_path = smtpd
smtpd_sasl_local_domain = $SASL_REALM
smtpd_sasl_auth_enable = no
# Keep every header the site sent (Return-Path: etc.), for the byte checks.
message_drop_headers =
EOF

write_master_extra() { # SUB CLEAR MIXED BADNAME
	local sub="-o smtpd_sasl_auth_enable=yes -o smtpd_client_restrictions=permit_sasl_authenticated,reject"
	cat >"$MX/conf/master.cf.extra" <<EOF
127.0.0.1:$1 inet n - n - - smtpd
  -o syslog_name=sh-sub $sub
  -o smtpd_tls_security_level=encrypt -o smtpd_tls_auth_only=yes
$SMTPS_ADDR:465 inet n - n - - smtpd
  -o syslog_name=sh-smtps $sub
  -o smtpd_tls_wrappermode=yes
127.0.0.1:$2 inet n - n - - smtpd
  -o syslog_name=sh-clear $sub
  -o smtpd_tls_security_level=none -o smtpd_tls_auth_only=no
127.0.0.1:$3 inet n - n - - smtpd
  -o syslog_name=sh-mixed $sub
  -o smtpd_tls_security_level=may -o smtpd_tls_auth_only=no
127.0.0.1:$4 inet n - n - - smtpd
  -o syslog_name=sh-badname $sub
  -o smtpd_tls_security_level=encrypt -o smtpd_tls_auth_only=yes
  -o smtpd_tls_cert_file=$T/tls/wrong.pem -o smtpd_tls_key_file=$T/tls/wrong.key
EOF
}

up=0
for try in 1 2 3; do
	read -r MXPORT SUBPORT CLEARPORT MIXPORT BADPORT DEADPORT CAPCLEAR CAPMIX <<<"$(free_ports 8)"
	write_master_extra "$SUBPORT" "$CLEARPORT" "$MIXPORT" "$BADPORT"
	if "$POSTFIX_INSTANCE" start "$MX" "$MXPORT" >"$T/pf-start.log" 2>&1; then
		on_exit "$(printf '%q stop %q' "$POSTFIX_INSTANCE" "$MX")"
		up=1
		break
	fi
	diag "postfix-instance start (try $try): $(tail -n 5 "$T/pf-start.log")"
	"$POSTFIX_INSTANCE" stop "$MX" >/dev/null 2>&1
done
[ "$up" = 1 ] || BAIL_OUT "cannot start Postfix (see $T/pf-start.log)"
all_up() {
	listening 127.0.0.1 "$SUBPORT" && listening "$SMTPS_ADDR" 465 &&
	    listening 127.0.0.1 "$CLEARPORT" && listening 127.0.0.1 "$MIXPORT" &&
	    listening 127.0.0.1 "$BADPORT"
}
wait_for 10 all_up || BAIL_OUT "Postfix's extra services do not listen: $(tail -n 5 "$MX/log/maillog")"
MAILLOG=$MX/log/maillog

write_access() { # LINES...
	printf '%s\n' '# 82-smarthost.t' "$@" >"$MX/conf/recipient_access"
	"$POSTFIX_INSTANCE" reload "$MX" >/dev/null 2>&1
}
write_access '/^nobody@example\.com$/ 550 5.1.1 <nobody@example.com>: no such user here (82-smarthost)' \
    '/^carol@example\.com$/ 450 4.2.1 <carol@example.com>: mailbox busy, try later (82-smarthost)' ||
    BAIL_OUT "postfix reload failed"

# socat relays in front of clear and mixed, recording the client's bytes.
SOCAT_PIDS=()
for r in "$CAPCLEAR:$CLEARPORT:clear" "$CAPMIX:$MIXPORT:mixed"; do
	IFS=: read -r lport tport name <<<"$r"
	socat -r "$T/$name.c2s" "TCP-LISTEN:$lport,bind=127.0.0.1,reuseaddr,fork" \
	    "TCP:127.0.0.1:$tport" 2>"$T/socat-$name.log" &
	SOCAT_PIDS+=($!)
done
stop_socat() {
	local p
	for p in "${SOCAT_PIDS[@]}"; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	return 0
}
on_exit stop_socat
socat_up() { listening 127.0.0.1 "$CAPCLEAR" && listening 127.0.0.1 "$CAPMIX"; }
wait_for 10 socat_up || BAIL_OUT "socat relays did not come up: $(cat "$T"/socat-*.log)"

# What each service offers after EHLO, asked directly (not through socat).
cat >"$T/ehlo.py" <<'EOF'
import socket, ssl, sys
host, port, wrap = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "tls"
s = socket.create_connection((host, port), timeout=10)
if wrap:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(s)
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        l = f.readline().decode().rstrip("\r\n")
        lines.append(l)
        if len(l) < 4 or l[3] == " ":
            return lines
reply()
s.sendall(b"EHLO probe.example.org\r\n")
print(" ".join(l[4:].split(" ")[0].upper() for l in reply()[1:]))
s.sendall(b"QUIT\r\n")
reply()
EOF
ehlo() { "$PYTHON3" "$T/ehlo.py" "$@" 2>&1; }
E=$(ehlo 127.0.0.1 "$SUBPORT" plain)
like "$E" 'STARTTLS' "sub offers STARTTLS"
unlike "$E" 'AUTH' "sub offers no AUTH before TLS"
like "$(ehlo "$SMTPS_ADDR" 465 tls)" 'AUTH' "smtps ($SMTPS_ADDR:465) offers AUTH under TLS from the first byte"
E=$(ehlo 127.0.0.1 "$CLEARPORT" plain)
like "$E" 'AUTH' "clear offers AUTH in clear"
unlike "$E" 'STARTTLS' "clear offers no STARTTLS"
E=$(ehlo 127.0.0.1 "$MIXPORT" plain)
like "$E" 'STARTTLS.*AUTH|AUTH.*STARTTLS' "mixed offers both STARTTLS and AUTH before TLS"

# ---------------------------------------------------------------------------
# The site: one smarthost peer per server and failure.

printf '%s\n' "$PW" >"$T/pw"
printf '%s\n' "not-$PW" >"$T/badpw"
chmod 600 "$T/pw" "$T/badpw"
peer() { # NAME HOST PORT [KEY = VALUE LINES...]
	local name=$1 host=$2 port=$3
	shift 3
	printf '\n[peer %s]\ntransport = smarthost\nhost = %s\nport = %s\nuser = %s\n' \
	    "$name" "$host" "$port" "$SASL_USER"
	printf 'connect_timeout = 5s\nio_timeout = 30s\n'
	printf '%s\n' "$@"
}
GOOD=("password_file = $T/pw" "tls_ca_file = $T/tls/ca.pem")
{
	cat <<EOF
spool_directory = $T/site
myhostname = ship.example.org
mydomain = example.org
log_destination = stderr
local_mailbox = $T/mail/%u/Maildir/
EOF
	peer sub 127.0.0.1 "$SUBPORT" "${GOOD[@]}"
	peer smtps "$SMTPS_ADDR" 465 "${GOOD[@]}"
	peer dead 127.0.0.1 "$DEADPORT" "${GOOD[@]}"
	peer badpw 127.0.0.1 "$SUBPORT" "password_file = $T/badpw" "tls_ca_file = $T/tls/ca.pem"
	peer badname 127.0.0.1 "$BADPORT" "${GOOD[@]}"
	peer otherca 127.0.0.1 "$SUBPORT" "password_file = $T/pw" "tls_ca_file = $T/tls/otherca.pem"
	peer syscas 127.0.0.1 "$SUBPORT" "password_file = $T/pw"
	peer clear 127.0.0.1 "$CAPCLEAR" "${GOOD[@]}"
	peer mixed 127.0.0.1 "$CAPMIX" "${GOOD[@]}"
	peer openpw 127.0.0.1 "$SUBPORT" "password_file = $T/openpw" "tls_ca_file = $T/tls/ca.pem"
} >"$SITE_CONF"
printf '%s\n' "$PW" >"$T/openpw"
chmod 644 "$T/openpw"
ok "site configuration is valid" site check-config
ok "site spool created" site init

REPORTS=$T/mail/$(id -un)/Maildir
reports() { find "$REPORTS/new" "$REPORTS/cur" -type f 2>/dev/null | LC_ALL=C sort; }
nreports() { reports | grep -c .; }

queue_msg() { # FILE RCPT...: queue at the site, print the queue ID
	local f=$1 out
	shift
	out=$("$MGATE" -v -c "$SITE_CONF" queue -i "$@" <"$f" 2>&1) || {
		diag "queue $*: $out"
		return 1
	}
	[[ $out =~ queued\ as\ ([0-9A-Z]{16}) ]] || { diag "no queue ID in: $out"; return 1; }
	printf '%s\n' "${BASH_REMATCH[1]}"
}
state() { # QID RCPT: the recipient's state at the site, or "gone"
	site list --json 2>/dev/null | jq -r --arg id "$1" --arg r "$2" '
	    [.[] | select(.id == $id) | .recipients[] | select(.address == $r) | .state] |
	    if length == 0 then "gone" else .[0] end'
}
nqueued() { site list --json 2>/dev/null | jq '[.[] | .recipients[] | select(.state == "queued")] | length'; }

maildir() { "$POSTFIX_INSTANCE" maildir "$MX" "$1"; }
nmail() { # ADDRESS: messages in its Maildir
	local d
	d=$(maildir "$1") || return 1
	find "$d/new" "$d/cur" -type f 2>/dev/null | wc -l
}
nmail_all() { find "$MX/mail" -type f \( -path '*/new/*' -o -path '*/cur/*' \) | wc -l; }
postfix_idle() { [ "$("$POSTFIX_INSTANCE" count "$MX")" = 0 ]; }

# Postfix's log since a mark; a session's "disconnect from" line (with its
# command counts) is written when the session ends, after mgate exited.
MARK=0
mark() { MARK=$(wc -l <"$MAILLOG"); }
since() { tail -n "+$((MARK + 1))" "$MAILLOG"; }
svc() { since | grep -E "[[:space:]]sh-$1/smtpd\[[0-9]+\]: " || true; }
nconn() { svc "$1" | grep -c ': connect from '; }
ndisc() { svc "$1" | grep -c ': disconnect from '; }
sessions_done() { [ "$(ndisc "$1")" -ge "$(nconn "$1")" ]; }
disc_lines() { wait_for 10 sessions_done "$1"; svc "$1" | grep ': disconnect from ' | sed 's/.*: disconnect from [^ ]* //'; }

relay() { # PEER: one smarthost run, output in RUN_*, log mark before it
	mark
	run site sync --peer "$1"
	wait_for 10 sessions_done "${2:-$1}"
}

# ---------------------------------------------------------------------------
# Refusals, with one message queued (a crafted one, delivered later).

{
	printf 'From: Skipper <root@example.org>\nTo: dave@example.net\nSubject: T82 stuck\n\n'
	printf 'First line.\n.\n..two dots\n.leading dot\nCaf\303\251 8-bit text\n\nlast line\n'
} >"$T/stuck.msg"
STUCK=$(queue_msg "$T/stuck.msg" dave@example.net)
ok "a message queued at the site" test -n "$STUCK"
site cat "$STUCK" >"$T/stuck.stored" 2>/dev/null
ok "mgate cat prints it" test -s "$T/stuck.stored"

refused() { # PEER SERVICE ERROR-REGEX WHAT: a refused run (exit 75)
	local p=$1 s=$2 re=$3 what=$4
	relay "$p" "$s"
	is "$RUN_STATUS" 75 "$what: exit 75 (EX_TEMPFAIL)"
	like "$RUN_STDERR" "$re" "$what: the reason on stderr"
	like "$RUN_STDERR" 'mail stays queued' "$what: says the mail stays queued"
	is "$(state "$STUCK" dave@example.net)" queued "$what: the message stays queued"
}

# (6) dead link.
t0=$(date +%s%N)
refused dead none 'connect to 127\.0\.0\.1\[127\.0\.0\.1\]: Connection refused' "dead link"
is "$(( ($(date +%s%N) - t0) / 1000000000 < 5 ))" 1 "dead link: the run gives up at once (one attempt)"

# (3) wrong password.
refused badpw sub 'login as site refused by .*535' "wrong password"
like "$(svc sub)" 'SASL PLAIN authentication failed' "wrong password: Postfix logs the failed AUTH PLAIN"
like "$(svc sub)" 'TLS connection established' "wrong password: the AUTH came under TLS"
D=$(disc_lines sub)
like "$D" 'auth=0/1' "wrong password: one AUTH, refused ($D)"
unlike "$D" 'mail=' "wrong password: no MAIL FROM after the refusal"

# (7) certificates.
refused badname badname 'TLS certificate of 127\.0\.0\.1 not trusted' "certificate for another name"
D=$(disc_lines badname)
is "$(nconn badname)" 1 "another name: mgate reached the server once"
like "$(svc badname)" 'alert bad certificate' "another name: mgate refused the certificate in the handshake (TLS alert)"
like "$D" 'starttls=' "another name: the session got as far as STARTTLS ($D)"
unlike "$D" 'auth=|mail=' "another name: no AUTH, no MAIL"
refused otherca sub 'TLS certificate of 127\.0\.0\.1 not trusted' "CA file that did not sign the certificate"
D=$(disc_lines sub)
unlike "$D" 'auth=|mail=' "another CA: no AUTH, no MAIL ($D)"
like "$(svc sub)" 'alert unknown ca' "another CA: mgate refused the certificate in the handshake (TLS alert)"
refused syscas sub 'TLS certificate of 127\.0\.0\.1 not trusted' "no CA file (the system's CAs)"
unlike "$(disc_lines sub)" 'auth=|mail=' "system CAs: no AUTH, no MAIL"

# (8) AUTH offered in clear, no STARTTLS: nothing is sent, least of all
# the password.
: >"$T/clear.c2s"
refused clear clear 'does not offer STARTTLS' "server without STARTTLS (AUTH offered in clear)"
D=$(disc_lines clear)
is "$(nconn clear)" 1 "no STARTTLS: mgate reached the server once"
unlike "$D" 'auth=|mail=' "no STARTTLS: Postfix saw no AUTH, no MAIL ($D)"
C2S=$(tr -d '\0' <"$T/clear.c2s")
like "$C2S" 'EHLO ship\.example\.org' "no STARTTLS: the recorded client bytes hold the EHLO"
unlike "$C2S" 'AUTH|MAIL' "no STARTTLS: no AUTH, no MAIL on the wire"
ok "no STARTTLS: neither the password nor its base64 on the wire" \
    bash -c '! grep -aqF -e "$1" -e "$2" "$3"' _ "$PW" "$PW_B64" "$T/clear.c2s"

# A password file others can read is a configuration error.
relay openpw sub
is "$RUN_STATUS" 78 "password file readable by others: exit 78 (EX_CONFIG)"
like "$RUN_STDERR" 'chmod 600' "password file readable by others: says chmod 600"
is "$(nconn sub)" 0 "password file readable by others: no connection at all"

postfix_idle
is "$(nmail_all)" 0 "after every refusal: nothing delivered at all"
is "$(state "$STUCK" dave@example.net)" queued "the message is still queued"

# ---------------------------------------------------------------------------
# (1) 587 + STARTTLS + AUTH: several messages, one connection.

cat >"$T/pick.py" <<'EOF'
# pick.py DIR...: the first message (sorted) in each directory that is
# plain LF text with lines under 900 bytes, without its mbox From line.
import os, sys
for d in sys.argv[1:]:
    for name in sorted(os.listdir(d)):
        b = open(os.path.join(d, name), "rb").read()
        if b.startswith(b"From "):
            b = b.split(b"\n", 1)[1]
        if (b"\r" in b or b"\0" in b or len(b) > 100000 or
            max(len(l) for l in b.split(b"\n")) >= 900 or
            b"\n\n" not in b):
            continue
        print(os.path.join(d, name))
        break
EOF
mapfile -t PICKS < <("$PYTHON3" "$T/pick.py" "$CORPUS/easy_ham" "$CORPUS/hard_ham" "$CORPUS/spam")
is "${#PICKS[@]}" 3 "three corpus messages picked"
for i in 0 1 2; do strip_from_line "${PICKS[i]}" >"$T/c$i.msg"; done
C0=$(queue_msg "$T/c0.msg" alice@example.com)
C1=$(queue_msg "$T/c1.msg" bob@example.com)
C2=$(queue_msg "$T/c2.msg" alice@example.net bob@example.net)
{
	printf 'From: Skipper <root@example.org>\nSubject: T82 crafted\n\n'
	printf '.\n..\nnot the end\n'
	head -c 300000 /dev/zero | tr '\0' 'x' | fold -w 76
	printf '\n..\n.x\n'
} >"$T/d.msg"
D0=$(queue_msg "$T/d.msg" bench@example.com)
ok "four more messages queued" test -n "$C0" -a -n "$C1" -a -n "$C2" -a -n "$D0"
for q in "$C0" "$C1" "$C2" "$D0"; do site cat "$q" >"$T/$q.stored"; done
is "$(nqueued)" 6 "six recipients queued"

relay sub
is "$RUN_STATUS" 0 "587: sync exits 0"
[ "$RUN_STATUS" = 0 ] || diag "stderr: $RUN_STDERR"
like "$RUN_STDOUT" '5 messages tried, 6 recipients delivered, 0 bounced, 0 deferred' \
    "587: 5 messages tried, 6 recipients delivered ($RUN_STDOUT)"
is "$(nconn sub)" 1 "587: one connection for the five messages (reused)"
is "$(svc sub | grep -c "sasl_method=PLAIN, sasl_username=$SASL_USER@$SASL_REALM")" 5 \
    "587: Postfix logs sasl_username=$SASL_USER@$SASL_REALM for each of the 5 messages"
like "$(svc sub)" 'TLS connection established' "587: under TLS"
D=$(disc_lines sub)
like "$D" 'ehlo=2 starttls=1 auth=1 mail=5 rcpt=6 data=5 quit=1' "587: EHLO, STARTTLS, EHLO, one AUTH, 5 MAIL, 6 RCPT, 5 DATA, QUIT ($D)"
for qr in "$STUCK dave@example.net" "$C0 alice@example.com" "$C1 bob@example.com" \
    "$C2 alice@example.net" "$C2 bob@example.net" "$D0 bench@example.com"; do
	# shellcheck disable=SC2086 # "QID RCPT": two arguments
	is "$(state $qr)" delivered "587: ${qr#* } delivered at the site"
done
is "$(nqueued)" 0 "587: nothing queued at the site any more"
wait_for 30 postfix_idle || diag "Postfix's queue is not empty"

# Byte comparison: Postfix's file = Return-Path, X-Original-To,
# Delivered-To (virtual(8)), Postfix's Received, then exactly what `mgate
# cat' printed.
cat >"$T/same.py" <<'EOF'
# same.py DELIVERED STORED: exit 0 if DELIVERED is STORED below the
# trace fields Postfix adds; prints Postfix's Received field.
import sys
got = open(sys.argv[1], "rb").read()
want = open(sys.argv[2], "rb").read()
lines = got.split(b"\n")
i = 0
for name in (b"return-path:", b"x-original-to:", b"delivered-to:", b"received:"):
    if name == b"x-original-to:" and not lines[i].lower().startswith(name):
        continue
    if not lines[i].lower().startswith(name):
        print("expected %r at line %d, got %r" % (name, i, lines[i][:80]))
        sys.exit(1)
    start = i
    i += 1
    while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
        i += 1
received = b" ".join(l.strip() for l in lines[start:i]).decode("utf-8", "replace")
rest = b"\n".join(lines[i:])
print(received)
if rest != want:
    n = next((k for k in range(min(len(rest), len(want))) if rest[k] != want[k]),
             min(len(rest), len(want)))
    print("differs at byte %d of %d/%d: got %r want %r" % (n, len(rest), len(want),
          rest[n:n + 40], want[n:n + 40]))
    sys.exit(1)
EOF
same() { # ADDRESS STORED NAME: the address's only message is STORED
	local d f
	d=$(maildir "$1")
	f=$(find "$d/new" "$d/cur" -type f 2>/dev/null)
	if [ "$(printf '%s\n' "$f" | grep -c .)" != 1 ]; then
		fail "$3: exactly one message for $1 (found: $(printf '%s\n' "$f" | grep -c .))"
		return 1
	fi
	run "$PYTHON3" "$T/same.py" "$f" "$2"
	if [ "$RUN_STATUS" = 0 ]; then
		pass "$3: $1 got it byte for byte"
		like "$RUN_STDOUT" 'with ESMTPSA id' "$3: Postfix's Received says ESMTPSA (TLS and AUTH)"
	else
		fail "$3: $1 got it byte for byte"
		diag "$RUN_STDOUT"
	fi
}
wait_for 30 test "$(nmail_all)" -ge 6 || diag "only $(nmail_all) messages at the MX"
same dave@example.net "$T/stuck.stored" "the stuck message (dots, 8-bit)"
same alice@example.com "$T/$C0.stored" "corpus ${PICKS[0]#"$CORPUS/"}"
same bob@example.com "$T/$C1.stored" "corpus ${PICKS[1]#"$CORPUS/"}"
same alice@example.net "$T/$C2.stored" "corpus ${PICKS[2]#"$CORPUS/"} (recipient 1)"
same bob@example.net "$T/$C2.stored" "corpus ${PICKS[2]#"$CORPUS/"} (recipient 2)"
same bench@example.com "$T/$D0.stored" "crafted: 300 KB, dot lines"
is "$(nmail_all)" 6 "the MX holds exactly 6 messages"

# ---------------------------------------------------------------------------
# (2) 465: TLS from the first byte.

printf 'From: Skipper <root@example.org>\nSubject: T82 smtps 1\n\nvia 465\n' >"$T/s1.msg"
printf 'From: Skipper <root@example.org>\nSubject: T82 smtps 2\n\nvia 465 too\n' >"$T/s2.msg"
S1=$(queue_msg "$T/s1.msg" carol@example.net)
S2=$(queue_msg "$T/s2.msg" bench@example.net)
site cat "$S1" >"$T/$S1.stored"
site cat "$S2" >"$T/$S2.stored"
relay smtps
is "$RUN_STATUS" 0 "465: sync exits 0"
like "$RUN_STDOUT" '2 messages tried, 2 recipients delivered, 0 bounced, 0 deferred' "465: both delivered ($RUN_STDOUT)"
is "$(nconn smtps)" 1 "465: one connection"
is "$(svc smtps | grep -c "sasl_username=$SASL_USER@$SASL_REALM")" 2 "465: sasl_username logged for both"
like "$(svc smtps)" 'TLS connection established' "465: under TLS"
D=$(disc_lines smtps)
like "$D" '^ehlo=1 auth=1 mail=2 rcpt=2 data=2 quit=1' "465: one EHLO, no STARTTLS, one AUTH ($D)"
wait_for 30 postfix_idle
wait_for 10 test "$(nmail_all)" -ge 8
same carol@example.net "$T/$S1.stored" "465 message 1"
same bench@example.net "$T/$S2.stored" "465 message 2"

# ---------------------------------------------------------------------------
# A host name with two addresses, the first dead (nothing on
# 127.0.0.1:465), the second the smtps service: the second is used, the
# certificate checked against the name.  The name is in a private
# /etc/hosts, bind-mounted for mgate only (a mount namespace).

printf '%s smtp.smarthost.test\n127.0.0.1 smtp.smarthost.test\n' "$SMTPS_ADDR" >"$T/hosts"
sed -i "/^\[peer sub\]/i [peer byname]\ntransport = smarthost\nhost = smtp.smarthost.test\nport = 465\nuser = $SASL_USER\npassword_file = $T/pw\ntls_ca_file = $T/tls/ca.pem\n" "$SITE_CONF"
named() { unshare -m sh -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' _ "$T/hosts" "$@"; }
ORDER=$(named getent ahostsv4 smtp.smarthost.test 2>/dev/null | awk '$2 == "STREAM" { print $1 }' | tr '\n' ' ')
if listening 127.0.0.1 465 || [ "$ORDER" != "127.0.0.1 $SMTPS_ADDR " ]; then
	skip "two addresses: 127.0.0.1:465 in use, or no mount namespace (order: '$ORDER')" 6
else
	printf 'From: Skipper <root@example.org>\nSubject: T82 by name\n\nsecond address\n' >"$T/h.msg"
	H=$(queue_msg "$T/h.msg" byname@example.net)
	mark
	run named "$MGATE" -c "$SITE_CONF" sync --peer byname
	wait_for 10 sessions_done smtps
	is "$RUN_STATUS" 0 "two addresses, the first dead: sync exits 0"
	[ "$RUN_STATUS" = 0 ] || diag "stderr: $RUN_STDERR"
	like "$RUN_STDOUT" '1 message tried, 1 recipient delivered' "two addresses: delivered through the second ($RUN_STDOUT)"
	is "$(state "$H" byname@example.net)" delivered "two addresses: delivered at the site"
	is "$(nconn smtps)" 1 "two addresses: one session at the second address"
	like "$(svc smtps)" "sasl_username=$SASL_USER@$SASL_REALM" "two addresses: authenticated"
	wait_for 30 postfix_idle
	is "$(nmail byname@example.net)" 1 "two addresses: the MX has it"
fi

# ---------------------------------------------------------------------------
# (8) A server that offers AUTH before TLS: mgate still starts TLS first.

printf 'From: Skipper <root@example.org>\nSubject: T82 mixed\n\nAUTH only under TLS\n' >"$T/x.msg"
X=$(queue_msg "$T/x.msg" postmaster@example.com)
site cat "$X" >"$T/$X.stored"
: >"$T/mixed.c2s"
relay mixed
is "$RUN_STATUS" 0 "mixed: sync exits 0"
like "$RUN_STDOUT" '1 message tried, 1 recipient delivered' "mixed: delivered ($RUN_STDOUT)"
like "$(svc mixed)" "sasl_username=$SASL_USER@$SASL_REALM" "mixed: authenticated"
like "$(disc_lines mixed)" 'starttls=1 auth=1' "mixed: STARTTLS and AUTH"
C2S=$(tr -d '\0' <"$T/mixed.c2s" | LC_ALL=C tr -c '[:print:]\n' '?')
like "$C2S" 'STARTTLS' "mixed: STARTTLS in the recorded client bytes"
unlike "$C2S" 'AUTH|MAIL FROM' "mixed: no AUTH or MAIL in clear"
ok "mixed: neither the password nor its base64 on the wire in clear" \
    bash -c '! grep -aqF -e "$1" -e "$2" "$3"' _ "$PW" "$PW_B64" "$T/mixed.c2s"
wait_for 30 postfix_idle
wait_for 10 test "$(nmail postmaster@example.com)" -ge 1
same postmaster@example.com "$T/$X.stored" "mixed"

# ---------------------------------------------------------------------------
# (4) 550: a local RFC 3464 report.

printf 'From: Skipper <root@example.org>\nSubject: T82-N1\n\nonly refused\n' >"$T/n1.msg"
printf 'From: Skipper <root@example.org>\nSubject: T82-N2\n\none refused, one accepted\n' >"$T/n2.msg"
N1=$(queue_msg "$T/n1.msg" nobody@example.com)
N2=$(queue_msg "$T/n2.msg" nobody@example.com postmaster@example.net)
is "$(nreports)" 0 "no report before the 550s"
relay sub
is "$RUN_STATUS" 0 "550: sync exits 0"
like "$RUN_STDOUT" '2 messages tried, 1 recipient delivered, 2 bounced, 0 deferred' "550: 1 delivered, 2 bounced ($RUN_STDOUT)"
is "$(nconn sub)" 1 "550: one connection for both (reused after the refused transaction)"
D=$(disc_lines sub)
like "$D" 'mail=2 rcpt=1/3 data=1/2 rset=1 quit=1' "550: 2 MAIL, 3 RCPT (2 refused), one DATA refused (no recipients), RSET ($D)"
is "$(state "$N1" nobody@example.com)" bounced "550: N1's recipient bounced"
is "$(state "$N2" nobody@example.com)" bounced "550: N2's refused recipient bounced"
is "$(state "$N2" postmaster@example.net)" delivered "550: N2's other recipient delivered"
is "$(nqueued)" 0 "550: nothing left queued"
wait_for 30 postfix_idle
wait_for 10 test "$(nmail postmaster@example.net)" -ge 1
is "$(nmail postmaster@example.net)" 1 "550: postmaster@example.net got N2"
is "$(nmail nobody@example.com)" 0 "550: nothing for nobody@example.com"
is "$(nreports)" 2 "550: two reports in the sender's Maildir"

cat >"$T/dsn.py" <<'EOF'
# dsn.py FILE...: one JSON object per report.
import email, json, re, sys
from email import policy
for path in sys.argv[1:]:
    with open(path, "rb") as fh:
        msg = email.message_from_binary_file(fh, policy=policy.compat32)
    out = {"type": msg.get_content_type(), "report_type": msg.get_param("report-type"),
           "to": msg.get("To"), "defects": len(msg.defects), "recipients": [],
           "parts": [p.get_content_type() for p in msg.walk()], "returned": ""}
    for part in msg.walk():
        ct = part.get_content_type()
        if ct == "message/delivery-status":
            blocks = part.get_payload()
            out["per_message"] = dict(blocks[0].items())
            out["recipients"] = [dict(b.items()) for b in blocks[1:]]
        elif ct in ("message/rfc822", "text/rfc822-headers"):
            m = re.search(r"T82-N[0-9]", part.as_string())
            out["returned"] = m.group(0) if m else ""
    print(json.dumps(out))
EOF
# shellcheck disable=SC2046 # one argument per report file (no blanks in $T)
run "$PYTHON3" "$T/dsn.py" $(reports)
is "$RUN_STATUS" 0 "Python's email package parses the reports"
PARSED=$RUN_STDOUT
for n in N1 N2; do
	r=$(jq -c --arg n "T82-$n" 'select(.returned == $n)' <<<"$PARSED")
	f() { jq -r "$1" <<<"$r" 2>/dev/null; }
	diag "$n report: $(jq -c '{type, recipients}' <<<"$r" 2>/dev/null)"
	is "$(f .type)/$(f .report_type)" multipart/report/delivery-status "$n's report: multipart/report; report-type=delivery-status"
	is "$(f .defects)" 0 "$n's report: no MIME defects"
	like "$(f .to)" 'root@example\.org' "$n's report: to the sender"
	is "$(f '.recipients | length')" 1 "$n's report: one recipient"
	is "$(f '.recipients[0]["Final-Recipient"] // ""')" "rfc822; nobody@example.com" "$n's report: Final-Recipient nobody@example.com"
	is "$(f '.recipients[0].Action // ""')" failed "$n's report: Action: failed"
	is "$(f '.recipients[0].Status // ""')" 5.1.1 "$n's report: Status: 5.1.1"
	like "$(f '.recipients[0]["Diagnostic-Code"] // ""')" '^smtp; 550 5\.1\.1 .*no such user here' \
	    "$n's report: Diagnostic-Code has Postfix's reply"
done

# ---------------------------------------------------------------------------
# (5) 450: stays queued, no report; delivered once after the map changes.

printf 'From: Skipper <root@example.org>\nSubject: T82 greylisted\n\n450 first\n' >"$T/g.msg"
G=$(queue_msg "$T/g.msg" carol@example.com dave@example.com)
site cat "$G" >"$T/$G.stored"
relay sub
is "$RUN_STATUS" 0 "450: sync exits 0 (every message was tried)"
like "$RUN_STDOUT" '1 message tried, 1 recipient delivered, 0 bounced, 1 deferred' "450: 1 delivered, 1 deferred ($RUN_STDOUT)"
is "$(state "$G" carol@example.com)" queued "450: carol stays queued"
is "$(state "$G" dave@example.com)" delivered "450: dave delivered"
is "$(nreports)" 2 "450: no new report"
run site status "$G"
like "$RUN_STDOUT" '450 4\.2\.1 .*mailbox busy' "450: mgate status shows Postfix's 450 reply"
wait_for 30 postfix_idle
wait_for 10 test "$(nmail dave@example.com)" -ge 1
is "$(nmail carol@example.com)" 0 "450: nothing for carol yet"
is "$(nmail dave@example.com)" 1 "450: dave got it"

relay sub
is "$RUN_STATUS" 0 "450 again: sync exits 0"
is "$(state "$G" carol@example.com)" queued "450 again: carol still queued"
like "$(disc_lines sub)" 'rcpt=0/1' "450 again: only carol's RCPT was sent, and refused"

write_access '/^nobody@example\.com$/ 550 5.1.1 no such user here'
relay sub
is "$RUN_STATUS" 0 "after the map change: sync exits 0"
like "$RUN_STDOUT" '1 message tried, 1 recipient delivered, 0 bounced, 0 deferred' "after the map change: carol delivered ($RUN_STDOUT)"
is "$(state "$G" carol@example.com)" delivered "after the map change: carol delivered at the site"
wait_for 30 postfix_idle
wait_for 10 test "$(nmail carol@example.com)" -ge 1
same carol@example.com "$T/$G.stored" "450 then 250"
is "$(nmail dave@example.com)" 1 "dave still has it once (not sent again)"

relay sub
is "$RUN_STATUS" 0 "last run: exits 0"
like "$RUN_STDOUT" '0 messages tried' "last run: nothing to try ($RUN_STDOUT)"
is "$(nconn sub)" 0 "last run: no connection"
wait_for 30 postfix_idle
is "$(nmail_all)" 13 "the MX holds 13 messages in all, each once"
is "$(nreports)" 2 "still exactly two reports"
unlike "$(grep 'improper command pipelining' "$MAILLOG" | head -n 3)" '.' \
    "Postfix logged no improper command pipelining in the whole test"

done_testing
