#!/usr/bin/env bash
# kill -9 during sync: of `mgate sync' (the site) and of `mgate serve'
# (the gateway's end, started by sshd as the forced command), at random
# times during real syncs over SSH (tests/lib/sshd-setup.sh).
#
# ~150 corpus messages of mixed sizes (easy_ham, the largest hard_ham and
# spam), max_bundle_size 256k (several bundles, some of several chunks).
# Each trial starts `mgate sync' and kills one of the two with SIGKILL:
# the sync after a random time within the length of a sync, or its serve
# a random time after it started, within the length of a serve (both
# lengths learnt as it goes).  A trial counts when its victim was alive.
# More mail (three small messages, and every third time a large one) is
# queued when all of it got through before enough kills.  Then:
#   - right after the kills, `mgate -c gw.conf list --json' works and no
#     site message appears twice at the gateway (by peer_id);
#   - a clean sync exits 0 (at most three tries);
#   - every message is at the gateway exactly once, byte-identical to the
#     site's copy (compared after the sweep below); every site recipient
#     is accepted;
#   - nothing is left behind: no .part in the gateway's incoming/, no
#     bundle in the site's outgoing/; once staged files are old enough for
#     pickup's sweep (files aged with touch), one body file per message in
#     each queue/ and nothing in tmp/ (no orphans from a killed unpack).
#
# Environment: MGATE_KILL_SEED (repeat a run), MGATE_KILLS (effective
# kills to reach; default 100, 35 under MGATE_ASAN=1).
set -uo pipefail
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/sshd-setup.sh"

need_root "starts an OpenSSH sshd with its own host key and authorized_keys"
need_mgate
need_cmd jq cmp pgrep ssh-keygen
CORPUS=$(corpus_dir) || skip_all "no corpus"

if [ "${MGATE_ASAN:-0}" = 1 ]; then
	KILLS=${MGATE_KILLS:-35}
	HANG=90
else
	KILLS=${MGATE_KILLS:-100}
	HANG=30
fi
SEED=${MGATE_KILL_SEED:-$(( $(date +%s%N) % 1000000007 ))}
RANDOM=$SEED
diag "seed $SEED (MGATE_KILL_SEED=$SEED repeats the choices), $KILLS kills"

sshd_gateway_setup "max_bundle_size = 256k"
site() { "$MGATE" -c "$SITE_CONF" "$@"; }
gw() { "$MGATE" -c "$GW_CONF" "$@"; }
sj() { sync_list_json "$SITE_CONF"; }	# `list --json', checked
gj() { sync_list_json "$GW_CONF"; }

# bash reports every killed job on its stderr; keep that out of the TAP
# stream (diagnostics go to fd 3).
exec 3>&2

rand() { echo $(( (RANDOM * 32768 + RANDOM) % $1 )); }

# kill -9 PID if it is alive and not already a zombie (a process that
# has exited but is not reaped yet still takes signals): true if killed.
kill_live() { # PID
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ] && kill -9 "$1" 2>/dev/null
}

# ---------------------------------------------------------------------------
# The mail.

NQ=0
queue_one() { # FILE
	strip_from_line "$1" | site queue -i "kill$NQ@example.com" 2>/dev/null &&
	    NQ=$((NQ + 1))
}
mapfile -t EASY < <(cd "$CORPUS/easy_ham" && ls | LC_ALL=C sort)
EI=3
queue_easy() { # COUNT
	local i
	for ((i = 0; i < $1; i++)); do
		queue_one "$CORPUS/easy_ham/${EASY[EI % ${#EASY[@]}]}"
		EI=$((EI + 7))
	done
}
queue_easy 138
while read -r f; do queue_one "$CORPUS/hard_ham/$f"; done < <(cd "$CORPUS/hard_ham" && ls -S | head -n 6)
while read -r f; do queue_one "$CORPUS/spam/$f"; done < <(cd "$CORPUS/spam" && ls -S | head -n 3)
while read -r f; do queue_one "$CORPUS/easy_ham_2/$f"; done < <(cd "$CORPUS/easy_ham_2" && ls -S | head -n 3)
is "$NQ" 150 "150 corpus messages queued at the site"

# ---------------------------------------------------------------------------
# The kills.

kills=0 kills_sync=0 kills_serve=0 trials=0 hangs=0 bad_rc=0 topups=0 stuck=0
SPAN=1500	# ms: how long a sync runs, as far as we know
SSPAN=800	# ms: how long its serve runs
mkdir -p "$T/k"
mapfile -t BIGSPAM < <(cd "$CORPUS/spam" && ls -S | head -n 3)
while [ "$kills" -lt "$KILLS" ]; do
	trials=$((trials + 1))
	if [ "$trials" -gt $((KILLS * 4 + 50)) ]; then
		fail "only $kills effective kills in $trials trials"
		break
	fi
	# The previous trial's gateway end must be gone, so that the serve
	# killed below is this trial's.
	if ! sshd_wait_sessions 20; then
		# A gateway end that never finishes: say what it waits on, then
		# do what an admin would (kill it) and go on.
		stuck=$((stuck + 1))
		diag "trial $trials: serve sessions still running 20 s after their sync ended:
$(sshd_show_sessions)" >&3
		for p in $(sshd_session_pids); do kill -9 "$p" 2>/dev/null; done
		if [ "$stuck" -ge 4 ]; then
			diag "giving up the kills: the gateway's end hung $stuck times" >&3
			break
		fi
	fi
	victim=sync
	[ $((RANDOM % 2)) = 0 ] && victim=serve
	t0=$(date +%s%N)
	"$MGATE" -c "$SITE_CONF" sync >"$T/k/$trials.out" 2>"$T/k/$trials.err" &
	SP=$!
	hit=0 pids=
	if [ "$victim" = sync ]; then
		# Anywhere in its life: pickup, packing, connecting, sending,
		# taking the acknowledgements, the way back.
		delay=$(rand "$SPAN")
		sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
		kill_live "$SP" && hit=1
	else
		# Once this sync's serve runs, anywhere in its life.
		until pids=$(sshd_serve_pids); do
			kill -0 "$SP" 2>/dev/null || break
			sleep 0.01
		done
		ts=$(date +%s%N)
		delay=$(rand "$SSPAN")
		sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
		for p in $pids; do
			kill_live "$p" && hit=1
		done
	fi
	# Reap the sync, with a deadline.
	for ((i = 0; i < HANG * 20; i++)); do
		kill -0 "$SP" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$SP" 2>/dev/null; then
		hangs=$((hangs + 1))
		diag "trial $trials: sync still running $HANG s after killing $victim" >&3
		kill -9 "$SP" 2>/dev/null
	fi
	rc=0
	wait "$SP" 2>/dev/null || rc=$?
	now=$(date +%s%N)
	ms=$(( (now - t0) / 1000000 ))
	# A sync that exited 0 had finished before the signal landed.
	[ "$victim:$rc" != sync:0 ] || hit=0
	echo "$trials $victim delay=$delay hit=$hit rc=$rc ms=$ms" >>"$T/k/log"
	if [ "$hit" = 1 ]; then
		kills=$((kills + 1))
		if [ "$victim" = sync ]; then
			kills_sync=$((kills_sync + 1))
			SPAN=$((SPAN * 21 / 20 + 10))
		else
			kills_serve=$((kills_serve + 1))
			SSPAN=$((SSPAN * 21 / 20 + 10))
		fi
		# A killed sync: 137.  A killed serve: the sync sees the link
		# drop (75), unless it had just finished (0).
		case "$victim:$rc" in
		sync:137 | serve:75 | serve:0) ;;
		*)
			bad_rc=$((bad_rc + 1))
			diag "trial $trials: killed $victim after $delay ms, sync exited $rc: $(tail -n 2 "$T/k/$trials.err")" >&3
			;;
		esac
	else
		if [ "$rc" != 0 ]; then
			bad_rc=$((bad_rc + 1))
			diag "trial $trials: nothing killed, sync exited $rc: $(tail -n 2 "$T/k/$trials.err")" >&3
		fi
		# Too late: aim within the life just seen.
		if [ "$victim" = sync ]; then
			SPAN=$((ms * 9 / 10))
		elif [ -n "$pids" ]; then
			SSPAN=$(( (now - ts) / 1000000 * 9 / 10 ))
		fi
	fi
	[ "$SPAN" -ge 100 ] || SPAN=100
	[ "$SPAN" -le 20000 ] || SPAN=20000
	[ "$SSPAN" -ge 50 ] || SSPAN=50
	[ "$SSPAN" -le 20000 ] || SSPAN=20000
	# Everything got through?  Queue more to kill syncs of: a few small
	# messages and one large one (several chunks).
	if [ "$rc" = 0 ] && [ "$(sync_site_states | awk '$2 != "accepted"' | grep -c .)" = 0 ]; then
		topups=$((topups + 1))
		queue_easy 3
		[ $((topups % 3)) != 0 ] || queue_one "$CORPUS/spam/${BIGSPAM[topups / 3 % 3]}"
	fi
done
sshd_wait_sessions 20
diag "$trials trials, $kills kills ($kills_sync of sync, $kills_serve of serve), $topups top-ups, $NQ messages; last span $SPAN ms"
ok "at least $KILLS effective kills" test "$kills" -ge "$KILLS"
ok "both sides were killed" test "$kills_sync" -ge 1 -a "$kills_serve" -ge 1
is "$hangs" 0 "no sync hung after a kill"
is "$stuck" 0 "no gateway end (mgate serve) stayed stuck after its sync ended"
is "$bad_rc" 0 "a killed sync died (137); a sync whose serve was killed exited 75 (or 0)"

# ---------------------------------------------------------------------------
# Right after the kills.

run gj
is "$RUN_STATUS" 0 "after the kills the gateway's queue lists (recovery works)"
printf '%s\n' "$RUN_STDOUT" >"$T/gw.json"
is "$(jq -r '.[].peer_id' "$T/gw.json" | LC_ALL=C sort | uniq -d | grep -c .)" 0 \
    "after the kills no site message is twice at the gateway (by peer_id)"
run sj
is "$RUN_STATUS" 0 "after the kills the site's queue lists"
EXTRA=$(comm -23 <(jq -r '.[].peer_id' "$T/gw.json" | LC_ALL=C sort -u) \
    <(printf '%s\n' "$RUN_STDOUT" | jq -r '.[].id' | LC_ALL=C sort -u))
is "$EXTRA" "" "the gateway holds nothing the site did not send"

# ---------------------------------------------------------------------------
# A clean sync, and the invariants.

final=1
for try in 1 2 3; do
	run site sync
	[ "$RUN_STATUS" = 0 ] && break
	diag "clean sync $try exited $RUN_STATUS: $(printf '%s\n' "$RUN_STDERR" | tail -n 2)"
	final=$((final + 1))
done
is "$RUN_STATUS" 0 "a clean sync after the kills exits 0"
[ "$final" = 1 ] || diag "it took $final syncs"

MAP=$(sync_gw_map)
is "$(printf '%s\n' "$MAP" | awk '{print $1}' | uniq -d | grep -c .)" 0 \
    "no message is twice at the gateway (by peer_id)"
is "$(printf '%s\n' "$MAP" | grep -c .)" "$NQ" "the gateway holds all $NQ messages"
is "$(printf '%s\n' "$MAP" | awk '{print $1}')" "$(sj | jq -r '.[].id' | LC_ALL=C sort)" \
    "the gateway's peer_ids are exactly the site's queue IDs"
is "$(sync_site_states | awk '$2 != "accepted"' | grep -c .)" 0 "every site recipient is accepted"
is "$(ls "$T/site/outgoing" | grep -c .)" 0 "no bundle left in the site's outgoing/" ||
    diag "$(ls -l "$T/site/outgoing")"
is "$(ls "$T/gw/incoming" | grep -c .)" 0 "no .part file left in the gateway's incoming/" ||
    diag "$(ls -l "$T/gw/incoming")"
# A killed unpack or pack leaves staged files (body files in queue/ that
# no record names, temporary files in tmp/); by design pickup sweeps them
# once they are old enough (6 hours, a day) that no live import can own
# them.  Age everything, run pickup on both sides: nothing is left, and
# nothing that counts was removed.
diag "right after the clean sync: $(ls "$T/gw/queue" | grep -c .) body files for $NQ messages at the gateway, $(ls "$T/gw/tmp" | grep -c .) files in its tmp/"
find "$T/gw/queue" "$T/gw/tmp" "$T/site/queue" "$T/site/tmp" -type f -exec touch -d '2 days ago' {} +
ok "pickup at the gateway" gw pickup
ok "pickup at the site" site pickup
is "$(ls "$T/gw/queue" | grep -c .)" "$NQ" "then the gateway's queue/ holds one body file per message"
is "$(ls "$T/site/queue" | grep -c .)" "$NQ" "and the site's queue/ too"
is "$(ls "$T/gw/tmp" "$T/site/tmp" "$T/gw/corrupt" "$T/site/corrupt" 2>/dev/null | grep -cv -e '^$' -e ':$')" 0 \
    "nothing in tmp/ or corrupt/ on either side"
is "$(sync_gw_map | grep -c .)" "$NQ" "the sweep removed no message"
DIFFS=$(sync_compare_all 4)
is "$(printf '%s' "$DIFFS" | grep -c .)" 0 "every message at the gateway is byte-identical to the site's" ||
    diag "$(printf '%s\n' "$DIFFS" | head -n 5)"
run site sync
is "$RUN_STATUS" 0 "one more sync exits 0"
like "$RUN_STDOUT" "up 0 messages" "and moves nothing"

is "$(sync_json_errors)" 0 "mgate list --json always printed JSON (see $T/json-error.*)"

done_testing
