#!/usr/bin/env bash
# bench/queue.sh - submission speed and memory of `mgate queue`, side by side
# with Postfix's own sendmail.
#
# 1. N (default 1000) sequential injections, one process per message, of the
#    first N easy_ham corpus messages (sorted by name, mbox From line
#    stripped, recipient on the command line, as mutt calls sendmail):
#      a. `mgate queue` into a throwaway spool;
#      b. `/usr/sbin/sendmail -C DIR` into a throwaway Postfix instance
#         (tests/lib/postfix-instance, mode hold: postdrop -> pickup ->
#         cleanup -> hold queue, no delivery).  Postfix's sendmail exits once
#         postdrop has fsync'd the maildrop file, as mgate queue exits once
#         its maildrop file is durable: the same promise.
#    Both sides get one untimed warm-up injection first (directories, binary
#    in the page cache).  Prints messages/s of each and the ratio, and how
#    long each took until every message was in its queue proper (mgate:
#    after a final `mgate pickup`; Postfix: hold queue filled).
# 2. Peak RSS of `mgate queue` for a 100 MiB message (/usr/bin/time %M),
#    next to the 16 MiB target (memory must not grow with message size),
#    and Postfix's sendmail for the same message.
#
# Environment: MGATE_BUILD (default REPO/build), MGATE_CORPUS, BENCH_N,
# BENCH_BIG_MIB (default 100), MGATE_KEEP=1 keeps the work directory.
# Needs root for the Postfix half (skipped, with a note, otherwise).
# Exit status: 0 when every measurement ran; 1 when something failed (the
# other figures are still printed).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
MGATE_BUILD=${MGATE_BUILD:-$REPO/build}
MGATE=$MGATE_BUILD/mgate
PFI=$REPO/tests/lib/postfix-instance
CORPUS=${MGATE_CORPUS:-$REPO/../shared/corpus/spamassassin-public}
N=${BENCH_N:-1000}
BIG_MIB=${BENCH_BIG_MIB:-100}
RSS_TARGET_KIB=$((16 * 1024))
SENDER=sender@example.org
RCPT=bench@example.com # a mailbox of the Postfix instance's test domain
POSTFIX_SENDMAIL=/usr/sbin/sendmail
if [ -x /usr/bin/python3 ]; then PYTHON3=/usr/bin/python3; else PYTHON3=python3; fi

errors=()         # what failed, for the summary and the exit status
W=
PF_STARTED=0
MGATE_OK=0        # the mgate binary works (warm-up injection succeeded)
POSTFIX_OK=0

say() { printf '%s\n' "$*"; }
err() {
	printf 'ERROR: %s\n' "$*" >&2
	errors+=("$*")
}

cleanup() {
	local rc=$?
	if [ "$PF_STARTED" = 1 ]; then
		"$PFI" stop "$W/pf" || true
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

now() { printf '%s\n' "$EPOCHREALTIME"; }
# Arithmetic on decimal seconds (bash has integers only): calc FORMAT EXPR.
calc() { awk "BEGIN { printf \"$1\", ($2) }"; }

free_port() {
	"$PYTHON3" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Inject every message in $W/msgs, one process each: "$@" <message.
# Sets ELAPSED (seconds) and FAILS.  Each run's stderr goes to LOG; for a
# failed run, the message, exit status and stderr go to LOG.failures.
inject_all() { # LOG CMD [ARGS...]
	local log=$1 f t0 t1 rc
	shift
	FAILS=0
	: >"$log.failures"
	t0=$(now)
	for f in "${MSGS[@]}"; do
		rc=0
		"$@" <"$f" 2>"$W/run.err" || rc=$?
		cat "$W/run.err" >>"$log"
		if [ "$rc" != 0 ]; then
			FAILS=$((FAILS + 1))
			{
				echo "${f##*/}: exit status $rc"
				sed 's/^/    /' "$W/run.err"
			} >>"$log.failures"
		fi
	done
	t1=$(now)
	ELAPSED=$(calc '%.3f' "$t1 - $t0")
}

# Summarise failed injections: exit statuses counted, the first few shown.
show_failures() { # LOG
	echo "  exit statuses: $(grep -o 'exit status [0-9]*' "$1.failures" | sort | uniq -c |
		awk '{ printf "%s%d x %s", (NR > 1 ? ", " : ""), $1, $4 }')"
	echo "  first failures:"
	head -n 12 "$1.failures" | sed 's/^/    /'
} >&2

# Poll until CMD succeeds, at most SECONDS; sets WAITED.
wait_until() { # SECONDS CMD [ARGS...]
	local limit=$1 t0
	shift
	t0=$(now)
	until "$@"; do
		if [ "$(calc '%d' "$(now) - $t0 >= $limit")" != 0 ]; then
			WAITED=$(calc '%.3f' "$(now) - $t0")
			return 1
		fi
		sleep 0.02
	done
	WAITED=$(calc '%.3f' "$(now) - $t0")
}

# The Postfix instance's hold queue holds exactly N messages.
hold_count_is() { # N
	[ "$(find "$W/pf/queue/hold" -type f | wc -l)" = "$1" ]
}

W=$(mktemp -d "${TMPDIR:-/tmp}/mgate-bench.XXXXXX")
chmod 0711 "$W" # the postfix user must reach $W/pf

# ---------------------------------------------------------------------------
# The corpus: first N easy_ham messages, From line stripped, pre-read.

[ -d "$CORPUS/easy_ham" ] || { err "no corpus at $CORPUS/easy_ham (set MGATE_CORPUS)"; exit 1; }
mkdir "$W/msgs"
mapfile -t names < <(LC_ALL=C find "$CORPUS/easy_ham" -maxdepth 1 -type f -printf '%f\n' | LC_ALL=C sort | head -n "$N")
[ "${#names[@]}" = "$N" ] || { err "only ${#names[@]} easy_ham messages, need $N"; exit 1; }
for name in "${names[@]}"; do
	LC_ALL=C sed '1{/^From /d}' "$CORPUS/easy_ham/$name" >"$W/msgs/$name"
done
MSGS=("$W"/msgs/*)
# Written just now, so in the page cache; read once more to be sure, so
# that neither side pays for corpus disk reads.
cat "${MSGS[@]}" >/dev/null
corpus_bytes=$(cat "${MSGS[@]}" | wc -c)
say "corpus: first $N of easy_ham, From line stripped: $corpus_bytes bytes ($(calc '%.1f' "$corpus_bytes / 1048576") MiB), in $W/msgs"
say "each injection: <cmd> -oi -f $SENDER -- $RCPT < message"

# ---------------------------------------------------------------------------
# a. mgate queue

MG_RATE="" MG_ELAPSED="" MG_ALLIN=""
cat >"$W/mgate.conf" <<EOF
spool_directory = $W/mgate-spool
myhostname = site.example.org
mydomain = example.org
log_destination = stderr
message_size_limit = $(((BIG_MIB + 10) * 1048576))
EOF
export MGATE_CONFIG=$W/mgate.conf
: >"$W/mgate.log"

say ""
say "--- mgate queue ($MGATE_BUILD/mgate)"
if [ -x "$MGATE" ]; then
	# Measure a private copy: a rebuild of build/mgate during the run
	# must not break it.
	cp "$MGATE" "$W/mgate"
	MGATE=$W/mgate
fi
# Create the spool (untimed).  Best effort: should queue create it by
# itself, the warm-up injection below is what decides.
if [ -x "$MGATE" ] && ! "$MGATE" init >>"$W/mgate.log" 2>&1; then
	say "note: mgate init failed (see below if queue fails too)"
fi
if [ ! -x "$MGATE" ]; then
	err "no mgate binary at $MGATE (run make)"
elif ! "$MGATE" queue -oi -f "$SENDER" -- "$RCPT" <"${MSGS[0]}" 2>>"$W/mgate.log"; then
	err "mgate queue failed on the warm-up message; its stderr:"
	tail -n 20 "$W/mgate.log" >&2
else
	MGATE_OK=1
	inject_all "$W/mgate.log" "$MGATE" queue -oi -f "$SENDER" -- "$RCPT"
	MG_ELAPSED=$ELAPSED
	if [ "$FAILS" != 0 ]; then
		err "mgate queue failed for $FAILS of $N messages"
		show_failures "$W/mgate.log"
	else
		MG_RATE=$(calc '%.1f' "$N / $MG_ELAPSED")
	fi
	say "mgate queue: $N messages in $MG_ELAPSED s ($(calc '%.1f' "$N / $MG_ELAPSED") msg/s), $FAILS failed"
	# Whatever the queue step left for pickup, imported now (untimed above).
	t0=$(now)
	if "$MGATE" pickup 2>>"$W/mgate.log"; then
		MG_ALLIN=$(calc '%.3f' "$MG_ELAPSED + $(now) - $t0")
		say "mgate pickup afterwards: $(calc '%.3f' "$(now) - $t0") s"
	else
		err "mgate pickup failed; last stderr lines:"
		tail -n 10 "$W/mgate.log" >&2
	fi
	# Best effort: how many messages does the spool list?  (N + 1 warm-up)
	if listed=$("$MGATE" list --json 2>/dev/null |
		jq 'if type == "array" then length
		    elif type == "object" and has("messages") then (.messages | length)
		    else empty end' 2>/dev/null) && [ -n "$listed" ]; then
		say "mgate list --json: $listed messages (expected $((N + 1)))"
		[ "$listed" = "$((N + 1))" ] || err "mgate lists $listed messages, expected $((N + 1))"
	fi
fi

# ---------------------------------------------------------------------------
# b. Postfix's sendmail into a throwaway instance

PF_RATE="" PF_ELAPSED="" PF_ALLIN=""
say ""
say "--- Postfix sendmail ($POSTFIX_SENDMAIL -C DIR, instance in mode hold)"
if [ "$(id -u)" != 0 ]; then
	err "the Postfix half needs root (Postfix's master); skipped"
elif [ ! -x "$POSTFIX_SENDMAIL" ] || ! dpkg -S "$POSTFIX_SENDMAIL" 2>/dev/null | grep -q '^postfix:' ||
	[ -L "$POSTFIX_SENDMAIL" ]; then
	err "$POSTFIX_SENDMAIL is not Postfix's sendmail (install postfix; see tests/lib/install-deps)"
else
	mkdir -p "$W/pf/conf"
	# No size limit, for the 100 MiB message below.
	echo 'message_size_limit = 0' >"$W/pf/conf/main.cf.extra"
	port=$(free_port)
	if ! "$PFI" start "$W/pf" "$port" hold; then
		err "could not start the Postfix instance"
	else
		PF_STARTED=1
		pfconf=$W/pf/conf
		if ! "$POSTFIX_SENDMAIL" -C "$pfconf" -oi -f "$SENDER" -- "$RCPT" <"${MSGS[0]}" 2>>"$W/postfix.log"; then
			err "Postfix sendmail failed on the warm-up message"
			tail -n 10 "$W/postfix.log" >&2
		elif ! wait_until 30 hold_count_is 1; then
			err "Postfix did not put the warm-up message in the hold queue"
		else
			POSTFIX_OK=1
			inject_all "$W/postfix.log" "$POSTFIX_SENDMAIL" -C "$pfconf" -oi -f "$SENDER" -- "$RCPT"
			PF_ELAPSED=$ELAPSED
			if [ "$FAILS" != 0 ]; then
				err "Postfix sendmail failed for $FAILS of $N messages"
				show_failures "$W/postfix.log"
			else
				PF_RATE=$(calc '%.1f' "$N / $PF_ELAPSED")
			fi
			say "Postfix sendmail: $N messages in $PF_ELAPSED s ($(calc '%.1f' "$N / $PF_ELAPSED") msg/s), $FAILS failed"
			if wait_until 120 hold_count_is "$((N + 1))"; then
				PF_ALLIN=$(calc '%.3f' "$PF_ELAPSED + $WAITED")
				say "Postfix pickup/cleanup: all $N in the hold queue $WAITED s after the last sendmail"
			else
				err "Postfix's hold queue has $(find "$W/pf/queue/hold" -type f | wc -l) messages, expected $((N + 1))"
			fi
		fi
	fi
fi

# ---------------------------------------------------------------------------
# Side by side.

say ""
say "=== sequential injection of $N corpus messages, one process each"
printf '%-22s %12s %10s %22s\n' "" "seconds" "msg/s" "all in queue (s)"
printf '%-22s %12s %10s %22s\n' "mgate queue" "${MG_ELAPSED:-n/a}" "${MG_RATE:-n/a}" "${MG_ALLIN:-n/a}"
printf '%-22s %12s %10s %22s\n' "Postfix sendmail" "${PF_ELAPSED:-n/a}" "${PF_RATE:-n/a}" "${PF_ALLIN:-n/a}"
if [ -n "$MG_RATE" ] && [ -n "$PF_RATE" ]; then
	say "ratio mgate/Postfix: $(calc '%.2f' "$MG_RATE / $PF_RATE")x"
else
	say "ratio mgate/Postfix: n/a (a side did not run; see the errors)"
fi

# ---------------------------------------------------------------------------
# 2. Peak RSS for a big message.

say ""
say "=== peak RSS for one ${BIG_MIB} MiB message (/usr/bin/time %M)"
big=$W/big.eml
{
	printf 'From: Sender <%s>\nTo: <%s>\nSubject: big message\n' "$SENDER" "$RCPT"
	printf 'Date: %s\nMessage-ID: <big-%s@example.org>\nMIME-Version: 1.0\n' "$(date -R)" "$$"
	printf 'Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n'
} >"$big"
# Incompressible base64 lines of 76 characters, exactly BIG_MIB MiB in all.
hdr_bytes=$(stat -c %s "$big")
base64 -w 76 </dev/urandom | head -c "$((BIG_MIB * 1048576 - hdr_bytes - 1))" >>"$big" || true
echo >>"$big"
cat "$big" >/dev/null
say "message: $(stat -c %s "$big") bytes"

if [ ! -x /usr/bin/time ]; then
	err "/usr/bin/time is missing (package time; tests/lib/install-deps)"
else
	# %M: maximum resident set size in KiB; %e: elapsed seconds.
	if [ "$MGATE_OK" = 1 ]; then
		if /usr/bin/time -f '%M %e' -o "$W/rss.mgate" \
			"$MGATE" queue -oi -f "$SENDER" -- "$RCPT" <"$big" 2>>"$W/mgate.log"; then
			read -r kib secs <"$W/rss.mgate"
			verdict="within target"
			[ "$kib" -le "$RSS_TARGET_KIB" ] || verdict="OVER TARGET"
			printf '%-22s peak RSS %8.1f MiB   target <= %d MiB: %s   (%s s, %.0f MiB/s)\n' \
				"mgate queue" "$(calc '%.1f' "$kib / 1024")" $((RSS_TARGET_KIB / 1024)) "$verdict" \
				"$secs" "$(calc '%.1f' "$BIG_MIB / ($secs > 0 ? $secs : 0.01)")"
		else
			err "mgate queue failed for the ${BIG_MIB} MiB message; last stderr lines:"
			tail -n 10 "$W/mgate.log" >&2
		fi
	else
		say "mgate queue: n/a (mgate does not work; see above)"
	fi
	if [ "$POSTFIX_OK" = 1 ]; then
		if /usr/bin/time -f '%M %e' -o "$W/rss.postfix" \
			"$POSTFIX_SENDMAIL" -C "$W/pf/conf" -oi -f "$SENDER" -- "$RCPT" <"$big" 2>>"$W/postfix.log"; then
			read -r kib secs <"$W/rss.postfix"
			printf '%-22s peak RSS %8.1f MiB   (for comparison; %s s)\n' \
				"Postfix sendmail" "$(calc '%.1f' "$kib / 1024")" "$secs"
		else
			err "Postfix sendmail failed for the ${BIG_MIB} MiB message"
			tail -n 10 "$W/postfix.log" >&2
		fi
	fi
fi

say ""
if [ ${#errors[@]} -ne 0 ]; then
	say "bench/queue.sh: ${#errors[@]} problem(s):"
	printf '  - %s\n' "${errors[@]}"
	exit 1
fi
say "bench/queue.sh: all measurements ran"
