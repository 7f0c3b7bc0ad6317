#!/usr/bin/env bash
# bench/deliver.sh - the gateway's delivery speed: N (default 10,000)
# corpus messages from the gateway's spool to a Postfix MX on loopback,
# `mgate daemon --once` side by side with a Postfix gateway relaying the
# same messages to the same kind of MX, in the same run.  Issue 5:
# messages/s of both and the ratio (target: mgate >= 1x Postfix, with
# every state change durable on both sides).
#
# Set-up (not timed):
#   - The messages: the whole corpus (easy_ham, easy_ham_2, hard_ham, spam,
#     spam_2; sorted by name; mbox From line stripped; files with NUL bytes
#     left out), repeated until there are N, each with a header field
#     "X-Bench-Seq: n" on top (1..N) so that every delivered copy can be
#     told apart.  Message n goes to mailbox (n-1) mod M (M = 300 by
#     default: u0@d0.bench.test .. u299@d3.bench.test, mailbox k in domain
#     d(k mod D), D = 4 by default).
#   - DNS: dnsmasq on a free loopback port, MX of every dK.bench.test ->
#     mx.bench.test -> 127.0.0.1.
#   - mgate: a site (ship) queues the N messages once (`mgate queue`, one
#     process each), `mgate pickup`, then `mgate export` until nothing is
#     left; each round imports those bundles into a fresh gateway spool
#     (`mgate import`), the normal path into a gateway's spool: every
#     message came from a site, so every outcome also commits a status
#     record for the site, as in real use.
#   - Postfix: a gateway instance (tests/lib/postfix-instance, mode hold:
#     a header_checks HOLD puts every message in the hold queue) with
#     relayhost = [127.0.0.1]:MXPORT; each round the same N messages (CRLF
#     line ends, same envelopes) go in over SMTP from one python3 smtplib
#     connection.
#   - Each side, each round, gets a fresh MX instance (same port, new
#     directory, empty Maildirs), warmed up with C sessions.
#   - Concurrency: mgate has delivery_concurrency = C and
#     destination_concurrency = DC (default 2, mgate's default), so C =
#     min(20, D * DC) = 8 connections by default, DC per domain; all D
#     domains have the same MX.  Postfix sees one destination (the
#     relayhost) and gets default_destination_concurrency_limit = C, the
#     same number of parallel connections to the MX (initial_destination_
#     concurrency left at its default, 5: Postfix's slow start).
#   - No durability setting is changed on either side: mgate commits every
#     outcome in a synchronous Berkeley DB transaction, Postfix fsyncs its
#     queue files, the MX fsyncs each Maildir file.
#
# Timed, one side after the other, ROUNDS times (default 2; every other
# round in the other order):
#   mgate    from the start of `mgate daemon --once` until every message is
#            in the MX's Maildirs AND the daemon has exited (its last step
#            removes the finished messages from the spool);
#   Postfix  from `postsuper -H ALL` + `postqueue -f` until every message is
#            in the MX's Maildirs AND the gateway's queue is empty.
# Both "all in Maildirs" (newest Maildir file's mtime) and "gateway done"
# are printed; msg/s uses the later of the two, the final ratio the total
# time of all rounds of each side.  Also printed: the daemon's phases (from
# its log, stamped here), MX lookups and SMTP sessions, Postfix's delays.
# Checks: each MX holds exactly N files, one per X-Bench-Seq 1..N, each in
# the mailbox of its recipient (none missing, duplicated or misplaced); the
# mgate spool is empty afterwards, the Postfix gateway's queue too.
#
# Environment: MGATE_BUILD (default REPO/build), MGATE_CORPUS,
# MGATE_BENCH_DELIVER_N (default 10000), _ROUNDS (default 2), _DOMAINS (D,
# default 4),
# _MAILBOXES (M, default 300), _DEST_CONC (DC, default 2), _ORDER (default
# "mgate postfix"), _TIMEOUT (seconds per side, default 900), _STRACE=1 (run
# the mgate side under strace -f -c: syscall counts and times; slows it
# down, for profiling only), _WRAP (a command prefix for the daemon, e.g.
# "strace -ff -tt -o /tmp/st"; profiling only), MGATE_KEEP=1 keeps the
# work directory (gw-daemon.KEY.log, mx-KEY.maillog, pgw.KEY.maillog).
# Needs root (Postfix, dnsmasq), postfix, dnsmasq, python3, perl.  About 5
# minutes for N = 10000 and 2 rounds.
# Exit status: 0 when both sides ran and every check passed, 1 otherwise.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
MGATE_BUILD=${MGATE_BUILD:-$REPO/build}
MGATE=$MGATE_BUILD/mgate
PFI=$REPO/tests/lib/postfix-instance
CORPUS=${MGATE_CORPUS:-$REPO/../shared/corpus/spamassassin-public}
N=${MGATE_BENCH_DELIVER_N:-10000}
D=${MGATE_BENCH_DELIVER_DOMAINS:-4}
M=${MGATE_BENCH_DELIVER_MAILBOXES:-300}
DC=${MGATE_BENCH_DELIVER_DEST_CONC:-2}
ORDER=${MGATE_BENCH_DELIVER_ORDER:-mgate postfix}
ROUNDS=${MGATE_BENCH_DELIVER_ROUNDS:-2}
TIMEOUT=${MGATE_BENCH_DELIVER_TIMEOUT:-900}
C=$((D * DC))
[ "$C" -le 20 ] || C=20
SENDER=bench@ship.example.org
if [ -x /usr/bin/python3 ]; then PYTHON3=/usr/bin/python3; else PYTHON3=python3; fi

errors=()
W=
MX_DIRS=()	# Postfix instances started (stopped at exit)
say() { printf '%s\n' "$*"; }
err() {
	printf 'ERROR: %s\n' "$*" >&2
	errors+=("$*")
}
die() {
	err "$*"
	exit 1
}
now() { printf '%s\n' "$EPOCHREALTIME"; }
calc() { awk "BEGIN { printf \"$1\", ($2) }"; }

cleanup() {
	local rc=$? d p
	set +e
	trap '' INT TERM
	[ -n "$W" ] && [ -s "$W/daemon.pid" ] && kill -0 "$(cat "$W/daemon.pid")" 2>/dev/null && stop_daemon
	for p in $(jobs -p); do
		kill "$p" 2>/dev/null
	done
	for d in "${MX_DIRS[@]}"; do
		"$PFI" stop "$d" >/dev/null 2>&1
	done
	if [ -n "$W" ] && [ -s "$W/dnsmasq.pid" ]; then
		kill "$(cat "$W/dnsmasq.pid")" 2>/dev/null
	fi
	if [ -n "$W" ] && [ -d "$W" ]; then
		if [ "${MGATE_KEEP:-0}" = 1 ]; then
			say "MGATE_KEEP=1: kept $W"
		else
			rm -rf "$W"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
	"$PYTHON3" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# ---------------------------------------------------------------------------
# Prerequisites.

[ "$(id -u)" = 0 ] || die "needs root (Postfix's master, dnsmasq)"
[ -x "$MGATE" ] || die "no mgate binary at $MGATE (run make)"
for c in postfix postsuper postqueue dnsmasq script; do
	command -v "$c" >/dev/null || die "$c is missing (tests/lib/install-deps)"
done
[ -d "$CORPUS/easy_ham" ] || die "no corpus at $CORPUS (set MGATE_CORPUS)"
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $N =~ ^[1-9][0-9]*$ && $D =~ ^[1-9][0-9]*$ && $M =~ ^[1-9][0-9]*$ && $DC =~ ^[1-9][0-9]*$ ]] ||
	die "N, ROUNDS, DOMAINS, MAILBOXES and DEST_CONC must be positive integers"
[ "$M" -ge "$D" ] || die "need at least one mailbox per domain (MAILBOXES >= DOMAINS)"

W=$(mktemp -d /tmp/mgate-bdel.XXXXXX)
chmod 0711 "$W" # Postfix's users must reach their directories under $W
# A private copy: a rebuild during the run must not mix two binaries.
cp "$MGATE" "$W/mgate"
MGATE=$W/mgate
gw() { "$MGATE" -c "$W/gw.conf" "$@"; }
site() { "$MGATE" -c "$W/site.conf" "$@"; }

DOMS=()
for ((k = 0; k < D; k++)); do DOMS+=("d$k.bench.test"); done

# ---------------------------------------------------------------------------
# The messages: $W/msgs/NNNNNN (LF line ends, for `mgate queue`) and
# $W/rcpts (line n: the recipient of message n).

cat >"$W/prep.py" <<'EOF'
import os, sys
corpus, out, n, m, d = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
files = []
for sub in sorted(os.listdir(corpus)):
    p = os.path.join(corpus, sub)
    if os.path.isdir(p):
        files += [os.path.join(p, f) for f in sorted(os.listdir(p))]
pool = []
for f in files:
    with open(f, "rb") as fh:
        b = fh.read()
    if b.startswith(b"From "):
        b = b[b.find(b"\n") + 1:]
    if b"\0" in b or not b.strip():
        continue
    # One line-end convention for both sides: LF here, CRLF on the wire.
    b = b.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if not b.endswith(b"\n"):
        b += b"\n"
    pool.append(b)
os.makedirs(out)
total = 0
with open(out + "/../rcpts", "w") as r:
    for i in range(1, n + 1):
        k = (i - 1) % m
        r.write("u%d@d%d.bench.test\n" % (k, k % d))
        b = b"X-Bench-Seq: %d\n" % i + pool[(i - 1) % len(pool)]
        total += len(b)
        with open("%s/%06d" % (out, i), "wb") as fh:
            fh.write(b)
print(len(files), len(pool), total)
EOF
read -r nfiles npool nbytes < <("$PYTHON3" "$W/prep.py" "$CORPUS" "$W/msgs" "$N" "$M" "$D") ||
	die "could not prepare the messages"
[ -n "${nbytes:-}" ] || die "could not prepare the messages"
mapfile -t RCPTS <"$W/rcpts"
say "messages: $N ($nbytes bytes, $(calc '%.1f' "$nbytes / 1048576") MiB), cycling over $npool of the $nfiles corpus files (NUL-free);"
say "          to $M mailboxes in $D domains (${DOMS[*]})"

# ---------------------------------------------------------------------------
# DNS and the MX.

MXPORT=$(free_port)
DNSPORT=$(free_port)
while [ "$DNSPORT" = "$MXPORT" ]; do DNSPORT=$(free_port); done
{
	printf 'port=%s\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n' "$DNSPORT"
	printf 'log-facility=%s\nlog-queries\n' "$W/dnsmasq.log"
	for d in "${DOMS[@]}"; do printf 'mx-host=%s,mx.bench.test,10\n' "$d"; done
	printf 'host-record=mx.bench.test,127.0.0.1\n'
} >"$W/dnsmasq.conf"
dnsmasq -C "$W/dnsmasq.conf" --pid-file="$W/dnsmasq.pid" 2>"$W/dnsmasq.err" ||
	die "dnsmasq: $(cat "$W/dnsmasq.err")"

# A fresh MX instance in DIR on MXPORT, with the M mailboxes.
start_mx() { # DIR
	mkdir -p "$1/conf"
	for ((k = 0; k < M; k++)); do
		printf 'u%d@d%d.bench.test d%d.bench.test/u%d/\n' "$k" $((k % D)) $((k % D)) "$k"
	done >"$1/conf/vmailbox"
	POSTFIX_INSTANCE_DOMAINS="${DOMS[*]}" "$PFI" start "$1" "$MXPORT" mx >"$1.start.log" 2>&1 ||
		{ err "MX instance $1 did not start: $(tail -n 5 "$1.start.log")"; return 1; }
	MX_DIRS+=("$1")
	# Warm up: C sessions at once, so that C smtpd processes are running
	# (a freshly started instance takes about a second to greet its first
	# clients; neither side should pay for that).
	"$PYTHON3" - "$MXPORT" "$C" <<-'PY' || err "MX warm-up failed"
		import smtplib, sys
		port, c = int(sys.argv[1]), int(sys.argv[2])
		ss = [smtplib.SMTP("127.0.0.1", port, timeout=30) for _ in range(c)]
		for s in ss:
		    s.ehlo("warmup.bench.test")
		    s.quit()
	PY
}
stop_mx() { # DIR
	"$PFI" stop "$1" >/dev/null 2>&1 || err "MX instance $1 did not stop"
}
maildir_count() { # MXDIR
	find "$1/mail" -path '*/new/*' -type f 2>/dev/null | wc -l
}
newest_maildir_file() { # MXDIR: mtime (epoch seconds) of the newest file
	find "$1/mail" -path '*/new/*' -type f -printf '%T@\n' | sort -n | tail -n 1
}

# Every message exactly once, in its recipient's mailbox.
cat >"$W/verify.py" <<'EOF'
import os, sys
mail, n, rcpts = sys.argv[1], int(sys.argv[2]), sys.argv[3]
want = [None] + [l.strip() for l in open(rcpts)]
seen = {}
files = dup = misplaced = noseq = 0
for dom in os.listdir(mail):
    for user in os.listdir(os.path.join(mail, dom)):
        new = os.path.join(mail, dom, user, "new")
        if not os.path.isdir(new):
            continue
        for f in os.listdir(new):
            files += 1
            seq = None
            with open(os.path.join(new, f), "rb") as fh:
                for line in fh:
                    if line in (b"\n", b"\r\n"):
                        break
                    if line.startswith(b"X-Bench-Seq: "):
                        seq = int(line[13:])
                        break
            if seq is None or not 1 <= seq <= n:
                noseq += 1
                continue
            if seq in seen:
                dup += 1
            seen[seq] = 1
            if want[seq] != "%s@%s" % (user, dom):
                misplaced += 1
missing = n - len(seen)
print("%d %d %d %d %d %d" % (files, len(seen), missing, dup, misplaced, noseq))
EOF
verify() { # SIDE MXDIR: prints a line, returns 1 on any problem
	local files uniq missing dup misplaced noseq
	read -r files uniq missing dup misplaced noseq < <("$PYTHON3" "$W/verify.py" "$2/mail" "$N" "$W/rcpts")
	V_LINE="$files files, $uniq distinct X-Bench-Seq, $missing missing, $dup duplicated, $misplaced in a wrong mailbox, $noseq without X-Bench-Seq"
	say "  check: $V_LINE"
	if [ "$files" != "$N" ] || [ "$uniq" != "$N" ] || [ "$missing$dup$misplaced$noseq" != 0000 ]; then
		err "$1: delivered mail does not match: $V_LINE"
		return 1
	fi
}

# ---------------------------------------------------------------------------
# mgate: a site and a gateway spool; load the gateway (not timed).

"$MGATE" keygen "$W/gw.key" >/dev/null 2>&1 || die "mgate keygen failed"
"$MGATE" keygen "$W/site.key" >/dev/null 2>&1 || die "mgate keygen failed"
cat >"$W/gw.conf" <<EOF
role = gateway
spool_directory = $W/gw
myhostname = gw.example.net
local_name = gw
log_destination = stderr
private_key = $W/gw.key
pickup_after_queue = no
dns_resolver = 127.0.0.1:$DNSPORT
smtp_port = $MXPORT
delivery_concurrency = $C
destination_concurrency = $DC

[peer ship]
transport = file
public_key = $W/site.key.pub
sender_domains = ship.example.org
EOF
cat >"$W/site.conf" <<EOF
spool_directory = $W/site
myhostname = ship.example.org
mydomain = ship.example.org
local_name = ship
log_destination = stderr
private_key = $W/site.key
pickup_after_queue = no
default_peer = gw

[peer gw]
transport = file
public_key = $W/gw.key.pub
EOF
site init >>"$W/load.log" 2>&1 || die "mgate init (site) failed: $(tail -n 3 "$W/load.log")"

say ""
say "--- preparing (not timed)"
# The site queues every message and packs them into bundles for the
# gateway, once; each round imports those bundles into a fresh gateway
# spool (to which every message is new).
MG_READY=0
t0=$(now)
fails=0
for ((i = 1; i <= N; i++)); do
	printf -v f '%s/msgs/%06d' "$W" "$i"
	site queue -oi -f "$SENDER" -- "${RCPTS[i - 1]}" <"$f" 2>>"$W/load.log" || fails=$((fails + 1))
done
t1=$(now)
say "mgate: site queue: $N messages in $(calc '%.1f' "$t1 - $t0") s ($fails failed)"
[ "$fails" = 0 ] || err "mgate queue failed for $fails messages: $(tail -n 2 "$W/load.log")"
site pickup 2>>"$W/load.log" || err "site pickup failed: $(tail -n 2 "$W/load.log")"
BUNDLES=()
while :; do
	b=$W/b${#BUNDLES[@]}.bundle
	out=$(site export "$b" 2>>"$W/load.log") || { err "site export failed: $(tail -n 2 "$W/load.log")"; break; }
	case $out in nothing\ queued*) break ;; esac
	BUNDLES+=("$b")
	[ "${#BUNDLES[@]}" -lt 1000 ] || { err "more than 1000 bundles?"; break; }
done
say "mgate: site pickup + export: ${#BUNDLES[@]} bundles ($(cat "${BUNDLES[@]}" /dev/null | wc -c) bytes) in $(calc '%.1f' "$(now) - $t1") s"
[ "${#BUNDLES[@]}" -gt 0 ] && [ "$fails" = 0 ] && MG_READY=1

# A fresh gateway spool holding the N messages, imported from the bundles.
load_mgate() {
	local t0 b q
	rm -rf "$W/gw"
	gw init >>"$W/load.log" 2>&1 || { err "mgate init (gateway) failed: $(tail -n 3 "$W/load.log")"; return 1; }
	t0=$(now)
	for b in "${BUNDLES[@]}"; do
		gw import --ack "$b.ack" "$b" >>"$W/load.log" 2>&1 ||
			{ err "gateway import failed: $(tail -n 2 "$W/load.log")"; return 1; }
	done
	q=$(gw list --json 2>/dev/null | "$PYTHON3" -c 'import json, sys
j = json.load(sys.stdin)
print(sum(1 for m in j if any(r["state"] in ("queued", "accepted", "deferred") for r in m["recipients"])))') || q="?"
	say "  loaded: ${#BUNDLES[@]} bundles imported into a fresh gateway spool in $(calc '%.1f' "$(now) - $t0") s; $q messages to deliver"
	[ "$q" = "$N" ] || { err "the gateway's spool holds $q messages to deliver, expected $N"; return 1; }
}

# ---------------------------------------------------------------------------
# Postfix: a gateway instance; each round puts the N messages in its hold
# queue over SMTP.

PG=$W/pgw
PF_READY=0
PGPORT=$(free_port)
while [ "$PGPORT" = "$MXPORT" ] || [ "$PGPORT" = "$DNSPORT" ]; do PGPORT=$(free_port); done
mkdir -p "$PG/conf"
cat >"$PG/conf/main.cf.extra" <<EOF
# A relaying gateway: everything goes to the MX on loopback.
relayhost = [127.0.0.1]:$MXPORT
default_transport = smtp
relay_transport = smtp
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
default_destination_concurrency_limit = $C
# Loading only: no arrival throttling while nothing is being delivered
# (every message goes to the hold queue).  No effect on the timed part.
in_flow_delay = 0s
EOF
cat >"$W/smtpload.py" <<'EOF'
import smtplib, sys
port, msgs, rcpts, n, sender = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
rc = [l.strip() for l in open(rcpts)]
s = smtplib.SMTP("127.0.0.1", port, timeout=120)
s.ehlo("loader.bench.test")
fails = 0
for i in range(1, n + 1):
    with open("%s/%06d" % (msgs, i), "rb") as fh:
        b = fh.read().replace(b"\n", b"\r\n")
    try:
        s.sendmail(sender, [rc[i - 1]], b)
    except smtplib.SMTPException as e:
        fails += 1
        sys.stderr.write("message %d: %s\n" % (i, e))
s.quit()
print(fails)
EOF
pf_queue_count() { # DIR: messages in every queue
	"$PFI" count "$1"
}
if ! POSTFIX_INSTANCE_DOMAINS=gw.bench.invalid "$PFI" start "$PG" "$PGPORT" hold >"$W/pgw.start.log" 2>&1; then
	err "the Postfix gateway instance did not start: $(tail -n 5 "$W/pgw.start.log")"
else
	MX_DIRS+=("$PG")
	PF_READY=1
fi

load_postfix() {
	local t0 fails held i
	[ "$(pf_queue_count "$PG")" = 0 ] || { err "the Postfix gateway's queue is not empty"; return 1; }
	: >"$PG/log/maillog"
	t0=$(now)
	fails=$("$PYTHON3" "$W/smtpload.py" "$PGPORT" "$W/msgs" "$W/rcpts" "$N" "$SENDER" 2>"$W/pgw.load.log") ||
		fails="all ($(tail -n 1 "$W/pgw.load.log"))"
	# Until cleanup has written every message into the hold queue.
	for ((i = 0; i < 600; i++)); do
		[ "$(find "$PG/queue/hold" -type f | wc -l)" -ge "$N" ] && break
		sleep 0.1
	done
	held=$(find "$PG/queue/hold" -type f | wc -l)
	say "  loaded: $N messages over SMTP into the Postfix gateway's hold queue in $(calc '%.1f' "$(now) - $t0") s ($fails refused); held: $held"
	if [ "$fails" != 0 ] || [ "$held" != "$N" ] || [ "$(pf_queue_count "$PG")" != "$N" ]; then
		err "Postfix gateway: $held of $N messages held, $fails refused (see pgw.load.log)"
		return 1
	fi
}

# ---------------------------------------------------------------------------
# The timed runs.

declare -A T_MAILDIR T_DONE T_TOTAL RATE NOTE OKV
wrap_cmd=()
if [ "${MGATE_BENCH_DELIVER_STRACE:-0}" = 1 ]; then
	command -v strace >/dev/null || die "MGATE_BENCH_DELIVER_STRACE=1 needs strace"
	wrap_cmd=(strace -f -c -o "$W/strace.mgate")
elif [ -n "${MGATE_BENCH_DELIVER_WRAP:-}" ]; then
	read -r -a wrap_cmd <<<"$MGATE_BENCH_DELIVER_WRAP"
fi

# After a side's run: stop its MX, keep its log, drop its Maildirs.
finish_mx() { # DIR
	stop_mx "$1"
	cp "$1/log/maillog" "$1.maillog" 2>/dev/null || true
	[ "${MGATE_KEEP:-0}" = 1 ] || rm -rf "$1"
}

# The daemon of a timed-out run, and its workers, by PID.
stop_daemon() {
	local p
	[ -s "$W/daemon.pid" ] || return 0
	p=$(cat "$W/daemon.pid")
	pkill -TERM -P "$p" 2>/dev/null
	kill -TERM "$p" 2>/dev/null
	rm -f "$W/daemon.pid"
}

run_mgate() { # KEY
	local key=$1 mx=$W/mx-$1 t0 dpid rc=0 done_at="" cnt tm log=$W/gw-daemon.$1.log left
	start_mx "$mx" || return 1
	: >"$W/dnsmasq.log"
	t0=$(now)
	# Each log line stamped with seconds since t0 (for the phases below).
	rm -f "$W/daemon.pid"
	(
		(
			echo "$BASHPID" >"$W/daemon.pid"
			exec "${wrap_cmd[@]}" "$MGATE" -c "$W/gw.conf" daemon --once
		) 2>&1 |
			perl -MTime::HiRes=time -e '$t0 = shift; $| = 1;
				while (<STDIN>) { printf "%.3f %s", time - $t0, $_ }' "$t0" >"$log"
		exit "${PIPESTATUS[0]}"
	) &
	dpid=$!
	while :; do
		if [ -z "$done_at" ] && ! kill -0 "$dpid" 2>/dev/null; then
			wait "$dpid" || rc=$?
			done_at=$(now)
			rm -f "$W/daemon.pid"
		fi
		cnt=$(maildir_count "$mx")
		[ -n "$done_at" ] && [ "$cnt" -ge "$N" ] && break
		if [ "$(calc '%d' "$(now) - $t0 > $TIMEOUT")" = 1 ]; then
			err "mgate ($key): timed out after $TIMEOUT s with $cnt of $N in the Maildirs"
			stop_daemon
			finish_mx "$mx"
			return 1
		fi
		# Nothing more can come once the daemon is gone and the MX is idle.
		if [ -n "$done_at" ] && [ "$(pf_queue_count "$mx")" = 0 ] && [ "$(maildir_count "$mx")" -lt "$N" ]; then
			break
		fi
		sleep 0.2
	done
	cnt=$(maildir_count "$mx")
	tm=$(newest_maildir_file "$mx")
	[ -n "$tm" ] || tm=$t0
	[ "$rc" = 0 ] || err "mgate daemon --once ($key) exited $rc: $(tail -n 3 "$log")"
	say "  $(grep 'queue run' "$log" | tail -n 1)"
	say "  MX lookups during the run: $(grep -c 'query\[MX\]' "$W/dnsmasq.log" || true); SMTP sessions at the MX: $(($(grep -c ': connect from' "$mx/log/maillog" || true) - C)) (+ $C warm-up)"
	T_MAILDIR[$key]=$(calc '%.3f' "$tm - $t0")
	T_DONE[$key]=$(calc '%.3f' "$done_at - $t0")
	T_TOTAL[$key]=$(calc '%.3f' "($tm > $done_at ? $tm : $done_at) - $t0")
	NOTE[$key]="$(grep -c 'status=sent' "$log" || true) sent, $(grep -c 'status=deferred' "$log" || true) deferred (daemon's log)"
	# Phases, from the stamped log: the workers' outcomes, then the
	# parent's removal of finished messages.
	awk -v done="${T_DONE[$key]}" '
		/status=/ { if (s1 == "") s1 = $1; s2 = $1; ns++ }
		/: removed \(all recipients done\)/ { if (r1 == "") r1 = $1; r2 = $1; nr++ }
		END {
			printf "  phases (s after start): first outcome %.2f; outcomes until %.2f (%d, %.0f/s);", s1, s2, ns, (s2 > s1 ? ns / (s2 - s1) : 0)
			if (nr) printf " removing finished messages %.2f..%.2f (%d, %.0f/s);", r1, r2, nr, (r2 > r1 ? nr / (r2 - r1) : 0)
			printf " exit %.2f\n", done
		}' "$log"
	left=$(gw list --json 2>/dev/null | "$PYTHON3" -c 'import json, sys; print(len(json.load(sys.stdin)))') || left="?"
	say "  gateway spool afterwards: $left messages"
	[ "$left" = 0 ] || err "mgate ($key): $left messages left in the gateway's spool after the run"
	OKV[$key]=1
	verify "mgate ($key)" "$mx" || OKV[$key]=0
	[ "$cnt" -ge "$N" ] || OKV[$key]=0
	if [ "${MGATE_BENCH_DELIVER_STRACE:-0}" = 1 ]; then
		say "  strace -f -c (top 12 by time):"
		sed -n '1,16p' "$W/strace.mgate" | sed 's/^/    /'
	fi
	finish_mx "$mx"
}

run_postfix() { # KEY
	local key=$1 mx=$W/mx-$1 t0 done_at="" cnt tm out
	start_mx "$mx" || return 1
	t0=$(now)
	out=$(postsuper -c "$PG/conf" -H ALL 2>&1) || err "postsuper -H ALL: $out"
	postqueue -c "$PG/conf" -f 2>>"$W/pgw.load.log" || err "postqueue -f failed"
	say "  postsuper -H ALL + postqueue -f returned after $(calc '%.2f' "$(now) - $t0") s"
	while :; do
		if [ -z "$done_at" ] && [ "$(pf_queue_count "$PG")" = 0 ]; then
			done_at=$(now)
		fi
		cnt=$(maildir_count "$mx")
		[ -n "$done_at" ] && [ "$cnt" -ge "$N" ] && break
		if [ "$(calc '%d' "$(now) - $t0 > $TIMEOUT")" = 1 ]; then
			err "Postfix ($key): timed out after $TIMEOUT s with $cnt of $N in the Maildirs"
			finish_mx "$mx"
			return 1
		fi
		if [ -n "$done_at" ] && [ "$(pf_queue_count "$mx")" = 0 ] && [ "$(maildir_count "$mx")" -lt "$N" ]; then
			break
		fi
		sleep 0.2
	done
	cnt=$(maildir_count "$mx")
	tm=$(newest_maildir_file "$mx")
	[ -n "$tm" ] || tm=$t0
	T_MAILDIR[$key]=$(calc '%.3f' "$tm - $t0")
	T_DONE[$key]=$(calc '%.3f' "$done_at - $t0")
	T_TOTAL[$key]=$(calc '%.3f' "($tm > $done_at ? $tm : $done_at) - $t0")
	NOTE[$key]="$(grep -c '/smtp\[.*status=sent' "$PG/log/maillog" || true) sent, $(grep -c 'status=deferred' "$PG/log/maillog" || true) deferred (gateway's log)"
	# Where Postfix's time went: its delays=a/b/c/d, averaged (a, before
	# the active queue, includes the time held, so it is left out).
	awk '/\/smtp\[.*status=sent/ && match($0, /delays=[0-9.\/]+/) {
			split(substr($0, RSTART + 7, RLENGTH - 7), d, "/")
			b += d[2]; c += d[3]; e += d[4]; n++ }
		END { if (n) printf "  Postfix delays (mean s): in the active queue %.2f, connection set-up %.3f, transmission %.3f (%d messages)\n",
			b / n, c / n, e / n, n }' "$PG/log/maillog"
	say "  SMTP sessions at the MX: $(($(grep -c ': connect from' "$mx/log/maillog" || true) - C)) (+ $C warm-up)"
	cp "$PG/log/maillog" "$W/pgw.$key.maillog"
	OKV[$key]=1
	verify "Postfix ($key)" "$mx" || OKV[$key]=0
	[ "$cnt" -ge "$N" ] || OKV[$key]=0
	finish_mx "$mx"
}

for ((round = 1; round <= ROUNDS; round++)); do
	sides=$ORDER
	# Every other round the other way round, so that drift in the
	# machine's load does not favour one side.
	if [ $((round % 2)) = 0 ]; then
		sides=$(printf '%s\n' $ORDER | tac | tr '\n' ' ')
	fi
	for side in $sides; do
		key=$side-$round
		say ""
		case $side in
		mgate)
			say "--- round $round: mgate daemon --once (delivery_concurrency = $C, destination_concurrency = $DC, $D domains)"
			if [ "$MG_READY" = 1 ] && load_mgate; then
				sync
				sleep 1
				run_mgate "$key" || true
			else
				err "mgate ($key): not run, loading failed"
			fi
			;;
		postfix)
			say "--- round $round: Postfix gateway, postsuper -H ALL; postqueue -f (default_destination_concurrency_limit = $C, one relayhost)"
			if [ "$PF_READY" = 1 ] && load_postfix; then
				sync
				sleep 1
				run_postfix "$key" || true
			else
				err "Postfix ($key): not run, loading failed"
			fi
			;;
		*) err "unknown side '$side' in MGATE_BENCH_DELIVER_ORDER" ;;
		esac
		if [ -n "${T_TOTAL[$key]:-}" ]; then
			RATE[$key]=$(calc '%.1f' "$N / ${T_TOTAL[$key]}")
			say "  all in Maildirs after ${T_MAILDIR[$key]} s, gateway done after ${T_DONE[$key]} s: ${RATE[$key]} msg/s"
		fi
	done
done

# ---------------------------------------------------------------------------
# Side by side.

say ""
say "=== $N messages ($(calc '%.1f' "$nbytes / 1048576") MiB) from the gateway to a loopback Postfix MX;"
say "    $D domains, $M mailboxes, $C parallel connections each side; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-28s %14s %10s %10s %8s  %s\n' "" "in Maildirs s" "gw done s" "msg/s" "checks" "note"
declare -A SUM_T NRUNS
for side in mgate postfix; do
	SUM_T[$side]=0
	NRUNS[$side]=0
	label="mgate daemon --once"
	[ "$side" = postfix ] && label="Postfix gateway"
	for ((round = 1; round <= ROUNDS; round++)); do
		key=$side-$round
		if [ -n "${T_TOTAL[$key]:-}" ]; then
			chk="ok"
			[ "${OKV[$key]}" = 1 ] || chk="FAILED"
			printf '%-28s %14s %10s %10s %8s  %s\n' "$label, round $round" "${T_MAILDIR[$key]}" "${T_DONE[$key]}" \
				"${RATE[$key]}" "$chk" "${NOTE[$key]}"
			if [ "${OKV[$key]}" = 1 ]; then
				SUM_T[$side]=$(calc '%.3f' "${SUM_T[$side]} + ${T_TOTAL[$key]}")
				NRUNS[$side]=$((NRUNS[$side] + 1))
			fi
		else
			printf '%-28s %s\n' "$label, round $round" "n/a (see the errors)"
		fi
	done
done
if [ "${NRUNS[mgate]}" -gt 0 ] && [ "${NRUNS[postfix]}" -gt 0 ]; then
	mr=$(calc '%.1f' "${NRUNS[mgate]} * $N / ${SUM_T[mgate]}")
	pr=$(calc '%.1f' "${NRUNS[postfix]} * $N / ${SUM_T[postfix]}")
	verdict="not met"
	[ "$(calc '%d' "$mr >= $pr")" = 1 ] && verdict="met"
	say "all rounds: mgate $mr msg/s, Postfix $pr msg/s; ratio mgate/Postfix $(calc '%.2f' "$mr / $pr")x   (issue 5 target >= 1x: $verdict)"
else
	say "ratio mgate/Postfix: n/a (a side has no good run)"
fi

say ""
if [ ${#errors[@]} -ne 0 ]; then
	say "bench/deliver.sh: ${#errors[@]} problem(s):"
	printf '  - %s\n' "${errors[@]}"
	exit 1
fi
say "bench/deliver.sh: both sides ran, every check passed"
