#!/usr/bin/env bash
# 72-daemon-kill.t - kill -9 of the delivery engine at random points
# (issue 5, invariants 1-3): a batch of small messages, each to three
# recipients in two domains (alice@ and bob@example.net in one
# transaction, carol@example.com in another), is delivered by
# `mgate daemon --once' to a real Postfix MX, and the daemon's whole
# process group (the queue runner and its delivery workers) is killed
# with SIGKILL at a random moment, at least MGATE_KILLS (default 100)
# times, each time started again, until every recipient is final.  When
# the batch is delivered before enough kills, 100 more messages follow.
#
# Then:
#   - no mgate command hung (each runs under a 30 s timeout: a hang after
#     a kill wedges the gateway for good), and `mgate list --json' always
#     printed JSON (nothing else on its standard output);
#   - the gateway's queue is empty and no recipient bounced: every
#     recipient delivered;
#   - every (message, recipient) pair is in the MX's Maildirs at least
#     once (messages are identified by a unique token in the body): nothing
#     lost;
#   - duplicates are counted and listed.  A duplicate can only come from a
#     kill that fell after the MX had the message (the final dot sent) and
#     before the gateway committed the outcome: the next run sends those
#     recipients again.  With destination_concurrency = 1 a domain has at
#     most one transaction in flight, so each kill can repeat at most one
#     transaction per domain: per domain, repeated transactions <= kills.
#     Every repeat is announced in the daemon's log ("possible repeat")
#     by the attempt that sends it again.
#
# And, on a second gateway spool, two ways a queue run meets another where
# no transaction is cut, so that nothing may arrive twice at all: two
# `daemon --once' at the same time, and kill -9 of the daemon's main
# process only (its workers go on) with a new run started at once.
#
# Needs root (Postfix), dnsmasq, setsid, timeout, python3.
set -uo pipefail
. "$(dirname "$0")/lib/testlib.sh"

need_root "starts Postfix"
need_mgate
need_cmd postfix dnsmasq jq ss script setsid timeout
mgate_setup
START=$(date +%s)

NMSG=${MGATE_KILL_MSGS:-300}
MINKILLS=${MGATE_KILLS:-100}
MAXMS=${MGATE_KILL_MAXMS:-200}	# kill after 0..MAXMS ms
HANG_SECS=30

# Every mgate command under a timeout (a queue run here takes a few
# seconds); a hang leaves a note in $T/hung.
mg() { # CONF ARGS...
	local conf=$1 rc=0
	shift
	timeout "$HANG_SECS" "$MGATE" -c "$conf" "$@" || rc=$?
	if [ "$rc" = 124 ]; then
		echo "mgate $* (spool of $conf) hung for ${HANG_SECS}s" >>"$T/hung"
	fi
	return "$rc"
}
gw() { mg "$T/gw.conf" "$@"; }

MXPORT=$(free_port)
DNSPORT=$(free_port)
while [ "$DNSPORT" = "$MXPORT" ]; do DNSPORT=$(free_port); done
cat >"$T/dnsmasq.conf" <<EOF
port=$DNSPORT
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
mx-host=example.net,mx.example.net,10
mx-host=example.com,mx.example.net,10
host-record=mx.example.net,127.0.0.1
EOF
dnsmasq -C "$T/dnsmasq.conf" --pid-file="$T/dnsmasq.pid" 2>"$T/dnsmasq.err" ||
    BAIL_OUT "dnsmasq: $(cat "$T/dnsmasq.err")"
on_exit '[ -s "$T/dnsmasq.pid" ] && kill "$(cat "$T/dnsmasq.pid")" 2>/dev/null'

MX=$T/mx
"$POSTFIX_INSTANCE" start "$MX" "$MXPORT" >"$T/pf-start.log" 2>&1 ||
    BAIL_OUT "postfix-instance start: $(tail -n 20 "$T/pf-start.log")"
on_exit "$(printf '%q stop %q' "$POSTFIX_INSTANCE" "$MX")"
postfix_idle() { [ "$("$POSTFIX_INSTANCE" count "$MX")" = 0 ]; }

gw_conf() { # SPOOL
	cat <<EOF
spool_directory = $1
myhostname = gw.example.org
mydomain = example.org
local_name = gw
log_destination = stderr
pickup_after_queue = no
dns_resolver = 127.0.0.1:$DNSPORT
smtp_port = $MXPORT
retry_first = 1s
maximal_backoff = 2s
smtp_command_timeout = 30s
delivery_concurrency = 4
destination_concurrency = 1
EOF
}
gw_conf "$T/gw" >"$T/gw.conf"
gw_conf "$T/gw2" >"$T/gw2.conf"
ok "init the gateway spool" gw init
ok "init a second gateway spool" mg "$T/gw2.conf" init

# ---------------------------------------------------------------------------
# Queue a batch: message N has the token T72-TOKEN-N-END in its body.

QUEUED=0
queue_batch() { # COUNT
	local from=$((QUEUED + 1)) to=$((QUEUED + $1))
	# A failed queue is retried, as a mail program would (not committed
	# unless it exited 0).
	seq "$from" "$to" | xargs -P 4 -I{} sh -c '
	    for try in 1 2 3; do
		printf "Subject: kill test {}\n\nT72-TOKEN-{}-END\n" |
		timeout 60 "$0" -c "$1" queue -i alice@example.net bob@example.net carol@example.com &&
		exit 0
		sleep 1
	    done
	    exit 1' "$MGATE" "$T/gw.conf" 2>>"$T/queue.err"
	local rc=$?
	QUEUED=$to
	return "$rc"
}
ok "queue $NMSG messages at the gateway" queue_batch "$NMSG"
is "$(gw list --json 2>/dev/null | jq length)" "$NMSG" "all $NMSG are in the queue"

# Pending recipients (not delivered or bounced; the queue forgets a
# message once all its recipients are final), or "hang".  Output of
# `list --json' that is not pure JSON is kept in $T/badjson.N, and the
# count is taken from its JSON part.
pending() {
	local out=$T/list.out rc=0
	echo >>"$T/listcalls"
	gw list --json >"$out" 2>/dev/null || rc=$?
	if [ "$rc" = 124 ]; then
		echo hang
		return
	fi
	if ! jq empty "$out" >/dev/null 2>&1; then
		cp "$out" "$(mktemp "$T/badjson.XXXXXX")"
		sed -n '/^\[/,$p' "$out" >"$out.json"
		mv "$out.json" "$out"
	fi
	jq '[.[].recipients[] | select(.state != "delivered" and .state != "bounced")] | length' "$out" 2>/dev/null ||
	    echo "unreadable"
}

# ---------------------------------------------------------------------------
# The kill loop.  The daemon runs in its own session (setsid), so its
# process group is the daemon and its workers; `kill -9 -PGID' kills all
# of them at once, as a crash would.

KILLS=0
RUNS=0
LOG=$T/daemon.log
: >"$LOG"
: >"$T/listcalls"
group_gone() { ! pgrep -g "$1" >/dev/null 2>&1; }
one_run() { # CONF KILL_AFTER_MS (empty: let it finish)
	local pid t=0 rc=0
	echo "=== run $RUNS ${2:+kill after ${2}ms}" >>"$LOG"
	setsid "$MGATE" -c "$1" daemon --once >>"$LOG" 2>&1 &
	pid=$!
	RUNS=$((RUNS + 1))
	if [ -n "$2" ]; then
		sleep "$(printf '0.%03d' "$2")"
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL -- "-$pid" 2>/dev/null && KILLS=$((KILLS + 1))
			echo "=== killed" >>"$LOG"
		fi
		wait "$pid" 2>/dev/null
	else
		while kill -0 "$pid" 2>/dev/null && [ "$t" -lt $((HANG_SECS * 10)) ]; do
			sleep 0.1
			t=$((t + 1))
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "mgate daemon --once (spool of $1) hung for ${HANG_SECS}s" >>"$T/hung"
			kill -KILL -- "-$pid" 2>/dev/null
		fi
		wait "$pid" 2>/dev/null || rc=$?
	fi
	wait_for 10 group_gone "$pid" || diag "workers of $pid still alive"
	return "$rc"
}

# Recipients with a committed outcome, from the log (cheap; an outcome
# committed just before a kill may miss its log line, so the exact
# pending() decides).
committed() { grep -c -E 'status=(sent|bounced)' "$LOG"; }
deadline=$(($(date +%s) + 240))
while [ "$KILLS" -lt "$MINKILLS" ] && [ ! -e "$T/hung" ]; do
	if [ "$(date +%s)" -ge "$deadline" ]; then
		diag "time is up after $KILLS kills"
		break
	fi
	if [ $((3 * QUEUED - $(committed))) -le 0 ] || [ $((RUNS % 5)) = 4 ]; then
		p=$(pending)
		# Spread the kills over the batch: if the last runs delivered
		# much more (less) than the pending recipients divided by the
		# kills still to come, kill sooner (later).
		if [[ $p =~ ^[0-9]+$ ]] && [ -n "${last_p:-}" ] && [ "$RUNS" -gt "$last_runs" ]; then
			per_run=$(((last_p - p) / (RUNS - last_runs)))
			want=$((p / (MINKILLS - KILLS + 1) + 1))
			if [ "$per_run" -gt $((want * 2)) ] && [ "$MAXMS" -gt 60 ]; then
				MAXMS=$((MAXMS * 4 / 5))
			elif [ "$per_run" -lt $((want / 2)) ] && [ "$MAXMS" -lt 999 ]; then
				MAXMS=$((MAXMS * 5 / 4 > 999 ? 999 : MAXMS * 5 / 4))
			fi
		fi
		last_p=$p
		last_runs=$RUNS
		if [[ $p =~ ^[0-9]+$ ]] && [ "$p" -lt 30 ]; then
			# (Nearly) everything delivered before enough kills: more
			# mail, so that runs do not end before their kill.
			queue_batch 100 || break
			diag "$p recipients pending after $KILLS kills: 100 more messages (now $QUEUED)"
		elif [ "$p" = hang ]; then
			break
		fi
	fi
	one_run "$T/gw.conf" "$((RANDOM % MAXMS))"
done
ok "at least $MINKILLS kills (got $KILLS in $RUNS runs)" test "$KILLS" -ge "$MINKILLS"
diag "kill loop: $KILLS kills in $RUNS runs, $QUEUED messages, kill delays 0..${MAXMS} ms at the end"

# Then runs without kills until nothing is pending (deferred recipients
# wait retry_first, so give them a moment); at least one, which also
# removes messages whose recipients all became final in a killed run.
for i in $(seq 1 30); do
	[ -e "$T/hung" ] && break
	one_run "$T/gw.conf" "" || diag "daemon --once exited $? (run $RUNS)"
	[ "$(pending)" = 0 ] && break
	sleep 1
done
if [ -e "$T/hung" ]; then
	fail "no mgate command hung after the kills"
	diag "$(cat "$T/hung")"
	diag "after kill $KILLS (run $RUNS); the last lines of the daemon's log:"
	diag "$(tail -n 6 "$LOG")"
	diag "(every later open of this spool blocks: the gateway is wedged)"
else
	pass "no mgate command hung after the kills"
fi
nbad=$(find "$T" -maxdepth 1 -name 'badjson.*' | wc -l)
if ! is "$nbad" 0 "mgate list --json printed only JSON on its standard output ($(wc -l <"$T/listcalls") calls)"; then
	diag "one of the bad outputs: $(head -n 4 "$(find "$T" -maxdepth 1 -name 'badjson.*' | head -n 1)")"
fi
if [ -e "$T/hung" ]; then
	fail "every recipient is final after the kills (the spool is wedged)"
	fail "the gateway's queue is empty (the spool is wedged)"
else
	is "$(pending)" 0 "every recipient is final after the kills"
	is "$(gw list --json 2>/dev/null | sed -n '/^\[/,$p' | jq length)" 0 "the gateway's queue is empty"
fi
unlike "$(grep -E 'status=bounced' "$LOG" | head -n 5)" 'bounced' "no recipient bounced"
grep -E 'status=deferred' "$LOG" | head -n 5 | while IFS= read -r l; do diag "deferral seen: $l"; done

# Postfix delivers what it accepted (its queue drains).
wait_for 60 postfix_idle ||
    diag "Postfix's queue still holds $("$POSTFIX_INSTANCE" count "$MX") messages"

# ---------------------------------------------------------------------------
# Count: every (token, recipient) at least once; duplicates per domain.

cat >"$T/count.py" <<'EOF'
# count.py MAILROOT NMSG KILLS DAEMONLOG
import collections, glob, os, re, sys
root, nmsg, kills, logf = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
qid_of = {}
rcpts = {"example.net": ["alice", "bob"], "example.com": ["carol"]}
seen = collections.Counter()
for path in glob.glob(os.path.join(root, "*", "*", "new", "*")):
    dom, user = path.split(os.sep)[-4:-2]
    data = open(path, "rb").read()
    m = re.search(rb"T72-TOKEN-([0-9]+)-END", data)
    if m:
        seen[(int(m.group(1)), user, dom)] += 1
        q = re.search(rb"\(mgate\) id ([0-9A-Z]{16});", data)
        if q:
            qid_of[int(m.group(1))] = q.group(1).decode()
missing = [(n, u, d) for n in range(1, nmsg + 1) for d in rcpts
           for u in rcpts[d] if seen[(n, u, d)] == 0]
strays = [k for k in seen if not (1 <= k[0] <= nmsg)]
# A repeated transaction: message n sent again to (some of) a domain's
# recipients; its size is the most copies of any one of them, minus one.
rep = {d: {n: max(0, max(seen[(n, u, d)] for u in rcpts[d]) - 1)
           for n in range(1, nmsg + 1)} for d in rcpts}
for d in rcpts:
    reps = sum(rep[d].values())
    files = sum(seen[(n, u, d)] - 1 for n in range(1, nmsg + 1)
                for u in rcpts[d] if seen[(n, u, d)] > 1)
    print("domain %s repeated_transactions %d duplicate_files %d" % (d, reps, files))
    dups = ["T72-%d x%d" % (n, r + 1) for n, r in sorted(rep[d].items()) if r]
    print("dups %s %s" % (d, " ".join(dups)))
# Does the daemon's log show the repeats?  Before the final dot the
# worker marks the recipients (src/deliver.c); the next attempt finds the
# mark of a cut-off one and logs "QID: to=<r>, possible repeat".
warned = set()
for line in open(logf, errors="replace"):
    m = re.search(r"([0-9A-Z]{16}): to=<([^@>]+)@([^>]+)>, possible repeat", line)
    if m:
        warned.add((m.group(1), m.group(3)))
shown = total = 0
unlogged = []
for d in rcpts:
    for n, r in rep[d].items():
        if r:
            total += 1
            if (qid_of.get(n, "?"), d) in warned:
                shown += 1
            else:
                unlogged.append("T72-%d@%s" % (n, d))
print("logged %d of %d" % (shown, total))
print("unlogged %d %s" % (len(unlogged), " ".join(unlogged[:20])))
print("warnings %d" % len(warned))
print("missing %d %s" % (len(missing), " ".join("%d:%s@%s" % m for m in missing[:20])))
print("strays %d" % len(strays))
EOF
run "$PYTHON3" "$T/count.py" "$MX/mail" "$QUEUED" "$KILLS" "$LOG"
is "$RUN_STATUS" 0 "count the Maildirs"
COUNT=$RUN_STDOUT
diag "$COUNT"
like "$COUNT" $'(^|\n)missing 0 ' "no (message, recipient) is missing at the MX"
like "$COUNT" $'(^|\n)strays 0' "no unknown message at the MX"
for d in example.net example.com; do
	reps=$(sed -n "s/^domain $d repeated_transactions \([0-9]*\) .*/\1/p" <<<"$COUNT")
	ok "$d: repeated transactions ($reps) <= kills ($KILLS)" test "${reps:-999999}" -le "$KILLS"
done
total=$(awk '/^domain/ { s += $6 } END { print s + 0 }' <<<"$COUNT")
diag "$KILLS kills in $RUNS runs, $QUEUED messages, $total duplicate Maildir files in all"
like "$COUNT" $'(^|\n)unlogged 0' "every repeated transaction was announced in the log (\"possible repeat\") before it was sent again"
diag "repeated transactions announced: $(sed -n 's/^logged //p' <<<"$COUNT"); possible-repeat warnings: $(sed -n 's/^warnings //p' <<<"$COUNT")"

# A run after everything: nothing to do, nothing sent again.
if [ ! -e "$T/hung" ]; then
	before=$(find "$MX/mail" -type f -path '*/new/*' | wc -l)
	one_run "$T/gw.conf" ""
	wait_for 30 postfix_idle
	is "$(find "$MX/mail" -type f -path '*/new/*' | wc -l)" "$before" "a further run sends nothing"
else
	skip "the spool is wedged" 1
fi

# ---------------------------------------------------------------------------
# On the second spool: two queue runs that meet, no transaction cut, so
# each message must arrive exactly once:
#   - two `daemon --once' at the same time (cron overlapping a running
#     daemon, or an operator's manual run next to the daemon);
#   - kill -9 of the daemon's main process only (its workers go on, as
#     after any kill of a parent), and a new queue run started at once.
# Batches of 100 and 300 messages to one recipient each.

cat >"$T/count1.py" <<'EOF'
# count1.py MAILDIR PREFIX N: "missing M duplicates D: list"
import collections, glob, re, sys
maildir, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = collections.Counter()
for path in glob.glob(maildir + "/new/*"):
    m = re.search((prefix + r"-([0-9]+)-END").encode(), open(path, "rb").read())
    if m:
        c[int(m.group(1))] += 1
missing = [i for i in range(1, n + 1) if c[i] == 0]
dups = sum(v - 1 for v in c.values() if v > 1)
print("missing %d duplicates %d: %s" % (len(missing), dups,
      " ".join("%s-%d x%d" % (prefix, k, v) for k, v in sorted(c.items()) if v > 1)[:160]))
EOF
G2=$T/gw2.conf
pending2() {
	mg "$G2" list --json 2>/dev/null | sed -n '/^\[/,$p' |
	    jq '[.[].recipients[] | select(.state != "delivered" and .state != "bounced")] | length' 2>/dev/null
}
queue_one() { # PREFIX RCPT COUNT
	seq 1 "$3" | xargs -P 4 -I{} sh -c '
	    for try in 1 2 3; do
		printf "Subject: %s {}\n\n%s-{}-END\n" "$2" "$2" |
		timeout 60 "$0" -c "$1" queue -i "$3" && exit 0
		sleep 1
	    done
	    exit 1' "$MGATE" "$G2" "$1" "$2" 2>>"$T/queue.err" &&
	    mg "$G2" list >/dev/null 2>&1	# pickup now, not in the racing runs
}
drain2() { # every recipient final, Postfix's queue empty
	local i
	for i in $(seq 1 20); do
		one_run "$G2" ""
		[ "$(pending2)" = 0 ] && break
		sleep 1
	done
	wait_for 60 postfix_idle
}

ok "queue 100 messages for dave@example.net" queue_one T72C dave@example.net 100
timeout "$HANG_SECS" "$MGATE" -c "$G2" daemon --once >"$T/conc1.log" 2>&1 &
c1=$!
timeout "$HANG_SECS" "$MGATE" -c "$G2" daemon --once >"$T/conc2.log" 2>&1 &
c2=$!
wait "$c1"
wait "$c2"
drain2
run "$PYTHON3" "$T/count1.py" "$MX/mail/example.net/dave" T72C 100
diag "two queue runs at once: $RUN_STDOUT"
diag "  run 1 logged $(grep -c 'status=sent' "$T/conc1.log") sent, run 2 $(grep -c 'status=sent' "$T/conc2.log")"
like "$RUN_STDOUT" '^missing 0 ' "two queue runs at once: nothing lost"
like "$RUN_STDOUT" '^missing [0-9]+ duplicates 0:' "two queue runs at once: nothing delivered twice"

ok "queue 300 messages for postmaster@example.net" queue_one T72P postmaster@example.net 300
setsid "$MGATE" -c "$G2" daemon --once >"$T/orphan1.log" 2>&1 &
p1=$!
sleep 0.15
{
	kill -KILL "$p1"
	wait "$p1"
} 2>/dev/null
orphans=$(pgrep -g "$p1" | wc -l)
timeout "$HANG_SECS" "$MGATE" -c "$G2" daemon --once >"$T/orphan2.log" 2>&1
wait_for 60 group_gone "$p1" || diag "orphaned workers of $p1 still running"
drain2
run "$PYTHON3" "$T/count1.py" "$MX/mail/example.net/postmaster" T72P 300
diag "kill -9 of the main process ($orphans worker(s) went on), then a new run: $RUN_STDOUT"
diag "  the new run logged $(grep -c 'status=sent' "$T/orphan2.log") sent"
like "$RUN_STDOUT" '^missing 0 ' "main process killed, new run: nothing lost"
like "$RUN_STDOUT" '^missing [0-9]+ duplicates 0:' "main process killed, new run while its workers go on: nothing delivered twice"

diag "72-daemon-kill: $(($(date +%s) - START))s"
done_testing
