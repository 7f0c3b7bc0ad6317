#!/usr/bin/env bash
# 70-deliver.t - the gateway's delivery engine (`mgate daemon --once')
# against real peers on loopback: a Postfix MX (tests/lib/postfix-instance,
# regexp access maps, TLS with a test CA, postgrey for greylisting), DNS
# from dnsmasq, and a tiny python3 SMTP server for what Postfix cannot do
# (stall at a chosen protocol stage, or lack STARTTLS).  Issue 5.
#
#  (a) byte-correct delivery: lines starting with ".", bare CR and bare LF,
#      998+ character lines, 8-bit text, and messages ending in a bare CR
#      and a dot around the 64 KiB edge of the SMTP encoder's buffer;
#  (b) 550 5.1.1 from the MX: "bounced" with the MX's 5.1.1 reply;
#  (c) 450, then 250 after a map change and `postfix reload': deferred
#      (attempt 1), then delivered;
#  (d) 421 (the MX drops the connection): deferred, the rest of the
#      transaction too; delivered when the MX is back to normal;
#  (e) a server that stalls (before its greeting, after EHLO, at RCPT,
#      after the final dot), smtp_command_timeout = smtp_data_timeout = 2s:
#      deferred with a timeout message, and the run ends within a bound;
#  (f) NXDOMAIN -> bounced 5.1.2, null MX -> bounced 5.1.10, a DNS timeout
#      (dnsmasq forwarding to a dead port) -> deferred (4.4.3);
#  (g) first MX down (127.0.0.2, nothing listening), second up: delivered
#      through the second;
#  (h) STARTTLS: verify + the test CA + the right name -> delivered over TLS
#      (Postfix logs it, the Received field says ESMTPS); verify against a
#      certificate with a wrong name -> deferred and never sent in clear;
#      encrypt against an MX without STARTTLS -> deferred, no MAIL FROM sent;
#      may (the default) -> TLS; none -> clear;
#  (i) loops: 51 Received: fields -> bounced 5.4.6; 50 -> delivered; 60
#      "Received:" lines in the body do not count;
#  (j) sender_domains: a site's message from a sender domain not listed for
#      it -> bounced 5.7.1 (through `mgate export' / `mgate import', no SSH);
#  (k) greylisting by a real postgrey (--delay=2): deferred, then delivered.
#
# Failures the gateway generates itself (DNS, loop, policy) carry their
# RFC 3463 status only in the status record for the site, so (f), (i) and
# (j) send their messages from a site (export/import) and read the Status:
# fields of the DSNs that the site writes into its local Maildir.
#
# Needs root (Postfix's master, postgrey), postfix, dnsmasq, postgrey,
# openssl, python3.
set -uo pipefail
. "$(dirname "$0")/lib/testlib.sh"

need_root "starts Postfix, dnsmasq and postgrey"
need_mgate
need_cmd postfix dnsmasq openssl jq ss script
mgate_setup
START=$(date +%s)

gw() { "$MGATE" -c "$T/gw.conf" "$@"; }
site() { "$MGATE" -c "$T/site.conf" "$@"; }

# ---------------------------------------------------------------------------
# Ports, keys, certificates.

MXPORT=$(free_port)
DNSPORT=$(free_port)
PGPORT=$(free_port)
DEADPORT=$(free_port)	# nothing listens here: DNS forwarded to it times out
while [ "$DNSPORT" = "$MXPORT" ]; do DNSPORT=$(free_port); done

for k in gw site; do
	"$MGATE" keygen "$T/$k.key" >/dev/null 2>&1 || BAIL_OUT "mgate keygen failed"
done

# A test CA; mx.example.net's certificate (the right name for the MX that
# most domains use) and one for wrong.example.org, served by the same
# Postfix to clients that ask (SNI) for mx.badcert.test.
mkdir -p "$T/tls"
(
	cd "$T/tls" || exit 1
	openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem \
	    -days 7 -subj "/CN=mgate test CA" \
	    -addext "basicConstraints=critical,CA:TRUE" \
	    -addext "keyUsage=critical,keyCertSign,cRLSign" || exit 1
	for c in right:mx.example.net wrong:wrong.example.org; do
		n=${c%%:*} cn=${c#*:}
		openssl req -newkey rsa:2048 -nodes -keyout "$n.key" \
		    -out "$n.csr" -subj "/CN=$cn" || exit 1
		printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
		    "$cn" >"$n.ext"
		openssl x509 -req -in "$n.csr" -CA ca.pem -CAkey ca.key \
		    -CAcreateserial -out "$n.pem" -days 7 -extfile "$n.ext" || exit 1
		cat "$n.key" "$n.pem" >"$n.chain"
	done
	chmod 644 ./*.pem ./*.chain ./*.key
) >"$T/openssl.log" 2>&1 || BAIL_OUT "openssl: $(tail -n 5 "$T/openssl.log")"

# ---------------------------------------------------------------------------
# DNS (dnsmasq).  Every MX is contacted on smtp_port = MXPORT:
#   example.net, example.com, secure.test -> mx.example.net  127.0.0.1 (Postfix)
#   twomx.test    -> mx1 (pref 10) 127.0.0.2: nothing listens there
#                    mx2 (pref 20) 127.0.0.1: Postfix
#   badcert.test  -> mx.badcert.test 127.0.0.1 (Postfix; SNI -> wrong name)
#   plain.test    -> 127.0.0.20 python server without STARTTLS
#   stall*.test   -> 127.0.0.21-24 python servers that stall
#   nullmx.test   MX 0 "." (RFC 7505)
#   *.nxdomain.test, nxdomain.test: NXDOMAIN
#   slow.test     forwarded to a dead port: no answer (timeout)

cat >"$T/dnsmasq.conf" <<EOF
port=$DNSPORT
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
log-facility=$T/dnsmasq.log
mx-host=example.net,mx.example.net,10
mx-host=example.com,mx.example.net,10
mx-host=secure.test,mx.example.net,10
host-record=mx.example.net,127.0.0.1
mx-host=twomx.test,mx1.twomx.test,10
mx-host=twomx.test,mx2.twomx.test,20
host-record=mx1.twomx.test,127.0.0.2
host-record=mx2.twomx.test,127.0.0.1
mx-host=badcert.test,mx.badcert.test,10
host-record=mx.badcert.test,127.0.0.1
mx-host=plain.test,mx.plain.test,10
host-record=mx.plain.test,127.0.0.20
mx-host=stallgreet.test,mx.stallgreet.test,10
host-record=mx.stallgreet.test,127.0.0.21
mx-host=stallehlo.test,mx.stallehlo.test,10
host-record=mx.stallehlo.test,127.0.0.22
mx-host=stallrcpt.test,mx.stallrcpt.test,10
host-record=mx.stallrcpt.test,127.0.0.23
mx-host=stalldata.test,mx.stalldata.test,10
host-record=mx.stalldata.test,127.0.0.24
mx-host=nullmx.test,.,0
local=/nxdomain.test/
server=/slow.test/127.0.0.1#$DEADPORT
EOF
dnsmasq -C "$T/dnsmasq.conf" --pid-file="$T/dnsmasq.pid" 2>"$T/dnsmasq.err" ||
    BAIL_OUT "dnsmasq: $(cat "$T/dnsmasq.err")"
on_exit '[ -s "$T/dnsmasq.pid" ] && kill "$(cat "$T/dnsmasq.pid")" 2>/dev/null'

# ---------------------------------------------------------------------------
# postgrey, then Postfix: TLS (the right certificate by default, the wrong
# one for SNI mx.badcert.test), greylisting as a restriction class named
# by the recipient access map, a hop count limit above ours so that
# Postfix does not refuse the 50-Received message of (i) itself, and
# smtpd_forbid_bare_newline = reject for every client (loopback too): a
# bare LF from mgate on the wire would be refused, not silently fixed.

HAVE_POSTGREY=0
if command -v postgrey >/dev/null 2>&1; then
	mkdir -p "$T/postgrey"
	chown postgrey: "$T/postgrey" 2>/dev/null || true
	if postgrey --inet="127.0.0.1:$PGPORT" --delay=2 --dbdir="$T/postgrey" \
	    --pidfile="$T/postgrey.pid" --daemonize \
	    --whitelist-clients=/dev/null --whitelist-recipients=/dev/null \
	    >"$T/postgrey.log" 2>&1 &&
	    wait_for 15 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PGPORT"; then
		HAVE_POSTGREY=1
		on_exit '[ -s "$T/postgrey.pid" ] && kill "$(cat "$T/postgrey.pid")" 2>/dev/null'
	else
		diag "postgrey did not start: $(tail -n 5 "$T/postgrey.log")"
	fi
fi

MX=$T/mx
mkdir -p "$MX/conf"
echo "mx.badcert.test $T/tls/wrong.chain" >"$T/tls/sni"
cat >"$MX/conf/main.cf.extra" <<EOF
smtpd_tls_cert_file = $T/tls/right.pem
smtpd_tls_key_file = $T/tls/right.key
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
tls_server_sni_maps = texthash:$T/tls/sni
hopcount_limit = 100
smtpd_forbid_bare_newline = reject
smtpd_forbid_bare_newline_exclusions =
smtpd_restriction_classes = greylist
greylist = check_policy_service inet:127.0.0.1:$PGPORT
EOF
export POSTFIX_INSTANCE_DOMAINS="example.com example.net secure.test twomx.test badcert.test"
"$POSTFIX_INSTANCE" start "$MX" "$MXPORT" >"$T/pf-start.log" 2>&1 ||
    BAIL_OUT "postfix-instance start: $(tail -n 20 "$T/pf-start.log")"
on_exit "$(printf '%q stop %q' "$POSTFIX_INSTANCE" "$MX")"

# The recipient access map: what the MX says to whom.
write_access() { # extra lines...
	{
		echo '/^nobody@example\.net$/   550 5.1.1 User unknown'
		echo '/^grey@example\.net$/     greylist'
		printf '%s\n' "$@"
	} >"$MX/conf/recipient_access"
	"$POSTFIX_INSTANCE" reload "$MX" >/dev/null 2>&1
}
write_access '/^carol@example\.net$/ 450 4.2.1 Mailbox busy, try again' \
    '/^dave@example\.net$/ 421 4.3.2 System going down'

# ---------------------------------------------------------------------------
# The python3 SMTP server for stalls and for "no STARTTLS": every session's
# bytes from the client are kept in LOGDIR/session.N.

cat >"$T/fakesmtp.py" <<'EOF'
# fakesmtp.py ADDR PORT MODE LOGDIR
# MODE: stall-greeting (accept, never greet), stall-ehlo (never answer EHLO),
# stall-rcpt (answer EHLO and MAIL, never RCPT), stall-data (take the whole
# message, never answer the final dot), plain (a server without STARTTLS
# that accepts everything).
import os, socket, sys, threading, time
addr, port, mode, logdir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
count = [0]
def session(c, n):
    log = open(os.path.join(logdir, "session.%d" % n), "wb", buffering=0)
    f = c.makefile("rb")
    say = lambda s: c.sendall(s.encode() + b"\r\n")
    try:
        if mode == "stall-greeting":
            time.sleep(3600)
        say("220 fake.test ESMTP")
        indata = False
        while True:
            line = f.readline()
            if not line:
                return
            log.write(line)
            if indata:
                if line == b".\r\n":
                    indata = False
                    if mode == "stall-data":
                        time.sleep(3600)
                    say("250 2.0.0 Ok: queued")
                continue
            cmd = line[:4].upper()
            if cmd in (b"EHLO", b"HELO"):
                if mode == "stall-ehlo":
                    time.sleep(3600)
                say("250-fake.test\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES")
            elif cmd == b"MAIL":
                say("250 2.1.0 Ok")
            elif cmd == b"RCPT":
                if mode == "stall-rcpt":
                    time.sleep(3600)
                say("250 2.1.5 Ok")
            elif cmd == b"DATA":
                say("354 End data with <CR><LF>.<CR><LF>")
                indata = True
            elif cmd == b"QUIT":
                say("221 2.0.0 Bye")
                return
            elif cmd in (b"RSET", b"NOOP"):
                say("250 2.0.0 Ok")
            else:
                say("502 5.5.2 Error: command not recognized")
    except OSError:
        pass
    finally:
        log.close()
        c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
s.listen(16)
open(os.path.join(logdir, "ready"), "w").close()
while True:
    c, _ = s.accept()
    count[0] += 1
    threading.Thread(target=session, args=(c, count[0]), daemon=True).start()
EOF

# Started after Postfix: postfix-instance refuses a port in use on any address.
start_fake() { # NAME ADDR MODE
	mkdir -p "$T/fake-$1"
	"$PYTHON3" "$T/fakesmtp.py" "$2" "$MXPORT" "$3" "$T/fake-$1" \
	    >"$T/fake-$1.log" 2>&1 &
	echo $! >"$T/fake-$1.pid"
	on_exit "kill $! 2>/dev/null"
	wait_for 10 test -e "$T/fake-$1/ready" || BAIL_OUT "fake SMTP server $1 did not start: $(cat "$T/fake-$1.log")"
}
start_fake plain 127.0.0.20 plain
start_fake stallgreet 127.0.0.21 stall-greeting
start_fake stallehlo 127.0.0.22 stall-ehlo
start_fake stallrcpt 127.0.0.23 stall-rcpt
start_fake stalldata 127.0.0.24 stall-data

# ---------------------------------------------------------------------------
# The gateway and a site (ship) that talks to it by export/import files.

cat >"$T/gw.conf" <<EOF
spool_directory = $T/gw
myhostname = gw.example.org
mydomain = example.org
local_name = gw
log_destination = stderr
private_key = $T/gw.key
pickup_after_queue = no
dns_resolver = 127.0.0.1:$DNSPORT
smtp_port = $MXPORT
retry_first = 1s
maximal_backoff = 1s
smtp_connect_timeout = 5s
smtp_command_timeout = 2s
smtp_data_timeout = 2s
smtp_tls_policy_map = secure.test=verify, badcert.test=verify, plain.test=encrypt, example.com=none
smtp_tls_ca_file = $T/tls/ca.pem

[peer ship]
transport = file
public_key = $T/site.key.pub
sender_domains = ship.example.org
EOF
cat >"$T/site.conf" <<EOF
spool_directory = $T/site
myhostname = ship.example.org
mydomain = ship.example.org
local_name = ship
log_destination = stderr
private_key = $T/site.key
pickup_after_queue = no
local_mailbox = $T/mail/%u/Maildir/
default_peer = gw

[peer gw]
transport = file
public_key = $T/gw.key.pub
EOF
ok "init the gateway spool" gw init
ok "init the site spool" site init

# ---------------------------------------------------------------------------
# Helpers.

# queue_at CONF FILE [queue args...]: queue FILE, print the queue ID.
queue_at() {
	local conf=$1 file=$2 out
	shift 2
	out=$("$MGATE" -v -c "$conf" queue "$@" <"$file" 2>&1) || {
		diag "queue $*: $out"
		return 1
	}
	[[ $out =~ queued\ as\ ([0-9A-Z]{16}) ]] || { diag "no queue ID in: $out"; return 1; }
	printf '%s\n' "${BASH_REMATCH[1]}"
}

# daemon_run NAME: one queue run, its log in $T/run-NAME.log, its
# duration in RUN_SECS.
daemon_run() {
	local t0 t1 rc=0
	t0=$(date +%s%N)
	gw daemon --once >"$T/run-$1.log" 2>&1 || rc=$?
	t1=$(date +%s%N)
	RUN_SECS=$(((t1 - t0) / 1000000000))
	[ "$rc" = 0 ] || diag "daemon --once ($1) exited $rc: $(tail -n 5 "$T/run-$1.log")"
	# Postfix's 250 means queued: wait until it has delivered into the
	# Maildirs before anyone looks there.
	wait_for 30 postfix_idle || diag "Postfix's queue is not empty after run $1"
	return "$rc"
}
postfix_idle() { [ "$("$POSTFIX_INSTANCE" count "$MX")" = 0 ]; }

# The daemon's outcome line for QID and RCPT in run NAME.
outcome() { # NAME QID RCPT
	grep -F "$2: to=<$3>," "$T/run-$1.log" | tail -n 1
}

# State and result of a recipient at the gateway ("gone" once the message
# has left the queue: every recipient final).
gw_rcpt() { # QID RCPT
	local j
	j=$(gw list --json 2>/dev/null) || return 1
	jq -r --arg id "$1" --arg r "$2" '
	    ([.[] | select(.id == $id)] | if length == 0 then "gone" else
	     (.[0].recipients[] | select(.address == $r) |
	      "\(.state) \(.result // "")") end)' <<<"$j"
}
site_rcpt() { # QID RCPT
	site list --json 2>/dev/null | jq -r --arg id "$1" --arg r "$2" '
	    .[] | select(.id == $id) | .recipients[] | select(.address == $r) |
	    "\(.state) \(.result // "")"'
}

# Files in the MX's Maildirs that contain TOKEN.
mx_files() { # TOKEN
	grep -rlF -- "$1" "$MX/mail" 2>/dev/null | LC_ALL=C sort
}
mx_count() { mx_files "$1" | grep -c . ; }

# Byte check.  A delivered file must be: the header fields Postfix and
# mgate put on top, then the submitted message with its line ends
# normalised.  Why normalised: mgate sends every line end as CRLF (a bare
# LF and a bare CR each become one CRLF, a CR LF pair stays one CRLF: see
# src/smtp_client.c), dot-stuffs lines starting with ".", and ends an
# unterminated last line with CRLF before the final dot; Postfix removes the
# stuffing and stores LF line ends.  So the stored file must end with the
# input in which every CRLF, lone CR and lone LF is one LF, plus an LF when
# the input did not end in a line end; nothing else may change (8-bit
# bytes, long lines, dots).  Above it only these fields (and continuation
# lines): Return-Path, X-Original-To, Delivered-To (Postfix's virtual),
# Received (Postfix's, the gateway's, the submission's), Date, Message-ID,
# From (added at submission because the inputs lack them), X-Greylist
# (postgrey).
cat >"$T/bytecheck.py" <<'EOF'
import re, sys
got = open(sys.argv[1], 'rb').read()
src = open(sys.argv[2], 'rb').read()
exp = re.sub(rb'\r\n|\r|\n', b'\n', src)
if not exp.endswith(b'\n'):
    exp += b'\n'
if not got.endswith(exp):
    # Where does it differ?  Align the ends and walk back.
    i = 0
    while i < min(len(got), len(exp)) and got[-1 - i] == exp[-1 - i]:
        i += 1
    print("delivered file (%d bytes) does not end with the normalised input "
          "(%d bytes); first difference %d bytes from the end:" %
          (len(got), len(exp), i + 1))
    print("  got      %r" % got[max(0, len(got) - i - 40):len(got) - i + 20])
    print("  expected %r" % exp[max(0, len(exp) - i - 40):len(exp) - i + 20])
    sys.exit(1)
allowed = re.compile(rb'^(Return-Path|X-Original-To|Delivered-To|Received|'
                     rb'Date|Message-ID|From|X-Greylist):|^[ \t]')
for line in got[:len(got) - len(exp)].split(b'\n')[:-1]:
    if not allowed.match(line):
        print("unexpected line above the message: %r" % line)
        sys.exit(1)
EOF
bytecheck() { # DELIVERED SOURCE
	"$PYTHON3" "$T/bytecheck.py" "$1" "$2"
}

# ---------------------------------------------------------------------------
# (e) Stalling servers, alone in the queue so that the run's duration is
# theirs.  smtp_command_timeout = smtp_data_timeout = 2s; each domain has
# one MX address, and the domains go to parallel workers, so the run must
# end well within 2 x 2s + start-up; 20 s is the bound that says "no
# hang" (the defaults, 5 and 10 minutes, would hang the test).

printf 'Subject: e-stall\n\nstalled server test\n' >"$T/e.msg"
declare -A EQ
for d in stallgreet stallehlo stallrcpt stalldata; do
	EQ[$d]=$(queue_at "$T/gw.conf" "$T/e.msg" -i "someone@$d.test") ||
	    fail "queue the message for $d.test"
done
daemon_run e
ok "(e) the queue run with four stalling servers ends" test "$RUN_SECS" -lt 20
diag "(e) queue run against stalling servers: ${RUN_SECS}s"
notimeout=
re_timeout='[Tt]imed? ?out|[Tt]ime-out'
for d in stallgreet stallehlo stallrcpt stalldata; do
	r=$(gw_rcpt "${EQ[$d]}" "someone@$d.test")
	like "$r" '^deferred ' "(e) $d.test: deferred"
	[[ $r =~ $re_timeout ]] || notimeout+="  $d.test: ${r#deferred }"$'\n'
	is "$(find "$T/fake-$d" -name 'session.*' | grep -c .)" 1 \
	    "(e) $d.test: one connection (one MX address)"
done
# An operator (and the site's user) must be able to tell a server that
# stopped answering from one that hung up.
if [ -z "$notimeout" ]; then
	pass "(e) each deferral says the server timed out"
else
	fail "(e) each deferral says the server timed out"
	diag "results without a word about the timeout:" "$notimeout"
fi
# The stall-data server has the whole message but never said 250: the
# message must not count as delivered (it will be sent again).
ok "(e) stall-data: the server got the message text" grep -q 'stalled server test' "$T/fake-stalldata/session.1"
for d in stallgreet stallehlo stallrcpt stalldata; do
	gw delete "${EQ[$d]}" >/dev/null 2>&1
done

# ---------------------------------------------------------------------------
# (a) Byte-correct delivery.  Inputs made with printf, queued with -i (a
# line "." is data, not the end), each with a unique Subject token.

# a1: dot lines: ".", "..", ".text", "...", ". " and a dot line last.
printf 'Subject: T70-a1 dots\n\n.\n..\n.leading dot\n...three\n. \nmiddle\n.' >"$T/a1.msg"
# a2: CRLF header; in the body CRLF, bare LF, bare CR, a dot after a bare
# CR (a new line on the wire: must be stuffed), CR CR LF (two line ends),
# LF CR, and no line end at the end.
printf 'Subject: T70-a2 bare\r\n\r\nCRLF line\r\nbare LF\nbare CR\rafter CR\r.dot after bare CR\r\nCR CR LF\r\r\nLF CR\n\rlast line without line end' >"$T/a2.msg"
# a3: lines of 998, 999, 1000 and 5000 characters (RFC 5321's limit is
# 998 + CRLF; mgate must not cut or fold them, and Postfix keeps them).
{
	printf 'Subject: T70-a3 long\n\n'
	for n in 998 999 1000 5000; do
		head -c "$n" /dev/zero | tr '\0' 'x'
		printf '\n'
	done
	head -c 4000 /dev/zero | tr '\0' '.'
	printf '\nend\n'
} >"$T/a3.msg"
# a4: 8-bit: UTF-8, Latin-1 and bytes 0x80-0xff, with -B8BITMIME.
{
	printf 'Subject: T70-a4 8bit\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n'
	printf 'Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln, \xe2\x82\xac 5, \xf0\x9f\x9a\xa2\n'
	printf 'latin-1: \xe9\xe8\xe0\xff\n'
	"$PYTHON3" -c 'import sys; sys.stdout.buffer.write(bytes(range(0x80, 0x100)) + b"\n")'
} >"$T/a4.msg"
# a5: CRLF lines, and the stored message ends in a bare CR and a dot with
# no line end, placed so that exactly 65536 bytes are in the SMTP encoder's
# buffer before them (src/smtp_client.c, struct dotenc): the CR becomes a
# CRLF and the dot is stuffed, 4 bytes, and the end of data adds 5 (this
# overran the buffer before commit 9b2c545).  a6: the same ending at every
# stored offset from 65520 to 65560, whatever the buffer's flush rule.
# The stored size depends on the Received field the submission adds, so a
# probe measures that first.
a5_make() { # BODYLEN OUT [TOKEN]
	"$PYTHON3" - "$1" "$2" "${3:-T70-a5}" <<'EOF'
import sys
need, out, tok = int(sys.argv[1]), sys.argv[2], sys.argv[3]
hdr = b"Subject: " + tok.encode() + b" buffer edge\r\n\r\n"
body = b""
while need - len(hdr) - len(body) > 1000:
    body += b"x" * 998 + b"\r\n"
rest = need - len(hdr) - len(body)
body += b"y" * (rest - 2) + b"\r\n"
assert len(hdr) + len(body) == need
open(out, "wb").write(hdr + body + b"\r.")
EOF
}
a5_make 2000 "$T/a5probe.msg"
a5_id=$(queue_at "$T/gw.conf" "$T/a5probe.msg" -i edge@example.net)
a5_size=$(gw list --json 2>/dev/null | jq -r --arg id "$a5_id" '.[] | select(.id == $id) | .size')
gw delete "$a5_id" >/dev/null 2>&1
# stored = added + input; want stored - 2 ("\r.") = 65536.
a5_added=$((a5_size - $(stat -c %s "$T/a5probe.msg")))
a5_make $((65536 - a5_added)) "$T/a5.msg"
declare -A A6Q
for ((off = 65520; off <= 65560; off++)); do
	a5_make $((off - a5_added)) "$T/a6-$off.msg" "T70-a6-$off"
	A6Q[$off]=$(queue_at "$T/gw.conf" "$T/a6-$off.msg" -i edge@example.net) ||
	    fail "(a) queue a6 at offset $off"
done

declare -A AQ
for m in a1 a2 a3 a5; do
	AQ[$m]=$(queue_at "$T/gw.conf" "$T/$m.msg" -i bob@example.net) ||
	    fail "(a) queue $m"
done
AQ[a4]=$(queue_at "$T/gw.conf" "$T/a4.msg" -i -B8BITMIME bob@example.net) ||
    fail "(a) queue a4"
a5_stored=$(gw list --json 2>/dev/null | jq -r --arg id "${AQ[a5]}" '.[] | select(.id == $id) | .size')
is "$a5_stored" 65538 "(a) a5 is stored with 65536 bytes before its final CR and dot"

# (b)+(c): nobody@ gets 550 5.1.1, carol@ 450 (until the map changes).
printf 'Subject: T70-bc\n\n550 and 450\n' >"$T/bc.msg"
BC=$(queue_at "$T/gw.conf" "$T/bc.msg" -i nobody@example.net carol@example.net)
# (d): dave@ makes the MX say 421 and hang up; alice@ comes after him in
# the same transaction.
printf 'Subject: T70-d\n\n421\n' >"$T/d.msg"
D=$(queue_at "$T/gw.conf" "$T/d.msg" -i dave@example.net alice@example.net)
# (g) first MX down.
printf 'Subject: T70-g\n\ntwo MX\n' >"$T/g.msg"
G=$(queue_at "$T/gw.conf" "$T/g.msg" -i bob@twomx.test)
# (h) TLS.
printf 'Subject: T70-h-verify\n\nverified TLS\n' >"$T/h1.msg"
H1=$(queue_at "$T/gw.conf" "$T/h1.msg" -i bob@secure.test)
printf 'Subject: T70-h-badcert\n\nwrong name\n' >"$T/h2.msg"
H2=$(queue_at "$T/gw.conf" "$T/h2.msg" -i bob@badcert.test)
printf 'Subject: T70-h-plain\n\nT70-h-plain-body\n' >"$T/h3.msg"
H3=$(queue_at "$T/gw.conf" "$T/h3.msg" -i bob@plain.test)
printf 'Subject: T70-h-may\n\nopportunistic\n' >"$T/h4.msg"
H4=$(queue_at "$T/gw.conf" "$T/h4.msg" -i postmaster@example.net)
printf 'Subject: T70-h-none\n\nclear\n' >"$T/h5.msg"
H5=$(queue_at "$T/gw.conf" "$T/h5.msg" -i bob@example.com)
# (k) greylisting.
printf 'Subject: T70-k\n\ngreylisted\n' >"$T/k.msg"
K=$(queue_at "$T/gw.conf" "$T/k.msg" -i grey@example.net)

# From the site: (f), (i), (j).
printf 'Subject: T70-f-nx\n\nx\n' >"$T/fnx.msg"
printf 'Subject: T70-f-null\n\nx\n' >"$T/fnull.msg"
printf 'Subject: T70-f-slow\n\nx\n' >"$T/fslow.msg"
# Received: fields in the header: the site's submission adds one, so
# loop51 is stored with 51 (more than max_received_headers = 50: a loop)
# and loop50 with 50 (not one).  body60 has 10 in its header and 60 lines
# starting "Received:" in its body, which are not header fields.
rcvd() { # N
	local i
	for ((i = 1; i <= $1; i++)); do
		printf 'Received: from hop%d.example by hop%d.example; Mon, 1 Jan 2024 00:00:00 +0000\n' "$i" "$((i + 1))"
	done
}
{ rcvd 50; printf 'Subject: T70-i-loop51\n\nlooping\n'; } >"$T/loop51.msg"
{ rcvd 49; printf 'Subject: T70-i-loop50\n\nnot looping\n'; } >"$T/loop50.msg"
{ rcvd 10; printf 'Subject: T70-i-body60\n\n'; rcvd 60; } >"$T/body60.msg"
printf 'Subject: T70-j-bad\n\nforeign sender\n' >"$T/jbad.msg"
printf 'Subject: T70-j-good\n\nown sender\n' >"$T/jgood.msg"
SFNX=$(queue_at "$T/site.conf" "$T/fnx.msg" -i someone@nxdomain.test)
SFNULL=$(queue_at "$T/site.conf" "$T/fnull.msg" -i someone@nullmx.test)
SFSLOW=$(queue_at "$T/site.conf" "$T/fslow.msg" -i someone@slow.test)
SL51=$(queue_at "$T/site.conf" "$T/loop51.msg" -i bob@example.net)
SL50=$(queue_at "$T/site.conf" "$T/loop50.msg" -i bob@example.net)
SB60=$(queue_at "$T/site.conf" "$T/body60.msg" -i bob@example.net)
SJBAD=$(queue_at "$T/site.conf" "$T/jbad.msg" -i -f someone@elsewhere.example bob@example.net)
SJGOOD=$(queue_at "$T/site.conf" "$T/jgood.msg" -i -f skipper@ship.example.org bob@example.net)
ok "site: export its mail" site export --peer gw "$T/to-gw.bundle"
ok "gateway: import the site's bundle" gw import "$T/to-gw.bundle"
ok "site: import the gateway's acknowledgement" site import "$T/to-gw.bundle.ack"

# ---------------------------------------------------------------------------
# Queue run A: everything above.  slow.test's DNS timeout (the resolver
# waits 5 s, then 10 s) runs in its own worker, in parallel.

ok "queue run A" daemon_run A
diag "queue run A: ${RUN_SECS}s"

# (a)
for m in a1 a2 a3 a4 a5; do
	tok=$(grep -o -m1 'T70-a[0-9]' "$T/$m.msg")
	files=$(mx_files "$tok")
	n=$(grep -c . <<<"$files")
	if is "$n" 1 "(a) $m: delivered once into the Maildir"; then
		ok "(a) $m: the body is byte-correct (line ends normalised, nothing else)" \
		    bytecheck "$files" "$T/$m.msg"
	else
		fail "(a) $m: the body is byte-correct (not delivered)"
		diag "  $m: $(outcome A "${AQ[$m]}" bob@example.net)"
	fi
done

a6bad=
for ((off = 65520; off <= 65560; off++)); do
	files=$(mx_files "T70-a6-$off ")
	n=$(grep -c . <<<"$files")
	if [ "$n" != 1 ]; then
		a6bad+="  offset $off: $n copies: $(outcome A "${A6Q[$off]}" edge@example.net)"$'\n'
	elif ! out=$(bytecheck "$files" "$T/a6-$off.msg"); then
		a6bad+="  offset $off: $out"$'\n'
	fi
done
if [ -z "$a6bad" ]; then
	pass "(a) a6: CR and dot at the end, at each offset 65520..65560: delivered once, byte-correct"
else
	fail "(a) a6: CR and dot at the end, at each offset 65520..65560: delivered once, byte-correct"
	diag "$a6bad"
fi

# (b) 550 5.1.1: bounced at the gateway, with the MX's reply.
r=$(gw_rcpt "$BC" nobody@example.net)
like "$r" '^bounced ' "(b) 550 from the MX: recipient bounced"
like "$r" '550 5\.1\.1 ' "(b) the result has the MX's 550 5.1.1 reply"
like "$(outcome A "$BC" nobody@example.net)" 'status=bounced \(550 5\.1\.1 ' "(b) the daemon logs the bounce with 5.1.1"
# (c) first run: 450 -> deferred, attempt 1.
r=$(gw_rcpt "$BC" carol@example.net)
like "$r" '^deferred .*450 4\.2\.1 ' "(c) 450: deferred, with the MX's reply"
run gw status "$BC"
like "$RUN_STDOUT" 'attempts: 1[^0-9]' "(c) status shows attempt 1"
# (d) 421 at RCPT: dave deferred with the 421, alice (after him, same
# transaction) deferred too, and not delivered.
like "$(gw_rcpt "$D" dave@example.net)" '^deferred .*421' "(d) 421: deferred, with the 421"
like "$(gw_rcpt "$D" alice@example.net)" '^deferred ' "(d) the next recipient of the transaction: deferred too"
is "$(mx_count T70-d)" 0 "(d) nothing delivered while the MX says 421"
# (g) first MX down, second up.
ok "(g) 127.0.0.2:$MXPORT has no listener" "$PYTHON3" -c '
import socket, sys
try:
    socket.create_connection(("127.0.0.2", int(sys.argv[1])), 2)
except OSError:
    sys.exit(0)
sys.exit(1)' "$MXPORT"
like "$(outcome A "$G" bob@twomx.test)" 'relay=mx2\.twomx\.test\[127\.0\.0\.1\].*status=sent' \
    "(g) delivered through the second MX"
like "$(cat "$T/run-A.log")" 'mx1\.twomx\.test\[127\.0\.0\.2\]' "(g) the first MX was tried (logged)"
is "$(mx_count T70-g)" 1 "(g) in the Maildir once"
# (h) TLS.
like "$(outcome A "$H1" bob@secure.test)" 'status=sent' "(h) verify, right name: delivered"
f=$(mx_files T70-h-verify | head -n 1)
like "$(cat "$f" 2>/dev/null)" 'with ESMTPS' "(h) verify: the Received field says ESMTPS"
like "$(cat "$MX/log/maillog")" 'Anonymous TLS connection established from' "(h) Postfix logs the TLS connection"
r=$(gw_rcpt "$H2" bob@badcert.test)
like "$r" '^deferred ' "(h) verify, wrong-name certificate: deferred"
like "$r" '(mismatch|not trusted)' "(h) the result says why (certificate name)"
is "$(mx_count T70-h-badcert)" 0 "(h) wrong name: not in the Maildir (never sent in clear)"
r=$(gw_rcpt "$H3" bob@plain.test)
like "$r" '^deferred .*STARTTLS' "(h) encrypt, MX without STARTTLS: deferred, says STARTTLS"
unlike "$(cat "$T"/fake-plain/session.* 2>/dev/null)" 'MAIL FROM|T70-h-plain-body' \
    "(h) encrypt: no MAIL FROM, no message text sent to the MX without STARTTLS"
f=$(mx_files T70-h-may | head -n 1)
like "$(cat "$f" 2>/dev/null)" 'with ESMTPS' "(h) may (default): delivered over TLS"
f=$(mx_files T70-h-none | head -n 1)
if [ -n "$f" ]; then
	unlike "$(grep -A2 '^Received: from gw' "$f")" 'ESMTPS' "(h) none: delivered in clear"
else
	fail "(h) none: delivered in clear (not delivered: $(outcome A "$H5" bob@example.com))"
fi
# (k) greylisting, first attempt.
if [ "$HAVE_POSTGREY" = 1 ]; then
	like "$(gw_rcpt "$K" grey@example.net)" '^deferred .*450 4\.[0-9.]+ .*[Gg]reylist' \
	    "(k) greylisted: deferred with postgrey's 450"
elif [ "${CI:-}" = true ]; then
	fail "(k) postgrey is installed (CI=true)"
else
	skip "no postgrey" 1
fi

# (f), (i), (j): back to the site, which applies the status records and
# writes the DSNs into root's Maildir.
ok "gateway: export the status records for the site" gw export --peer ship "$T/to-site.bundle"
ok "site: import them" site import "$T/to-site.bundle"

# Final-Recipient -> "Action Status" of every DSN in the site's Maildir,
# one line per recipient and report: "RCPT ACTION STATUS SUBJECT-TOKEN".
cat >"$T/dsns.py" <<'EOF'
import email, glob, re, sys
from email import policy
for path in sorted(glob.glob(sys.argv[1] + "/new/*")):
    msg = email.message_from_binary_file(open(path, "rb"), policy=policy.compat32)
    tok = "?"
    for part in msg.walk():
        ct = part.get_content_type()
        if ct in ("text/rfc822-headers", "message/rfc822"):
            m = re.search(r"T70-[a-z0-9-]+", part.as_string())
            if m:
                tok = m.group(0)
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        for b in blocks[1:]:
            fr = (b.get("Final-Recipient") or "").split(";")[-1].strip()
            print(fr, b.get("Action"), b.get("Status"), tok)
EOF
DSNS=$("$PYTHON3" "$T/dsns.py" "$T/mail/root/Maildir" 2>&1)
diag "DSNs at the site:" "$DSNS"
like "$DSNS" '(^|'$'\n'')someone@nxdomain\.test failed 5\.1\.2 T70-f-nx' "(f) NXDOMAIN: bounced 5.1.2 (DSN at the site)"
like "$(site_rcpt "$SFNX" someone@nxdomain.test)" '^bounced ' "(f) NXDOMAIN: bounced at the site"
like "$DSNS" '(^|'$'\n'')someone@nullmx\.test failed 5\.1\.10 T70-f-null' "(f) null MX: bounced 5.1.10 (DSN at the site)"
like "$(site_rcpt "$SFSLOW" someone@slow.test)" '^deferred ' "(f) DNS timeout: deferred (at the site)"
unlike "$DSNS" 'slow\.test' "(f) DNS timeout: no DSN"
like "$(gw list --json 2>/dev/null | jq -r '.[] | .recipients[] | select(.address == "someone@slow.test") | .result')" \
    'SERVFAIL or timeout' "(f) DNS timeout: the gateway's result says so"
like "$DSNS" '(^|'$'\n'')bob@example\.net failed 5\.4\.6 T70-i-loop51' "(i) 51 Received: fields: bounced 5.4.6"
like "$(site_rcpt "$SL50" bob@example.net)" '^delivered ' "(i) 50 Received: fields: delivered"
like "$(site_rcpt "$SB60" bob@example.net)" '^delivered ' "(i) Received: lines in the body do not count"
is "$(mx_count T70-i-loop51)" 0 "(i) the looping message is not in the Maildir"
like "$DSNS" '(^|'$'\n'')bob@example\.net failed 5\.7\.1 T70-j-bad' "(j) sender domain not listed: bounced 5.7.1"
like "$(site_rcpt "$SJBAD" bob@example.net)" '^bounced .*sender_domains' "(j) the site's result names sender_domains"
is "$(mx_count T70-j-bad)" 0 "(j) the foreign sender's message is not in the Maildir"
like "$(site_rcpt "$SJGOOD" bob@example.net)" '^delivered ' "(j) a listed sender domain: delivered"
is "$(mx_count T70-j-good)" 1 "(j) the listed sender's message is in the Maildir"
unlike "$DSNS" 'T70-(i-loop50|i-body60|j-good)' "no DSN for delivered messages"

# Out of the way before the retry run: the ones that stay deferred.
for q in "$H2" "$H3" "${AQ[a5]}" "${A6Q[@]}"; do gw delete "$q" >/dev/null 2>&1; done
gw list --json 2>/dev/null | jq -r '.[] | select(.recipients[].address == "someone@slow.test") | .id' |
    while read -r q; do gw delete "$q" >/dev/null 2>&1; done

# ---------------------------------------------------------------------------
# Queue run B: the MX is back to normal for carol and dave; postgrey's
# 2 s have passed; retry_first = 1s has passed.

write_access
sleep 2.5
ok "queue run B" daemon_run B
diag "queue run B: ${RUN_SECS}s"
like "$(outcome B "$BC" carol@example.net)" 'tries=2, status=sent' "(c) after the map change: delivered on the second try"
is "$(gw_rcpt "$BC" carol@example.net)" gone "(c) the message has left the gateway's queue"
is "$(mx_count T70-bc)" 1 "(c) in the Maildir once"
like "$(outcome B "$D" dave@example.net)" 'status=sent' "(d) after the 421: dave delivered"
like "$(outcome B "$D" alice@example.net)" 'status=sent' "(d) after the 421: alice delivered"
is "$(mx_count T70-d)" 2 "(d) two copies in the Maildirs (dave, alice)"
if [ "$HAVE_POSTGREY" = 1 ]; then
	like "$(outcome B "$K" grey@example.net)" 'tries=2, status=sent' "(k) greylisting: delivered on the retry"
	f=$(mx_files T70-k | head -n 1)
	like "$(cat "$f" 2>/dev/null)" 'X-Greylist: delayed' "(k) postgrey let it through after its delay"
else
	skip "no postgrey" 2
fi
is "$(gw list --json 2>/dev/null | jq length)" 0 "the gateway's queue is empty"

diag "70-deliver: $(($(date +%s) - START))s"
done_testing
