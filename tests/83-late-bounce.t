#!/usr/bin/env bash
# Late bounces (issue 6): an MX accepted a site's message and failed it
# later; its report reaches the gateway's SMTP listener as inbound mail for
# the site's sender, travels to the site in a bundle, and is delivered to
# the sender's Maildir.  When the report is an RFC 3464 delivery status
# report about one of the site's own messages, the failed recipient's
# state at the site becomes "bounced" with the report's status.
#
#   R1  null sender, multipart/report, Original-Envelope-Id = the site's
#       queue ID, alice failed 5.1.1: alice bounced, bob untouched
#   R2  null sender, no envelope ID, the returned header section carries
#       mgate's Received: trace (by ship.example.org (mgate...) id QID):
#       bob failed 5.2.2: bob bounced
#   F1  the same report as R1 for carol, but from a real sender (not a
#       bounce): carol is not bounced
#   F2  a report about a queue ID this site never had, and one that only
#       says "delayed": nothing changes
# Every report is still delivered to the sender's Maildir; one sync; a
# second import changes nothing.  And the site's recipient list
# (recipients): an unknown local user is refused at RCPT with 550 5.1.1.
# And the listener's session workers, which keep the queue database open:
# kill -9 of one in the middle of a DATA and then of all of them stores
# nothing half-received, and the next message is stored once.
#
# Real parts: mgate daemon's listener (smtplib from Python), bundles by
# export/import (file transport), the site's local delivery.
set -uo pipefail
. "$(dirname "$0")/lib/testlib.sh"

need_mgate
need_cmd jq swaks ss pgrep
mgate_setup

for k in site gw; do
	"$MGATE" keygen "$T/$k.key" >/dev/null 2>&1 || BAIL_OUT "keygen $k failed"
done
cat >"$T/site.conf" <<EOF
spool_directory = $T/site
myhostname = ship.example.org
mydomain = ship.example.org
local_name = ship
log_destination = stderr
private_key = $T/site.key
local_mailbox = $T/mail/%u/Maildir/
pickup_after_queue = no
history_lifetime = 3s

[peer gw]
transport = file
public_key = $T/gw.key.pub
EOF
write_gw_conf() { # PORT
	cat >"$T/gw.conf" <<EOF
role = gateway
spool_directory = $T/gw
myhostname = gw.example.net
mydomain = example.net
local_name = gw
log_destination = stderr
private_key = $T/gw.key
dns_resolver = 127.0.0.1:9
smtpd_listen = 127.0.0.1:$1
queue_run_interval = 1h

[peer ship]
transport = file
public_key = $T/site.key.pub
domains = ship.example.org
sender_domains = ship.example.org
recipients = root, postmaster@ship.example.org
EOF
}
site() { "$MGATE" -c "$T/site.conf" "$@"; }
gw() { "$MGATE" -c "$T/gw.conf" "$@"; }
write_gw_conf 25
site init >/dev/null && gw init >/dev/null || BAIL_OUT "mgate init failed"

# ---------------------------------------------------------------------------
# The site's message, accepted by the gateway.

printf 'From: Root <root@ship.example.org>\nSubject: T83 original\nMessage-ID: <t83@ship.example.org>\n\nhello\n' >"$T/m1"
out=$("$MGATE" -v -c "$T/site.conf" queue -i alice@remote.example bob@remote.example carol@remote.example <"$T/m1" 2>&1)
[[ $out =~ queued\ as\ ([0-9A-Z]{16}) ]] || BAIL_OUT "queue: $out"
Q=${BASH_REMATCH[1]}
site pickup >/dev/null 2>&1
run site export "$T/up.mgb"
is "$RUN_STATUS" 0 "the site exports its message"
run gw import --ack "$T/up.ack" "$T/up.mgb"
is "$RUN_STATUS" 0 "the gateway imports it" || diag "$RUN_STDERR"
run site import "$T/up.ack"
is "$RUN_STATUS" 0 "the site imports the acknowledgement" || diag "$RUN_STDERR"
state() { site list --json 2>/dev/null | jq -r --arg q "$Q" --arg r "$1" \
    '.[] | select(.id == $q) | .recipients[] | select(.address == $r) | .state'; }
is "$(state alice@remote.example) $(state bob@remote.example) $(state carol@remote.example)" \
    "accepted accepted accepted" "every recipient is accepted at the site"
TRACE=$(site cat "$Q" | sed -n '1,/^$/p' | sed -n '/^Received: by ship\.example\.org (mgate/{N;p;}')
like "$TRACE" "id $Q;" "the site's copy carries mgate's Received: trace with the queue ID"

# ---------------------------------------------------------------------------
# Remote reports through the gateway's listener.

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
DPID=
for try in 1 2 3; do
	PORT=$(free_port)
	write_gw_conf "$PORT"
	"$MGATE" -c "$T/gw.conf" daemon 2>>"$T/gw.log" &
	DPID=$!
	wait_for 10 port_open "$PORT" && break
	kill "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; DPID=
done
[ -n "$DPID" ] || BAIL_OUT "the gateway's listener did not start: $(tail -n 3 "$T/gw.log")"
on_exit "kill $DPID 2>/dev/null || true"

cat >"$T/send.py" <<'PY'
import smtplib, sys
port, sender, envid, rcpt, action, status, trace = sys.argv[1:8]
b = "=_b83"
per_msg = "Reporting-MTA: dns; mx.remote.example\n"
if envid:
    per_msg += "Original-Envelope-Id: %s\n" % envid
per_rcpt = ("Final-Recipient: rfc822; %s\nAction: %s\nStatus: %s\n"
            "Diagnostic-Code: smtp; 550-%s mailbox\n"
            "   unavailable after all\n" % (rcpt, action, status, status))
ret = trace.replace("\\n", "\n") if trace else ""
msg = ("From: Mail Delivery System <MAILER-DAEMON@mx.remote.example>\n"
       "To: root@ship.example.org\nSubject: Undelivered Mail Returned to Sender\n"
       "MIME-Version: 1.0\n"
       "Content-Type: multipart/report; report-type=delivery-status;\n"
       "\tboundary=\"%s\"\n\n--%s\nContent-Type: text/plain\n\nIt failed.\n\n"
       "--%s\nContent-Type: message/delivery-status\n\n%s\n%s\n"
       "--%s\nContent-Type: text/rfc822-headers\n\n%sSubject: T83 original\n\n"
       "--%s--\n" % (b, b, b, per_msg, per_rcpt, b, ret, b))
s = smtplib.SMTP("127.0.0.1", int(port), timeout=20)
s.ehlo("mx.remote.example")
s.sendmail(sender, ["root@ship.example.org"], msg.encode())
s.quit()
PY
send() { "$PYTHON3" "$T/send.py" "$PORT" "$@"; }
ok "R1 (ENVID names the message, alice failed) accepted by the listener" \
    send "" "$Q" alice@remote.example failed 5.1.1 ""
ok "R2 (no ENVID, mgate's trace in the returned header, bob failed) accepted" \
    send "" "" bob@remote.example failed 5.2.2 "${TRACE//$'\n'/\\n}\n"
ok "F1 (the same report for carol, but from a real sender) accepted" \
    send "postmaster@remote.example" "$Q" carol@remote.example failed 5.1.1 ""
ok "F2a (a report about a queue ID this site never had) accepted" \
    send "" "0000000000000000" carol@remote.example failed 5.1.1 ""
ok "F2b (a report that only says delayed) accepted" \
    send "" "$Q" carol@remote.example delayed 4.4.7 ""
is "$(gw list --json | jq '[.[] | select(.via == "ship")] | length')" 5 \
    "the gateway holds five messages for the site"

# The site's recipient list: unknown users are refused at RCPT time, so
# the remote MTA reports it and nobody gets a late bounce.
cat >"$T/rcpt.py" <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20)
s.ehlo("mx.remote.example")
s.mail("someone@remote.example")
for r in sys.argv[2:]:
    code, msg = s.rcpt(r)
    print("%s %d %s" % (r, code, msg.decode()))
s.rset()
s.quit()
PY
run "$PYTHON3" "$T/rcpt.py" "$PORT" nobody@ship.example.org Root+Tag@SHIP.example.org \
    postmaster@ship.example.org postmaster+x@ship.example.org
like "$RUN_STDOUT" 'nobody@ship\.example\.org 550 5\.1\.1 <nobody@ship\.example\.org>: Recipient address rejected' \
    "recipients: an unknown user of the site is refused with 550 5.1.1"
like "$RUN_STDOUT" 'Root\+Tag@SHIP\.example\.org 250' "a listed local part, with +detail and in another case, is accepted"
like "$RUN_STDOUT" 'postmaster@ship\.example\.org 250' "a listed address is accepted"
like "$RUN_STDOUT" 'postmaster\+x@ship\.example\.org 250' "and with +detail"

# The listener's session workers keep the queue database open between
# sessions.  kill -9 one in the middle of a DATA (nothing may be stored
# and nothing answered 250), then every worker, idle ones holding the
# database included: the listener starts new ones, and the next message
# is stored once.
LISTENER=$(pgrep -P "$DPID" | head -n 1)
workers() { pgrep -P "$LISTENER"; }
ok "the listener runs session workers" test -n "$(workers)"
cat >"$T/half.py" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
f = s.makefile("rb")
def reply():
    while True:
        l = f.readline()
        if not l or l[3:4] != b"-":
            return l
reply()
for c in (b"EHLO half.example\r\n", b"MAIL FROM:<x@remote.example>\r\n",
          b"RCPT TO:<postmaster@ship.example.org>\r\n", b"DATA\r\n"):
    s.sendall(c); reply()
s.sendall(b"Subject: T83 half\r\n\r\nnever finished\r\n")
print("in-data", flush=True)
time.sleep(30)
PY
"$PYTHON3" "$T/half.py" "$PORT" >"$T/half.out" 2>&1 &
HALF=$!
wait_for 10 grep -q in-data "$T/half.out" || diag "the half session did not reach DATA"
# The worker serving it: the one with an established connection to us.
busy=$(for w in $(workers); do ss -tnp 2>/dev/null | grep -q "pid=$w," && echo "$w"; done | head -n 1)
ok "found the worker in the middle of DATA" test -n "$busy"
[ -n "$busy" ] && kill -9 "$busy"
kill "$HALF" 2>/dev/null; wait "$HALF" 2>/dev/null
for w in $(workers); do kill -9 "$w"; done
wait_for 10 bash -c "[ -n \"\$(pgrep -P $LISTENER)\" ]"
ok "the listener starts new workers after the kills" test -n "$(workers)"
printf 'Subject: T83 after kills\n\nstored once\n' >"$T/after.msg"
ok "after the kills, a message for postmaster is accepted" \
    swaks --server "127.0.0.1:$PORT" --from someone@remote.example \
    --to postmaster@ship.example.org --data "$T/after.msg" --silent 2
is "$(gw list --json | jq '[.[] | select(.via == "ship")] | length')" 6 \
    "the gateway holds six messages for the site: the killed DATA stored nothing"

# ---------------------------------------------------------------------------
# To the site.

run gw export --peer ship "$T/down.mgb"
is "$RUN_STATUS" 0 "the gateway exports the site's mail" || diag "$RUN_STDERR"
run site import "$T/down.mgb"
is "$RUN_STATUS" 0 "the site imports it" || diag "$RUN_STDERR"
LOG=$RUN_STDERR
MAILDIR=$T/mail/root/Maildir
is "$(find "$MAILDIR/new" "$MAILDIR/cur" -type f 2>/dev/null | wc -l)" 5 \
    "all five reports are in root's Maildir"
is "$(state alice@remote.example)" bounced "R1: alice is bounced (matched by Original-Envelope-Id)"
is "$(state bob@remote.example)" bounced "R2: bob is bounced (matched by mgate's Received: trace)"
# (The daemon's queue run may have deferred her meanwhile: no DNS here.)
isnt "$(state carol@remote.example)" bounced "F1, F2: carol is not bounced"
ST=$(site status "$Q" 2>&1)
like "$ST" 'alice@remote\.example.*5\.1\.1 late bounce from dns; mx\.remote\.example: smtp; 550-5\.1\.1 mailbox unavailable after all' \
    "mgate status shows alice's late bounce with the remote MTA and its words"
like "$ST" 'bob@remote\.example.*5\.2\.2 late bounce' "and bob's"
like "$LOG" "$Q: to=<alice@remote\\.example>, status=bounced \\(5\\.1\\.1 late bounce" \
    "the log line is keyed by the original queue ID"
like "$LOG" 'a delivery status report about a message not in this spool \(envelope id "0000000000000000"' \
    "a report about an unknown message is logged and changes nothing"

# Once more: nothing changes, nothing is delivered twice.
run site import "$T/down.mgb"
is "$(find "$MAILDIR/new" "$MAILDIR/cur" -type f 2>/dev/null | wc -l)" 5 "importing the bundle again delivers nothing twice"
unlike "$RUN_STDERR" "status=bounced" "and marks nothing again"

# ---------------------------------------------------------------------------
# History: a sent message whose every recipient is final stays listed for
# history_lifetime (3 s here) after its last change, then goes; one that
# still waits for news (M1: carol) stays.

printf 'From: Root <root@ship.example.org>\nSubject: T83 second\n\nhello again\n' >"$T/m2"
out=$("$MGATE" -v -c "$T/site.conf" queue -i dave@remote.example <"$T/m2" 2>&1)
[[ $out =~ queued\ as\ ([0-9A-Z]{16}) ]] || BAIL_OUT "queue: $out"
Q2=${BASH_REMATCH[1]}
site pickup >/dev/null 2>&1
site export "$T/up2.mgb" >/dev/null 2>&1 && gw import --ack "$T/up2.ack" "$T/up2.mgb" >/dev/null 2>&1 &&
    site import "$T/up2.ack" >/dev/null 2>&1
ok "R3 (dave failed, ENVID names M2) accepted by the listener" \
    send "" "$Q2" dave@remote.example failed 5.1.1 ""
run gw export --peer ship "$T/down2.mgb"
run site import "$T/down2.mgb"
is "$RUN_STATUS" 0 "the site imports R3" || diag "$RUN_STDERR"
listed() { site list --json 2>/dev/null | jq -r --arg q "$1" '[.[] | select(.id == $q)] | length'; }
is "$(listed "$Q2") $(site list --json | jq -r --arg q "$Q2" '.[] | select(.id == $q) | .recipients[0].state')" "1 bounced" \
    "M2, all recipients final, is still listed right after its last change"
sleep 4
run site import "$T/down2.mgb"
like "$RUN_STDERR" "$Q2: removed" "after history_lifetime the next import removes it, and says so"
is "$(listed "$Q2")" 0 "M2 is no longer listed"
is "$(listed "$Q")" 1 "M1, with carol still open, is kept"

kill "$DPID" 2>/dev/null
wait "$DPID" 2>/dev/null
done_testing
