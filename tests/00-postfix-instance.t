#!/usr/bin/env bash
# The Postfix test instance helper (tests/lib/postfix-instance) that other
# tests use as a real MX: it starts on its own port, delivers SMTP mail into
# Maildirs byte for byte, takes local injection through Postfix's sendmail,
# runs beside a second instance, refuses to relay, and stops without leaving
# a process behind.
set -uo pipefail
. "$(dirname "$0")/lib/testlib.sh"

need_root "starts Postfix's master, which must run as root"
need_cmd postfix swaks ss script
setup_tmpdir

PFI=$POSTFIX_INSTANCE
A=$T/pfa
B=$T/pfb
# Stop whatever we started, whatever happens (stop is idempotent).
on_exit "$(printf '%q stop %q 2>/dev/null; %q stop %q 2>/dev/null' "$PFI" "$A" "$PFI" "$B")"

# Processes of the instance in DIR: Postfix daemons working in DIR/queue.
instance_procs() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/cwd" 2>/dev/null)" = "$1/queue" ] && echo "${p#/proc/}"
	done
	return 0
}

# DIR's hold queue / whole queue holds exactly N messages (polled by wait_for).
hold_count_is() { [ "$(find "$1/queue/hold" -type f 2>/dev/null | wc -l)" = "$2" ]; }
queue_count_is() { [ "$("$PFI" count "$1")" = "$2" ]; }

# The one file that virtual(8) delivered into a Maildir's new/.
delivered_file() { # MAILDIR
	local f
	f=$(find "$1/new" -type f 2>/dev/null | head -n 2)
	[ -n "$f" ] && [ "$(printf '%s\n' "$f" | wc -l)" = 1 ] && printf '%s\n' "$f"
}

# A delivered file must be exactly: the headers Postfix prepends, then the
# message as submitted, byte for byte.
check_delivery() { # DELIVERED ORIGINAL
	local d=$1 o=$2 dsize osize
	dsize=$(stat -c %s "$d")
	osize=$(stat -c %s "$o")
	[ "$dsize" -gt "$osize" ] || { echo "delivered file is not longer than the original"; return 1; }
	tail -c "$osize" "$d" | cmp - "$o" || return 1
	# Everything before it: Return-Path, X-Original-To, Delivered-To,
	# Received (with continuation lines), nothing else.
	head -c "$((dsize - osize))" "$d" |
		LC_ALL=C grep -Ev '^(Return-Path|X-Original-To|Delivered-To|Received): |^[[:blank:]]' &&
		{ echo "unexpected prepended lines (above)"; return 1; }
	return 0
}

# ---------------------------------------------------------------------------
# Two instances, started at the same time on different ports.

# The default instance's configuration must stay untouched.
etc_before=$(ls -la --time-style=full-iso /etc/postfix 2>&1)

PORT_A=$(free_port)
PORT_B=$(free_port)
while [ "$PORT_B" = "$PORT_A" ]; do PORT_B=$(free_port); done

"$PFI" start "$A" "$PORT_A" >"$T/start-a.log" 2>&1 &
pid_a=$!
"$PFI" start "$B" "$PORT_B" >"$T/start-b.log" 2>&1 &
pid_b=$!
ok "instance A starts on 127.0.0.1:$PORT_A" wait "$pid_a" || diag "$(cat "$T/start-a.log")"
ok "instance B starts on 127.0.0.1:$PORT_B (in parallel)" wait "$pid_b" || diag "$(cat "$T/start-b.log")"
ok "status says A is running" "$PFI" status "$A"
run ss -Hltn "sport = :$PORT_A"
like "$RUN_STDOUT" "127\.0\.0\.1:$PORT_A " "A listens on 127.0.0.1 only"
is "$(wc -l <<<"$RUN_STDOUT")" 1 "A listens on one address"

# ---------------------------------------------------------------------------
# SMTP delivery into a Maildir, byte for byte.
#
# The message has what SMTP must carry transparently: lines starting with a
# dot (dot-stuffing), a lone dot, a tab, trailing blanks, 8-bit UTF-8, a
# long line, an empty last line.  swaks sends it exactly as we encode it
# (--no-data-fixup): CRLF line ends, leading dots doubled, then ".".

cat >"$T/msg" <<'EOF'
From: Sender <sender@example.org>
To: Bob <bob@example.com>
Subject: byte for byte
Date: Sat, 30 Nov 2024 07:00:00 +0000
Message-ID: <pfi-test-1@example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

A line with a tab	and trailing blanks   
.a line starting with a dot
..two dots
.
Grüße aus dem Test, ünïcödé.
EOF
printf '%0998d\n\n' 0 >>"$T/msg"
"$PYTHON3" - "$T/msg" "$T/wire" <<'EOF'
import sys
data = open(sys.argv[1], "rb").read()
lines = data.split(b"\n")[:-1]              # the file ends with a newline
out = b"\r\n".join((b"." + l if l.startswith(b".") else l) for l in lines)
open(sys.argv[2], "wb").write(out + b"\r\n.")   # swaks appends the last CRLF
EOF

ok "swaks delivers to bob@example.com through A" \
	swaks --server "127.0.0.1:$PORT_A" --from sender@example.org \
	--to bob@example.com --no-data-fixup --data "@$T/wire" --silent 2

bob_a=$("$PFI" maildir "$A" bob@example.com)
is "$bob_a" "$A/mail/example.com/bob" "maildir prints the Maildir of a mailbox"
ok "the message lands in bob's Maildir on A" wait_for 10 delivered_file "$bob_a"
f=$(delivered_file "$bob_a")
ok "the Maildir file is the message byte for byte after Postfix's trace headers" \
	check_delivery "$f" "$T/msg"
like "$(head -n 3 "$f")" "^Return-Path: <sender@example\.org>" "Return-Path carries the envelope sender"
ok "Delivered-To carries the envelope recipient" grep -qx 'Delivered-To: bob@example.com' "$f"
ok "nothing reached B's Maildirs" test -z "$(find "$B/mail" -type f)"

# Catch-all mailbox for any other local part of a test domain, on B.
ok "swaks delivers to someone@example.net through B" \
	swaks --server "127.0.0.1:$PORT_B" --from sender@example.org \
	--to someone@example.net --no-data-fixup --data "@$T/wire" --silent 2
catch_b=$("$PFI" maildir "$B" someone@example.net)
is "$catch_b" "$B/mail/example.net/catchall" "other local parts map to the catch-all Maildir"
ok "the message lands in B's catch-all Maildir" wait_for 10 delivered_file "$catch_b"
ok "B delivered it byte for byte too" check_delivery "$(delivered_file "$catch_b")" "$T/msg"

# A real MX does not relay, even for loopback clients; nothing leaves.
is_exit 24 "relaying to a non-test domain is refused at RCPT (swaks exit 24)" \
	swaks --server "127.0.0.1:$PORT_A" --from sender@example.org \
	--to someone@elsewhere.invalid --silent 2

# ---------------------------------------------------------------------------
# Local injection: Postfix's own sendmail -C DIR (postdrop -> pickup ->
# cleanup -> queue -> virtual).

confdir=$("$PFI" confdir "$A")
ok "sendmail -C DIR queues a message" \
	/usr/sbin/sendmail -C "$confdir" -i -f sender@example.org -- alice@example.net <"$T/msg"
alice_a=$("$PFI" maildir "$A" alice@example.net)
ok "the locally injected message lands in alice's Maildir" wait_for 10 delivered_file "$alice_a"
ok "it too is the message byte for byte after the trace headers" \
	check_delivery "$(delivered_file "$alice_a")" "$T/msg"
ok "A's queue is empty afterwards" wait_for 10 queue_count_is "$A" 0
ok "A logs to its own maillog" grep -q 'status=sent (delivered to maildir)' "$A/log/maillog"

# ---------------------------------------------------------------------------
# Mode hold (the benchmark's): mail is queued, on hold, never delivered.

H=$T/pfh
on_exit "$(printf '%q stop %q 2>/dev/null' "$PFI" "$H")"
PORT_H=$(free_port)
ok "a third instance starts in mode hold" "$PFI" start "$H" "$PORT_H" hold
ok "sendmail -C DIR into it succeeds" \
	/usr/sbin/sendmail -C "$H/conf" -i -f sender@example.org -- bob@example.com <"$T/msg"
ok "the message reaches the hold queue" wait_for 10 hold_count_is "$H" 1
ok "and is not delivered" test -z "$(find "$H/mail" -type f)"
ok "stop the hold instance" "$PFI" stop "$H"

# ---------------------------------------------------------------------------
# A busy port is refused; then stop both and leave nothing behind.

is_exit 1 "a third instance on A's port is refused" "$PFI" start "$T/pfc" "$PORT_A"

master_a=$(cat "$A/queue/pid/master.pid" 2>/dev/null)
master_a=${master_a//[[:space:]]/}
isnt "$(instance_procs "$A")" "" "A has running processes before stop"
ok "stop A" "$PFI" stop "$A"
is "$(instance_procs "$A")" "" "no process of A is left"
ok "A's master ($master_a) is gone" \
	wait_for 5 bash -c "! test -d /proc/$master_a || grep -q '^State:[[:space:]]*Z' /proc/$master_a/status"
is "$(ss -Hltn "sport = :$PORT_A")" "" "A's port is closed"
ok "B still runs after A stopped" "$PFI" status "$B"
ok "stop B" "$PFI" stop "$B"
is "$(instance_procs "$B")" "" "no process of B is left"
is_exit 1 "status says B is not running" "$PFI" status "$B"
ok "stop is idempotent" "$PFI" stop "$B"
is "$(ls -la --time-style=full-iso /etc/postfix 2>&1)" "$etc_before" "/etc/postfix was not touched"

done_testing
