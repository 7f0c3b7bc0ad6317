#!/usr/bin/env bash
# 71-loop-dsn.t - the whole loop over real components (issue 5): mail
# queued at a site, `mgate sync' over SSH (a real sshd, tests/lib/
# sshd-setup.sh) to the gateway, `mgate daemon --once' delivers to a real
# Postfix MX found through dnsmasq, the next sync brings the status records
# back, and the site writes RFC 3464 reports into the sender's Maildir.
#
#   M1  root -> bob@ (accepted) + nobody@ (550 5.1.1 at the MX): bob
#       "delivered", nobody "bounced" at the site, and one DSN in root's
#       Maildir that Python's email package parses as multipart/report
#       (report-type=delivery-status) with a message/delivery-status part:
#       Final-Recipient rfc822; nobody@example.net, Action: failed,
#       Status: 5.1.1, a Diagnostic-Code with the MX's reply, the MX in
#       Remote-MTA; bob not in it; the returned message attached.
#   M2  -f '<>' -> nobody@: bounced, no DSN (never bounce a bounce).
#   M3  -N never -> nobody@: bounced, no DSN.
#   M4  -N success -> bob@ at an MX that offers DSN: delivered, with
#       NOTIFY=SUCCESS passed on, so the MX writes the success report
#       (its log says so) and the site writes none (RFC 3461 6.2).
#   M5  -N success -> nobody@: bounced, no DSN (failure was not asked for).
#   M6  -N success -> bob@ once the MX no longer offers DSN: a success
#       DSN from the site with Action: relayed, Status 2.x.x.
# Then further syncs (and a queue run) work and bring no second report:
# the number of files in the Maildir stays 2; and every `mgate serve'
# session ended by itself (status 0), none killed by a signal.
#
# Needs root (sshd, Postfix), dnsmasq, python3.
set -uo pipefail
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/sshd-setup.sh"

need_root "starts sshd and Postfix"
need_mgate
need_cmd postfix dnsmasq jq ss script
setup_tmpdir
START=$(date +%s)
sshd_gateway_setup
# How each `mgate serve' (the gateway's end, run by sshd) ends: one line
# per session in serve.log ("status=0", or "signal=NAME").
sshd_wrap_serve "$T/serve.log"

site() { "$MGATE" -c "$SITE_CONF" "$@"; }
gw() { "$MGATE" -c "$GW_CONF" "$@"; }

MXPORT=$(free_port)
DNSPORT=$(free_port)
while [ "$DNSPORT" = "$MXPORT" ]; do DNSPORT=$(free_port); done

# DNS: example.net's MX is the Postfix below.
cat >"$T/dnsmasq.conf" <<EOF
port=$DNSPORT
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
mx-host=example.net,mx.example.net,10
host-record=mx.example.net,127.0.0.1
EOF
dnsmasq -C "$T/dnsmasq.conf" --pid-file="$T/dnsmasq.pid" 2>"$T/dnsmasq.err" ||
    BAIL_OUT "dnsmasq: $(cat "$T/dnsmasq.err")"
on_exit '[ -s "$T/dnsmasq.pid" ] && kill "$(cat "$T/dnsmasq.pid")" 2>/dev/null'

MX=$T/mx
"$POSTFIX_INSTANCE" start "$MX" "$MXPORT" >"$T/pf-start.log" 2>&1 ||
    BAIL_OUT "postfix-instance start: $(tail -n 20 "$T/pf-start.log")"
on_exit "$(printf '%q stop %q' "$POSTFIX_INSTANCE" "$MX")"
echo '/^nobody@example\.net$/ 550 5.1.1 <nobody@example.net>: User unknown in this test' \
    >"$MX/conf/recipient_access"
"$POSTFIX_INSTANCE" reload "$MX" >/dev/null 2>&1 || BAIL_OUT "postfix reload failed"

# The gateway delivers (resolver, MX port, quick retries) and lets the
# site send as its domain; the site delivers reports into a Maildir.
# Main-section keys go above the first [peer] section.
sed -i "/^\[peer ship\]/i dns_resolver = 127.0.0.1:$DNSPORT\nsmtp_port = $MXPORT\nretry_first = 1s\nsmtp_command_timeout = 30s\n" "$GW_CONF"
echo "sender_domains = example.org" >>"$GW_CONF"
sed -i "/^\[peer gw\]/i local_mailbox = $T/mail/%u/Maildir/\n" "$SITE_CONF"
ok "gateway configuration is valid" gw check-config
ok "site configuration is valid" site check-config

MAILDIR=$T/mail/root/Maildir
reports() { find "$MAILDIR/new" "$MAILDIR/cur" -type f 2>/dev/null | LC_ALL=C sort; }
nreports() { reports | grep -c . ; }

queue_site() { # FILE ARGS...: queue at the site, print the queue ID
	local f=$1 out
	shift
	out=$("$MGATE" -v -c "$SITE_CONF" queue "$@" <"$f" 2>&1) || {
		diag "queue $*: $out"
		return 1
	}
	[[ $out =~ queued\ as\ ([0-9A-Z]{16}) ]] || { diag "no queue ID in: $out"; return 1; }
	printf '%s\n' "${BASH_REMATCH[1]}"
}
site_state() { # QID RCPT
	site list --json 2>/dev/null | jq -r --arg id "$1" --arg r "$2" '
	    .[] | select(.id == $id) | .recipients[] | select(.address == $r) | .state'
}

# ---------------------------------------------------------------------------
# Queue at the site.

for i in 1 2 3 4 5; do
	printf 'From: Skipper <root@example.org>\nSubject: T71-M%d\n\nmessage M%d\n' "$i" "$i" >"$T/m$i.msg"
done
M1=$(queue_site "$T/m1.msg" -i bob@example.net nobody@example.net)
M2=$(queue_site "$T/m2.msg" -i -f '<>' nobody@example.net)
M3=$(queue_site "$T/m3.msg" -i -N never nobody@example.net)
M4=$(queue_site "$T/m4.msg" -i -N success bob@example.net)
M5=$(queue_site "$T/m5.msg" -i -N success nobody@example.net)
ok "five messages queued at the site" test -n "$M1" -a -n "$M2" -a -n "$M3" -a -n "$M4" -a -n "$M5"

ok "sync 1: the mail goes to the gateway over SSH" site sync
is "$(site_state "$M1" bob@example.net)" accepted "sync 1: the gateway accepted M1"
ok "the gateway's daemon runs once" gw daemon --once
# Postfix's 250 means queued: let it deliver into the Maildirs.
postfix_idle() { [ "$("$POSTFIX_INSTANCE" count "$MX")" = 0 ]; }
wait_for 30 postfix_idle || diag "Postfix's queue is not empty"
is "$(find "$MX/mail/example.net/bob/new" -type f | wc -l)" 2 "bob@example.net got M1 and M4 at the MX"
is "$(nreports)" 0 "no report before the next sync"

ok "sync 2: status records come back" site sync
is "$(site_state "$M1" bob@example.net)" delivered "M1: bob delivered at the site"
is "$(site_state "$M1" nobody@example.net)" bounced "M1: nobody bounced at the site"
is "$(site_state "$M2" nobody@example.net)" bounced "M2 (null sender): bounced at the site"
is "$(site_state "$M3" nobody@example.net)" bounced "M3 (NOTIFY=NEVER): bounced at the site"
is "$(site_state "$M4" bob@example.net)" delivered "M4 (NOTIFY=SUCCESS): delivered at the site"
is "$(site_state "$M5" nobody@example.net)" bounced "M5 (NOTIFY=SUCCESS): bounced at the site"
is "$(nreports)" 1 "exactly one report: M1's failure (M4's success is the MX's to report)"
like "$(grep -h 'sender delivery status notification' "$MX/log/maillog" 2>/dev/null | head -n 1)" . \
    "the MX, which offered DSN and got NOTIFY=SUCCESS, sent M4's success report itself"

# M6: the MX stops offering DSN; a success there is "relayed", reported by the site.
postconf -c "$MX/conf" -e 'smtpd_discard_ehlo_keywords = dsn' &&
    "$POSTFIX_INSTANCE" reload "$MX" >/dev/null 2>&1 || BAIL_OUT "postfix reconfigure failed"
printf 'From: Skipper <root@example.org>\nSubject: T71-M6\n\nmessage M6\n' >"$T/m6.msg"
M6=$(queue_site "$T/m6.msg" -i -N success bob@example.net)
ok "M6 queued" test -n "$M6"
ok "sync: M6 to the gateway" site sync
ok "the daemon delivers M6" gw daemon --once
wait_for 30 postfix_idle || diag "Postfix's queue is not empty"
ok "sync: M6's status comes back" site sync
is "$(site_state "$M6" bob@example.net)" delivered "M6 (NOTIFY=SUCCESS, MX without DSN): delivered at the site"
is "$(nreports)" 2 "two reports now: M1's failure and M6's success"

# ---------------------------------------------------------------------------
# Parse every report with Python's email package.

cat >"$T/dsn.py" <<'EOF'
# dsn.py FILE...: one JSON object per report.
import email, json, re, sys
from email import policy
for path in sys.argv[1:]:
    with open(path, "rb") as fh:
        msg = email.message_from_binary_file(fh, policy=policy.compat32)
    out = {"file": path, "type": msg.get_content_type(),
           "report_type": msg.get_param("report-type"),
           "to": msg.get("To"), "from": msg.get("From"),
           "subject": msg.get("Subject"), "defects": len(msg.defects),
           "parts": [p.get_content_type() for p in msg.walk()],
           "recipients": [], "returned": ""}
    for part in msg.walk():
        ct = part.get_content_type()
        if ct == "message/delivery-status":
            blocks = part.get_payload()
            out["per_message"] = dict(blocks[0].items())
            for b in blocks[1:]:
                out["recipients"].append(dict(b.items()))
        elif ct in ("message/rfc822", "text/rfc822-headers"):
            m = re.search(r"T71-M[0-9]", part.as_string())
            out["returned"] = m.group(0) if m else ""
    print(json.dumps(out))
EOF
run "$PYTHON3" "$T/dsn.py" $(reports)
is "$RUN_STATUS" 0 "Python's email package parses the reports"
[ "$RUN_STATUS" = 0 ] || diag "$RUN_STDERR"
PARSED=$RUN_STDOUT
fail_dsn=$(jq -c 'select(.returned == "T71-M1")' <<<"$PARSED")
succ_dsn=$(jq -c 'select(.returned == "T71-M6")' <<<"$PARSED")
diag "failure report: $(jq -c '{type, report_type, recipients}' <<<"$fail_dsn" 2>/dev/null)"
diag "success report: $(jq -c '{type, report_type, recipients}' <<<"$succ_dsn" 2>/dev/null)"

f() { jq -r "$1" <<<"$fail_dsn" 2>/dev/null; }
is "$(f .type)" multipart/report "M1's report: multipart/report"
is "$(f .report_type)" delivery-status "M1's report: report-type=delivery-status"
like "$(f '.parts | join(" ")')" 'message/delivery-status' "M1's report: has a message/delivery-status part"
like "$(f '.parts | join(" ")')" 'message/rfc822' "M1's report: returns the message (RET=FULL by default)"
is "$(f .defects)" 0 "M1's report: no MIME defects"
like "$(f .to)" 'root@example\.org' "M1's report: to the sender"
like "$(f '.per_message["Reporting-MTA"] // ""')" '^dns; ' "M1's report: Reporting-MTA"
is "$(f '.recipients | length')" 1 "M1's report: one recipient (bob was delivered)"
is "$(f '.recipients[0]["Final-Recipient"] // ""')" "rfc822; nobody@example.net" "M1's report: Final-Recipient"
is "$(f '.recipients[0].Action // ""')" failed "M1's report: Action: failed"
is "$(f '.recipients[0].Status // ""')" 5.1.1 "M1's report: Status: 5.1.1"
like "$(f '.recipients[0]["Diagnostic-Code"] // ""')" '^smtp; 550 5\.1\.1 .*User unknown in this test' \
    "M1's report: Diagnostic-Code has the MX's reply"
like "$(f '.recipients[0]["Remote-MTA"] // ""')" 'mx\.example\.net' "M1's report: Remote-MTA is the MX"

s() { jq -r "$1" <<<"$succ_dsn" 2>/dev/null; }
is "$(s .type)" multipart/report "M6's report: multipart/report"
is "$(s '.recipients | length')" 1 "M6's report: one recipient"
is "$(s '.recipients[0]["Final-Recipient"] // ""')" "rfc822; bob@example.net" "M6's report: Final-Recipient"
is "$(s '.recipients[0].Action // ""')" relayed "M6's report: Action: relayed (the MX offered no DSN)"
like "$(s '.recipients[0].Status // ""')" '^2\.[0-9]+\.[0-9]+$' "M6's report: Status 2.x.x"
like "$(s '.recipients[0]["Remote-MTA"] // ""')" 'mx\.example\.net' "M6's report: Remote-MTA is the MX"
unlike "$PARSED" 'T71-M[2345]' "no report for M2 (null sender), M3 (NEVER), M4 (the MX reports), M5 (SUCCESS only)"

# ---------------------------------------------------------------------------
# No storm: more syncs and queue runs add nothing.

ok "sync 3" site sync
ok "the daemon runs again" gw daemon --once
wait_for 30 postfix_idle || diag "Postfix's queue is not empty"
ok "sync 4" site sync
is "$(nreports)" 2 "after two more syncs: still exactly two reports"
is "$(find "$MX/mail" -type f -path '*/new/*' | wc -l)" 3 "the MX has still only the three messages for bob"
# A serve killed by a signal (say SIGPIPE after the site hung up) leaves
# its spool handles behind for the next process to clean up.
unlike "$(cat "$T/serve.log")" 'signal=' "every mgate serve session ended by itself, none by a signal"
diag "serve sessions: $(tr '\n' ';' <"$T/serve.log")"

diag "71-loop-dsn: $(($(date +%s) - START))s"
done_testing
