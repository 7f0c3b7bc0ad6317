#!/usr/bin/env bash
# Crash safety of submission and pickup: random kill -9 of concurrent
# `mgate queue' and `mgate pickup' processes, then targeted kills at the
# exact crash points (strace syscall injection): pickup between its
# database commit and the rename into queue/, pickup inside its commit,
# queue before its rename and between rename and directory fsync.
#
# Afterwards one clean pickup, and then:
#   - every message whose `queue' exited 0 is listed exactly once, under
#     the ID it was acknowledged with, and `mgate cat' gives back exactly
#     the bytes submitted (after the headers mgate prepends);
#   - a message whose `queue' was killed is listed at most once, and
#     intact if it is listed;
#   - nothing listed is partial or corrupt, nothing lands in corrupt/,
#     maildrop/ is empty.
#
# Environment: MGATE_CRASH_SEED (repeat a run), MGATE_CRASH_KILLS (how
# many effective random kills to reach; default 250, 150 under ASan).
set -uo pipefail
. "$(dirname "$0")/lib/testlib.sh"

need_mgate
need_cmd jq cmp
mgate_setup
# Pickup only when this test says so (the detached background pickup
# would escape the kills).
echo 'pickup_after_queue = no' >>"$MGATE_CONFIG"

SPOOL=$T/spool
ASAN=${MGATE_ASAN:-0}
# LeakSanitizer cannot work under ptrace: no leak check under strace.
TRACE=(strace)
[ "$ASAN" = 1 ] && TRACE=(env "ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0" strace)
if [ "$ASAN" = 1 ]; then
	KILL_TARGET=${MGATE_CRASH_KILLS:-150}
	BUDGET=150		# seconds for the random phase
	HANG=30			# a process alive this long after its trial hangs
else
	KILL_TARGET=${MGATE_CRASH_KILLS:-250}
	BUDGET=70
	HANG=10
fi
SEED=${MGATE_CRASH_SEED:-$(( $(date +%s%N) % 1000000007 ))}
RANDOM=$SEED
diag "seed $SEED (MGATE_CRASH_SEED=$SEED repeats this run), kill target $KILL_TARGET"

# Microseconds since the epoch, without a fork.
now_us() { _now=${EPOCHREALTIME//[.,]/}; }
now_us
T0=$_now
ok "mgate init creates the spool" "$MGATE" init

# bash reports every killed job on its stderr ("line N: PID Killed ...");
# the trials run with stderr sent to a log, and diagnostics go to fd 3.
exec 3>&2

# ---------------------------------------------------------------------------
# Helpers.

# Sleep for a fraction of a second without a fork: read from a FIFO that
# nobody writes to, with a timeout.
mkfifo "$T/sleep.fifo"
exec {SLEEP_FD}<>"$T/sleep.fifo"
usleep_() { # MICROSECONDS
	local us=$1
	[ "$us" -gt 0 ] || return 0
	read -r -t "$(printf '%d.%06d' $((us / 1000000)) $((us % 1000000)))" \
	    -u "$SLEEP_FD" _ || true
}

# A pool of text to cut message bodies from.
POOL=$T/pool
base64 -w 76 </dev/urandom | head -c 2200000 >"$POOL"
POOL_SIZE=$(stat -c %s "$POOL")

mkdir -p "$T/m"
NMSG=0			# messages made so far; message i is $T/m/i.eml
declare -a TOK		# i -> unique token
declare -a STATE	# i -> acked | killed | failed (exit status)
declare -a ACKID	# i -> ID printed by `queue -v' (acked only)

# make_msg [MAXSIZE]: a new message with a unique token, body size
# log-uniform between 100 B and ~2 MB (so that kills land mid-write).
make_msg() {
	local max=${1:-2000000} k base size off tok i=$NMSG
	k=$((RANDOM % 15))
	base=$((100 << k))
	size=$((base + RANDOM * base / 32768))
	[ "$size" -le "$max" ] || size=$max
	off=$(( (RANDOM * 32768 + RANDOM) % (POOL_SIZE - size) ))
	tok="crashtok-$i-$RANDOM$RANDOM"
	TOK[i]=$tok
	{
		printf 'From: Crash Test <crash@example.org>\nTo: bob@example.com\n'
		printf 'Subject: crash %s\n\n%s\n' "$tok" "$tok"
		tail -c +$((off + 1)) "$POOL" | head -c "$size"
	} >"$T/m/$i.eml"
	NMSG=$((NMSG + 1))
}

# Start `mgate -v queue' for message I in the background; PID in $!.
# Some with -i (bulk copy), some without (line by line), some with -odi
# (the queue process runs pickup itself, so kills land there too).
start_queue() { # I
	local i=$1 flags=()
	((RANDOM % 2)) && flags+=(-i)
	((RANDOM % 4 == 0)) && flags+=(-odi)
	"$MGATE" -v queue "${flags[@]}" bob@example.com \
	    <"$T/m/$i.eml" >/dev/null 2>"$T/m/$i.err" &
}

# Record the outcome of `queue' for message I that exited with RC.
record_queue() { # I RC
	local i=$1 rc=$2 id
	if [ "$rc" = 0 ]; then
		id=$(sed -n 's/^mgate: queued as \([0-9A-Z]\{16\}\)$/\1/p' "$T/m/$i.err")
		if [ -z "$id" ]; then
			STATE[i]="acked-without-id"
			BAD_QUEUE+=("message $i: exit 0 but no 'queued as ID' on stderr: $(head -c 300 "$T/m/$i.err")")
		else
			STATE[i]=acked
			ACKID[i]=$id
		fi
	elif [ "$rc" = 137 ]; then
		STATE[i]=killed
	else
		STATE[i]="exit $rc"
		BAD_QUEUE+=("message $i: queue exited $rc: $(head -c 300 "$T/m/$i.err")")
	fi
}

# Is process PID still running (not a zombie, not gone)?
alive() {
	local st=
	{ read -r _ _ st _ <"/proc/$1/stat"; } 2>/dev/null || return 1
	[ "$st" != Z ] && [ "$st" != X ]
}

# Show where a hung process is stuck.
show_hang() { # PID WHAT
	diag "HANG: $2 (pid $1) still running ${HANG}s after its trial" 2>&3
	diag "  wchan: $(cat "/proc/$1/wchan" 2>/dev/null)" 2>&3
	if command -v gdb >/dev/null 2>&1; then
		diag "$(timeout 30 gdb -batch "/proc/$1/exe" -p "$1" -ex 'bt' 2>&1 |
		    grep -E '^#' | head -n 25 | sed 's/^/  /')" 2>&3
	fi
}

TRIALS=0 KILLS=0 SIGNALLED=0 HANGS=0 HANG_US=0 PICKUPS=0
declare -A PICKUP_RC	# exit status -> count (pickups not killed)
BAD_QUEUE=()

# One trial: NQ new messages queued and NP pickups, all at once; a random
# subset is killed, each victim after its own delay of 0-50 ms.
trial() { # NQ NP
	local nq=$1 np=$2 n i j rc deadline hung
	local -a pids=() kinds=() msg=() delay=() order=()
	for ((n = 0; n < nq; n++)); do
		make_msg
	done
	# Start queue and pickup processes interleaved at random.
	local q=$((NMSG - nq)) p=0
	while [ $((q - (NMSG - nq) + p)) -lt $((nq + np)) ]; do
		if [ "$q" -lt "$NMSG" ] && { [ "$p" -ge "$np" ] || ((RANDOM % 2)); }; then
			start_queue "$q"
			pids+=($!) kinds+=(queue) msg+=("$q")
			q=$((q + 1))
		else
			"$MGATE" pickup >/dev/null 2>>"$T/pickup.err" &
			pids+=($!) kinds+=(pickup) msg+=(-)
			p=$((p + 1))
		fi
	done
	now_us
	local t0=$_now
	# Victims: each process with probability 2/3, each with a delay.
	for ((j = 0; j < ${#pids[@]}; j++)); do
		if ((RANDOM % 3)); then
			delay[j]=$((RANDOM % 51000))
			order+=("${delay[j]} $j")
		fi
	done
	while read -r d j; do
		[ -n "${j:-}" ] || continue
		now_us
		usleep_ $((t0 + d - _now))
		kill -KILL "${pids[j]}" 2>/dev/null && SIGNALLED=$((SIGNALLED + 1))
	done < <(printf '%s\n' "${order[@]}" | sort -n)
	# Everyone else must finish: a process still running long after
	# its siblings died is stuck (a lock held by a dead process?).
	now_us
	deadline=$((_now + HANG * 1000000))
	for ((j = 0; j < ${#pids[@]}; j++)); do
		hung=0
		while alive "${pids[j]}"; do
			now_us
			if [ "$_now" -gt "$deadline" ]; then
				show_hang "${pids[j]}" "${kinds[j]} of trial $TRIALS"
				HANGS=$((HANGS + 1))
				HANG_US=$((HANG_US + HANG * 1000000))
				kill -KILL "${pids[j]}" 2>/dev/null
				hung=1
				break
			fi
			usleep_ 2000
		done
		wait "${pids[j]}" 2>/dev/null
		rc=$?
		[ "$rc" = 137 ] && [ "$hung" = 0 ] && KILLS=$((KILLS + 1))
		if [ "${kinds[j]}" = queue ]; then
			record_queue "${msg[j]}" "$rc"
		else
			PICKUPS=$((PICKUPS + 1))
			PICKUP_RC[$rc]=$(( ${PICKUP_RC[$rc]:-0} + 1 ))
		fi
	done
	TRIALS=$((TRIALS + 1))
}

# A trial aimed at pickup: many small messages queued (and acknowledged)
# first, then pickups killed while they work through them, so that kills
# land between a message's commit and its rename.
pickup_trial() {
	local n i rc
	for ((n = 0; n < 8; n++)); do
		make_msg 2000
		i=$((NMSG - 1))
		"$MGATE" -v queue bob@example.com <"$T/m/$i.eml" >/dev/null 2>"$T/m/$i.err"
		record_queue "$i" $?
	done
	trial $((RANDOM % 2)) $((2 + RANDOM % 2))
}

# ---------------------------------------------------------------------------
# Phase 1: random kills.

now_us
START=$_now
while :; do
	now_us
	# Time spent waiting for hung processes does not count.
	elapsed=$(( (_now - START - HANG_US) / 1000000 ))
	[ "$KILLS" -lt "$KILL_TARGET" ] || break
	[ "$elapsed" -lt "$BUDGET" ] || break
	if [ "$HANGS" -ge 4 ]; then
		diag "random phase stopped early: $HANGS hung processes"
		break
	fi
	if [ $((TRIALS % 4)) = 3 ]; then
		pickup_trial 2>>"$T/shell.log"
	else
		trial $((2 + RANDOM % 3)) $((1 + RANDOM % 3)) 2>>"$T/shell.log"
	fi
done
diag "random phase: $TRIALS trials in ${elapsed}s, $SIGNALLED kill -9 sent, $KILLS processes killed (the rest had exited), $PICKUPS pickups"
for rc in "${!PICKUP_RC[@]}"; do
	diag "  pickup exit status $rc: ${PICKUP_RC[$rc]}"
done
is "$HANGS" 0 "no queue or pickup process hangs after a sibling is killed"
ok "at least $KILL_TARGET processes killed by kill -9 ($KILLS)" test "$KILLS" -ge "$KILL_TARGET"
is "$(printf '%s\n' "${BAD_QUEUE[@]}" | grep -c .)" 0 \
    "every queue process exited 0 with a queue ID, or was killed"
[ ${#BAD_QUEUE[@]} = 0 ] || diag "$(printf '  %s\n' "${BAD_QUEUE[@]}" | head -n 20)"
bad_pickups=0
for rc in "${!PICKUP_RC[@]}"; do
	case $rc in 0 | 75 | 137) ;; *) bad_pickups=$((bad_pickups + PICKUP_RC[$rc])) ;; esac
done
is "$bad_pickups" 0 "every pickup exited 0 or 75 (temporary), or was killed"
if [ "$bad_pickups" != 0 ] || [ -n "${PICKUP_RC[75]:-}" ]; then
	diag "pickup messages:"
	diag "$(grep -v 'queue active' "$T/pickup.err" | sort | uniq -c | sort -rn | head -n 15)"
fi

# ---------------------------------------------------------------------------
now_us
diag "random phase done at $(( (_now - T0) / 1000000 ))s"
# Phase 2: kills at exact points, by syscall injection (strace).  The
# injected error makes sure the syscall does not happen; SIGKILL follows.

STRACE_KILLS=0
if ! command -v strace >/dev/null 2>&1; then
	if [ "${CI:-}" = true ]; then
		fail "strace is installed (needed for the exact crash points; add it to tests/lib/install-deps)"
	else
		skip "strace not installed: exact crash points not tested" 9
	fi
else
	# bounded CMD...: CMD in the background, waited for at most 6 * HANG
	# seconds; then it and its children are killed and it counts as a
	# hang.  Returns CMD's exit status.
	PHASE2_HANGS=0
	bounded() {
		local pid k deadline
		"$@" <&0 &
		pid=$!
		now_us
		deadline=$((_now + 6 * HANG * 1000000))
		while alive "$pid"; do
			now_us
			if [ "$_now" -gt "$deadline" ]; then
				for k in $(pgrep -P "$pid"); do
					show_hang "$k" "$(tr '\0' ' ' <"/proc/$k/cmdline" 2>/dev/null)"
					kill -KILL "$k"
				done
				kill -KILL "$pid" 2>/dev/null
				PHASE2_HANGS=$((PHASE2_HANGS + 1))
				break
			fi
			usleep_ 20000
		done
		wait "$pid" 2>/dev/null
	}
	# kill_at SYSCALLS N CMD...: run CMD, kill it on entering the Nth
	# call of any of SYSCALLS (comma-separated) without performing it.
	kill_at() {
		local calls=$1 when=$2
		shift 2
		# fd 4: the caller's stderr, for CMD; the shell's own stderr
		# (its "Killed" notice) goes to the log.
		{ bounded "${TRACE[@]}" -f -qq -o /dev/null -e trace="$calls" \
		    -e inject="$calls":error=EIO:signal=KILL:when="$when" \
		    "$@" 2>&4; } 4>&2 2>>"$T/shell.log"
	}
	RENAMES=rename,renameat,renameat2

	# (a) pickup killed between the commit of message K and its rename.
	stuck_ok=0 stuck_total=0
	for k in 1 2 3 5; do
		# Files left by the random phase would be picked up first.
		timeout 120 "$MGATE" pickup >/dev/null 2>>"$T/pickup.err"
		first=$NMSG
		for ((n = 0; n < 6; n++)); do
			make_msg 5000
			i=$((NMSG - 1))
			"$MGATE" -v queue bob@example.com <"$T/m/$i.eml" >/dev/null 2>"$T/m/$i.err"
			record_queue "$i" $?
		done
		kill_at "$RENAMES" "$k" "$MGATE" pickup >/dev/null 2>>"$T/pickup.err"
		rc=$?
		stuck_total=$((stuck_total + 1))
		[ "$rc" = 137 ] && STRACE_KILLS=$((STRACE_KILLS + 1))
		# pickup goes in name order: the Kth message of this batch is
		# committed but its file is still in maildrop/.  `mgate cat'
		# does not run pickup: it must find the message in the database
		# and read the body from maildrop/.
		i=$((first + k - 1))
		if [ "$rc" = 137 ] && [ -e "$SPOOL/maildrop/${ACKID[i]}" ] &&
		    timeout 120 "$MGATE" cat "${ACKID[i]}" >"$T/stuck.out" 2>"$T/stuck.err" &&
		    cmp -s <(tail -c "$(stat -c %s "$T/m/$i.eml")" "$T/stuck.out") "$T/m/$i.eml"; then
			stuck_ok=$((stuck_ok + 1))
		else
			diag "kill at rename $k: pickup exit $rc; maildrop: $(ls "$SPOOL/maildrop" | tr '\n' ' ')"
			diag "  cat ${ACKID[i]}: $(cat "$T/stuck.err" 2>/dev/null)"
		fi
	done
	is "$stuck_ok" "$stuck_total" "pickup killed between commit and rename: message committed, file still in maildrop/, cat reads it"
	run timeout 120 "$MGATE" pickup
	is "$RUN_STATUS" 0 "pickup after a kill between commit and rename exits 0"
	is "$(ls -A "$SPOOL/maildrop" | wc -l)" 0 "... and empties maildrop/"

	# (b) pickup killed inside its database commit (the Nth log
	# flush), with several messages waiting.
	for ((n = 0; n < 6; n++)); do
		make_msg 5000
		i=$((NMSG - 1))
		"$MGATE" -v queue bob@example.com <"$T/m/$i.eml" >/dev/null 2>"$T/m/$i.err"
		record_queue "$i" $?
	done
	killed=0
	for k in 1 2 3 4; do
		kill_at fsync,fdatasync,msync "$k" "$MGATE" pickup >/dev/null 2>>"$T/pickup.err"
		[ $? = 137 ] && killed=$((killed + 1))
	done
	STRACE_KILLS=$((STRACE_KILLS + killed))
	ok "pickup killed at its 1st-4th fsync/fdatasync ($killed of 4 killed)" test "$killed" -ge 1

	# (c) queue killed on entering rename: written and fsync'd in tmp/
	# but never committed.  Not acknowledged, never listed.
	make_msg 3000
	i=$((NMSG - 1))
	kill_at "$RENAMES" 1 "$MGATE" -v queue bob@example.com <"$T/m/$i.eml" >/dev/null 2>"$T/m/$i.err"
	rc=$?
	record_queue "$i" "$rc"
	[ "$rc" = 137 ] && STRACE_KILLS=$((STRACE_KILLS + 1))
	is "$rc" 137 "queue killed before its rename"
	NEVER_LISTED=$i

	# (d) queue killed after the rename, before the directory fsync:
	# the file is in maildrop/ though queue never said so; it may be
	# picked up (then exactly once).
	make_msg 3000
	i=$((NMSG - 1))
	kill_at fsync 2 "$MGATE" -v queue bob@example.com <"$T/m/$i.eml" >/dev/null 2>"$T/m/$i.err"
	rc=$?
	record_queue "$i" "$rc"
	[ "$rc" = 137 ] && STRACE_KILLS=$((STRACE_KILLS + 1))
	is "$rc" 137 "queue killed between its rename and the directory fsync"

	# (e) A pickup that opened the database and waits for the pickup
	# lock while the lock's holder is killed inside its commit: the
	# waiter must finish (its turn comes, the dead holder's database
	# locks must not block it forever, nor every pickup after it).
	timeout 120 "$MGATE" pickup >/dev/null 2>>"$T/pickup.err"
	for ((n = 0; n < 3; n++)); do
		make_msg 3000
		i=$((NMSG - 1))
		"$MGATE" -v queue bob@example.com <"$T/m/$i.eml" >/dev/null 2>"$T/m/$i.err"
		record_queue "$i" $?
	done
	slow=5 settle=1
	[ "$ASAN" = 1 ] && slow=10 settle=3
	{
		# Holder: its first log flush (inside the first commit) stalls.
		"${TRACE[@]}" -qq -o /dev/null -e trace=fdatasync,fsync \
		    -e inject=fdatasync,fsync:delay_enter=$((slow * 1000000)):when=1 \
		    "$MGATE" pickup >/dev/null 2>>"$T/pickup.err" &
		tracer=$!
		usleep_ $((settle * 1000000))
		holder=$(pgrep -P "$tracer" | head -n 1)
		# Waiter: opens the database, then waits for the pickup lock.
		"$MGATE" pickup >/dev/null 2>"$T/waiter.err" &
		waiter=$!
		usleep_ $((settle * 500000))
		[ -n "$holder" ] && kill -KILL "$holder"
		wait "$tracer"
		now_us
		deadline=$((_now + HANG * 1000000))
		while alive "$waiter" && [ "$_now" -lt "$deadline" ]; do
			usleep_ 20000
			now_us
		done
		if alive "$waiter"; then
			waiter_rc=hung
			show_hang "$waiter" "pickup waiting while the lock holder was killed in its commit"
			kill -KILL "$waiter"
		fi
		wait "$waiter"
		rc=$?
	} 2>>"$T/shell.log"
	[ "${waiter_rc:-}" = hung ] && rc=hung
	[ -n "$holder" ] && STRACE_KILLS=$((STRACE_KILLS + 1))
	ok "the holder of the pickup lock was killed inside its commit" test -n "$holder"
	like "$rc" '^(0|75)$' "a pickup waiting meanwhile finishes (exit 0, or 75 if the database needed recovery), it does not hang" ||
		diag "$(cat "$T/waiter.err")"
	is "$PHASE2_HANGS" 0 "no process hangs at the exact crash points"
fi

# ---------------------------------------------------------------------------
# Final pickup and the checks.
now_us
diag "exact crash points done at $(( (_now - T0) / 1000000 ))s"

run timeout 300 "$MGATE" pickup
is "$RUN_STATUS" 0 "final pickup exits 0" || diag "$RUN_STDERR"
is "$(ls -A "$SPOOL/maildrop" | wc -l)" 0 "maildrop/ is empty after the final pickup"
is "$(ls -A "$SPOOL/corrupt" | wc -l)" 0 "nothing was moved to corrupt/" ||
	diag "corrupt/: $(ls -A "$SPOOL/corrupt" | head -n 10 | tr '\n' ' ')"

run timeout 300 "$MGATE" list --json
is "$RUN_STATUS" 0 "list --json exits 0" || diag "$RUN_STDERR"
printf '%s\n' "$RUN_STDOUT" >"$T/list.json"
jq -r '.[].id' "$T/list.json" >"$T/ids" 2>"$T/jq.err"
ok "list --json is valid JSON" test ! -s "$T/jq.err"
is "$(sort "$T/ids" | uniq -d | wc -l)" 0 "no queue ID is listed twice"

# Read every listed message back: its token says which message it is.
declare -A FOUND	# token -> IDs (space-separated)
declare -A MSGOF	# token -> message number
for ((i = 0; i < NMSG; i++)); do MSGOF[${TOK[i]}]=$i; done
cat_fail=() unknown=()
mkdir -p "$T/cat"
# Four at a time (each cat opens the database and checkpoints on close).
# shellcheck disable=SC2016
xargs -P 4 -n 1 bash -c 'timeout 60 "$0" cat "$2" >"$1/$2" 2>"$1/$2.err"; echo $? >"$1/$2.rc"' \
    "$MGATE" "$T/cat" <"$T/ids" 2>/dev/null
_tap_check_sanitizer_logs || true
while read -r id; do
	if [ "$(cat "$T/cat/$id.rc" 2>/dev/null)" != 0 ]; then
		cat_fail+=("$id: exit $(cat "$T/cat/$id.rc" 2>/dev/null): $(cat "$T/cat/$id.err" 2>/dev/null)")
		continue
	fi
	tok=$(grep -a -m1 -o 'crashtok-[0-9]*-[0-9]*' "$T/cat/$id")
	if [ -z "$tok" ] || [ -z "${MSGOF[$tok]:-}" ]; then
		unknown+=("$id")
		continue
	fi
	FOUND[$tok]="${FOUND[$tok]:-}${FOUND[$tok]:+ }$id"
done <"$T/ids"
is "${#cat_fail[@]}" 0 "mgate cat exits 0 for every listed message" ||
	diag "$(printf '  %s\n' "${cat_fail[@]}" | head -n 20)"
is "${#unknown[@]}" 0 "every listed message is one this test submitted" ||
	diag "  no known token in: ${unknown[*]:0:20}"

acked=0 found=0 lost=() dup=() wrongid=() damaged=() killed_found=0 killed=0
intact() { # ID I: does cat's output end with exactly the submitted bytes?
	local size
	size=$(stat -c %s "$T/m/$2.eml")
	[ "$(stat -c %s "$T/cat/$1")" -ge "$size" ] &&
	    cmp -s <(tail -c "$size" "$T/cat/$1") "$T/m/$2.eml"
}
for ((i = 0; i < NMSG; i++)); do
	tok=${TOK[i]}
	ids=${FOUND[$tok]:-}
	nf=$(wc -w <<<"$ids")
	[ "$nf" -le 1 ] || dup+=("message $i ($tok, ${STATE[i]:-?}): $ids")
	if [ "${STATE[i]:-}" = acked ]; then
		acked=$((acked + 1))
		if [ "$nf" = 0 ]; then
			lost+=("message $i ($tok) acknowledged as ${ACKID[i]}")
			continue
		fi
		found=$((found + 1))
		[ "${ids%% *}" = "${ACKID[i]}" ] ||
		    wrongid+=("message $i: acknowledged as ${ACKID[i]}, listed as $ids")
	else
		killed=$((killed + 1))
		[ "$nf" = 0 ] && continue
		killed_found=$((killed_found + 1))
	fi
	for id in $ids; do
		intact "$id" "$i" || damaged+=("message $i (${STATE[i]:-?}) as $id: $(stat -c %s "$T/cat/$id") bytes from cat, $(stat -c %s "$T/m/$i.eml") submitted")
	done
done
now_us
diag "checks done at $(( (_now - T0) / 1000000 ))s"
diag "summary: $TRIALS trials, $KILLS random kills (+$STRACE_KILLS at exact points), $NMSG messages, $acked acknowledged, $found of them found, $killed not acknowledged ($killed_found of those found), ${#dup[@]} duplicated, $(wc -l <"$T/ids") listed"

ok "many messages were acknowledged ($acked)" test "$acked" -ge 50
is "${#lost[@]}" 0 "every acknowledged message is listed (nothing lost)" ||
	diag "$(printf '  %s\n' "${lost[@]}" | head -n 20)"
is "${#dup[@]}" 0 "no message is listed twice (nothing duplicated)" ||
	diag "$(printf '  %s\n' "${dup[@]}" | head -n 20)"
is "${#wrongid[@]}" 0 "every acknowledged message is listed under the ID queue printed" ||
	diag "$(printf '  %s\n' "${wrongid[@]}" | head -n 20)"
is "${#damaged[@]}" 0 "every listed message is intact: cat ends with exactly the submitted bytes" ||
	diag "$(printf '  %s\n' "${damaged[@]}" | head -n 20)"
is "$(wc -l <"$T/ids" | tr -d ' ')" "$((found + killed_found))" \
    "the queue holds exactly the messages found, nothing else"
if [ -n "${NEVER_LISTED:-}" ]; then
	is "${FOUND[${TOK[NEVER_LISTED]}]:-}" "" "the message whose queue was killed before its rename is not listed"
fi
# tmp/ may hold files of killed submissions (swept after a day), never
# one that was acknowledged.
left=0
for ((i = 0; i < NMSG; i++)); do
	[ "${STATE[i]:-}" = acked ] && [ -e "$SPOOL/tmp/${ACKID[i]}" ] && left=$((left + 1))
done
is "$left" 0 "no acknowledged message left a file in tmp/"
diag "tmp/ holds $(ls -A "$SPOOL/tmp" | wc -l) files of killed submissions"

done_testing
