#!/usr/bin/env bash
# bench/smtpd.sh - inbound SMTP acceptance: mgate's listener (`mgate daemon`
# with smtpd_listen, at a gateway) side by side with Postfix's smtpd, both
# loaded by Postfix's own smtp-source on this machine, in the same run.
#
# Both servers store every message durably before their 250:
#   mgate    the body file is fsync'd and renamed into queue/ (directory
#            fsync'd), then the record is committed in Berkeley DB with a
#            synchronous commit (man/mgate.conf.5, src/smtp_server.c); the
#            mail is for a site's domain, so it stays queued for the site's
#            next sync (nothing is delivered).
#   Postfix  a throwaway instance (tests/lib/postfix-instance, mode hold):
#            smtpd -> cleanup, which fsyncs the queue file before smtpd
#            answers 250; header_checks HOLD puts every message in the hold
#            queue (nothing is delivered).
# Neither offers TLS to smtp-source (plain SMTP), both accept the same
# recipient domain (ship.example.org) from 127.0.0.1 without AUTH.
#
# Each run is `smtp-source -s SESSIONS -m N -l SIZE` (one message per
# connection, smtp-source's default) or with -d (all of a session's
# messages over one connection), first against mgate, then against Postfix;
# timed from start to exit of smtp-source (it exits after the last 250).
# Before the runs each server gets an untimed warm-up of 50 messages.  After
# each run the number of stored messages is checked (mgate: body files in
# the spool's queue/; Postfix: files in its hold queue), and at the end
# mgate's `list --json` must list every message.  The spools are not emptied
# between runs: both grow alike.
#
# Prints messages/s of each and the ratio mgate/Postfix per run, and the
# target of issue 6 (>= 1x Postfix) as met / not met.  Also the CPU time
# (user + system) per message of each server: mgate's daemon, listener and
# sessions; every process of the Postfix instance (smtp-source not counted
# on either side).  On a busy machine the CPU figures move less than the
# rates do.
#
# Environment: MGATE_BUILD (default REPO/build), BENCH_N (messages per run,
# default 5000), BENCH_SIZE (smtp-source -l, bytes of body, default 4096),
# BENCH_RUNS (default "1 10 20 10d": sessions per run, "d" = -d, one
# connection per session), MGATE_KEEP=1 keeps the work directory (mgate's
# log is gw.log there, Postfix's pf/log/maillog).  Needs root (Postfix's
# master) and the packages postfix (smtp-source is in it) and jq.
# Exit status: 0 when every run ran and every count matched, 1 otherwise
# (the figures are still printed).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
MGATE_BUILD=${MGATE_BUILD:-$REPO/build}
MGATE=$MGATE_BUILD/mgate
PFI=$REPO/tests/lib/postfix-instance
SMTP_SOURCE=/usr/sbin/smtp-source
N=${BENCH_N:-5000}
SIZE=${BENCH_SIZE:-4096}
RUNS=${BENCH_RUNS:-1 10 20 10d}
WARMUP=50
DOMAIN=ship.example.org
RCPT=bench@$DOMAIN
SENDER=someone@remote.example
HELO=client.example
RUN_TIMEOUT=600 # seconds, for any one smtp-source run
if [ -x /usr/bin/python3 ]; then PYTHON3=/usr/bin/python3; else PYTHON3=python3; fi

errors=()
W=
DPID=
PF_STARTED=0
MG_OK=0
PF_OK=0

say() { printf '%s\n' "$*"; }
err() {
	printf 'ERROR: %s\n' "$*" >&2
	errors+=("$*")
}

stop_daemon() {
	[ -n "$DPID" ] || return 0
	kill -TERM "$DPID" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$DPID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$DPID" 2>/dev/null || true
	wait "$DPID" 2>/dev/null || true
	DPID=
}

cleanup() {
	local rc=$?
	trap '' INT TERM
	stop_daemon
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
calc() { awk "BEGIN { printf \"$1\", ($2) }"; }

free_port() {
	"$PYTHON3" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Poll until CMD succeeds, at most SECONDS.
wait_until() { # SECONDS CMD [ARGS...]
	local limit=$1 t0
	shift
	t0=$(now)
	until "$@"; do
		[ "$(calc '%d' "$(now) - $t0 >= $limit")" = 0 ] || return 1
		sleep 0.05
	done
}

# CPU time (user + system, in clock ticks) of a set of processes and of
# their reaped children: a session that exits is reaped by its parent, so
# its time moves into the parent's cutime/cstime and is still counted.
ticks_of() { # PID...
	local p t=0 v
	for p in "$@"; do
		# Fields 14-17 of /proc/PID/stat, after the ")" of the name.
		v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }') || continue
		t=$((t + ${v:-0}))
	done
	echo "$t"
}
# mgate: the daemon, its listener and the sessions (children of either).
mg_ticks() {
	local kids grandkids
	kids=$(pgrep -P "$DPID" | tr '\n' ' ')
	grandkids=$(for k in $kids; do pgrep -P "$k"; done | tr '\n' ' ')
	# shellcheck disable=SC2086
	ticks_of "$DPID" $kids $grandkids
}
# Postfix: every process of the instance (they all chdir to its queue).
pf_ticks() {
	local p pids=()
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/cwd" 2>/dev/null)" = "$W/pf/queue" ] && pids+=("${p#/proc/}")
	done
	ticks_of "${pids[@]}"
}
HZ=$(getconf CLK_TCK)

mg_count() { find "$W/gw/queue" -maxdepth 1 -type f | wc -l; }
pf_count() { find "$W/pf/queue/hold" -type f | wc -l; }
count_is() { [ "$("$1")" = "$2" ]; }

# smtp-source against 127.0.0.1:PORT; sets ELAPSED.  Output in LOG.
source_run() { # LOG PORT SESSIONS MESSAGES [-d]
	local log=$1 port=$2 s=$3 m=$4 t0 rc=0
	shift 4
	t0=$(now)
	timeout "$RUN_TIMEOUT" "$SMTP_SOURCE" "$@" -s "$s" -m "$m" -l "$SIZE" \
		-M "$HELO" -f "$SENDER" -t "$RCPT" "127.0.0.1:$port" >>"$log" 2>&1 || rc=$?
	ELAPSED=$(calc '%.3f' "$(now) - $t0")
	return "$rc"
}

[ "$(id -u)" = 0 ] || { err "needs root (Postfix's master; tests/lib/postfix-instance)"; exit 1; }
for c in "$SMTP_SOURCE" /usr/sbin/postfix; do
	[ -x "$c" ] || { err "$c missing (package postfix; tests/lib/install-deps)"; exit 1; }
done
command -v jq >/dev/null || { err "jq missing (tests/lib/install-deps)"; exit 1; }
[ -x "$MGATE" ] || { err "no mgate binary at $MGATE (run make)"; exit 1; }

W=$(mktemp -d "${TMPDIR:-/tmp}/mgate-bench.XXXXXX")
chmod 0711 "$W" # the postfix user must reach $W/pf
# Measure a private copy: a rebuild during the run must not break it.
cp "$MGATE" "$W/mgate"
MGATE=$W/mgate

# ---------------------------------------------------------------------------
# mgate: a gateway whose site `ship' has the domain ship.example.org.

if ! "$MGATE" keygen "$W/gw.key" >/dev/null || ! "$MGATE" keygen "$W/site.key" >/dev/null; then
	err "mgate keygen failed"
	exit 1
fi
write_gw_conf() { # PORT
	cat >"$W/gw.conf" <<EOF
role = gateway
spool_directory = $W/gw
myhostname = gw.example.net
mydomain = example.net
local_name = gw
log_destination = stderr
private_key = $W/gw.key
# Nothing leaves this machine: MX lookups go to a port where nobody answers.
dns_resolver = 127.0.0.1:9
smtpd_listen = 127.0.0.1:$1
message_size_limit = 10485760

[peer ship]
transport = file
public_key = $W/site.key.pub
domains = $DOMAIN
EOF
}
write_gw_conf 25
"$MGATE" -c "$W/gw.conf" init >/dev/null || { err "mgate init failed"; exit 1; }
MG_PORT=
for try in 1 2 3; do
	MG_PORT=$(free_port)
	write_gw_conf "$MG_PORT"
	"$MGATE" -c "$W/gw.conf" daemon 2>>"$W/gw.log" &
	DPID=$!
	if wait_until 10 port_open "$MG_PORT"; then
		break
	fi
	say "note: mgate's listener did not come up on $MG_PORT (try $try): $(tail -n 3 "$W/gw.log")"
	stop_daemon
	MG_PORT=
done
if [ -z "$MG_PORT" ]; then
	err "cannot start mgate daemon with its listener (see $W/gw.log)"
elif ! source_run "$W/source.mgate.log" "$MG_PORT" 5 "$WARMUP" ||
	! wait_until 10 count_is mg_count "$WARMUP"; then
	err "mgate: warm-up failed ($(mg_count) of $WARMUP stored); smtp-source said: $(tail -n 3 "$W/source.mgate.log")"
	tail -n 5 "$W/gw.log" >&2
else
	MG_OK=1
fi

# ---------------------------------------------------------------------------
# Postfix: the same domain, hold mode.

mkdir -p "$W/pf/conf"
PF_PORT=
for try in 1 2 3; do
	PF_PORT=$(free_port)
	if POSTFIX_INSTANCE_DOMAINS=$DOMAIN "$PFI" start "$W/pf" "$PF_PORT" hold; then
		PF_STARTED=1
		break
	fi
	PF_PORT=
done
if [ -z "$PF_PORT" ]; then
	err "could not start the Postfix instance"
elif ! source_run "$W/source.postfix.log" "$PF_PORT" 5 "$WARMUP" ||
	! wait_until 10 count_is pf_count "$WARMUP"; then
	err "Postfix: warm-up failed ($(pf_count) of $WARMUP held); smtp-source said: $(tail -n 3 "$W/source.postfix.log")"
else
	PF_OK=1
fi

say "smtp-source: $N messages per run, -l $SIZE (message body bytes), to <$RCPT>"
say "mgate:   $MGATE_BUILD/mgate daemon, listener on 127.0.0.1:${MG_PORT:-?}, spool $W/gw"
say "Postfix: $(postconf -dh mail_version 2>/dev/null || echo '?'), instance in hold mode on 127.0.0.1:${PF_PORT:-?}"
say "load before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------
# The runs.

declare -A MG_RATE PF_RATE MG_SEC PF_SEC MG_CPU PF_CPU
MG_TOTAL=$WARMUP PF_TOTAL=$WARMUP
for r in $RUNS; do
	s=${r%d}
	opt=()
	[ "$s" = "$r" ] || opt=(-d)
	if ! [[ $s =~ ^[0-9]+$ ]] || [ "$s" -lt 1 ]; then
		err "BENCH_RUNS: bad item '$r' (sessions, optionally followed by d)"
		continue
	fi
	if [ "$MG_OK" = 1 ]; then
		c0=$(mg_ticks)
		if source_run "$W/source.mgate.log" "$MG_PORT" "$s" "$N" "${opt[@]}"; then
			MG_SEC[$r]=$ELAPSED
			MG_TOTAL=$((MG_TOTAL + N))
			if wait_until 10 count_is mg_count "$MG_TOTAL"; then
				MG_RATE[$r]=$(calc '%.0f' "$N / $ELAPSED")
				sleep 1 # the last sessions exit and are reaped
				MG_CPU[$r]=$(calc '%.2f' "($(mg_ticks) - $c0) * 1000 / $HZ / $N")
			else
				err "mgate, -s $s ${opt[*]}: $(mg_count) messages in the spool, expected $MG_TOTAL"
				MG_TOTAL=$(mg_count)
			fi
		else
			err "mgate, -s $s ${opt[*]}: smtp-source failed after $ELAPSED s: $(tail -n 3 "$W/source.mgate.log")"
			MG_TOTAL=$(mg_count)
		fi
	fi
	if [ "$PF_OK" = 1 ]; then
		c0=$(pf_ticks)
		if source_run "$W/source.postfix.log" "$PF_PORT" "$s" "$N" "${opt[@]}"; then
			PF_SEC[$r]=$ELAPSED
			PF_TOTAL=$((PF_TOTAL + N))
			if wait_until 10 count_is pf_count "$PF_TOTAL"; then
				PF_RATE[$r]=$(calc '%.0f' "$N / $ELAPSED")
				sleep 1
				PF_CPU[$r]=$(calc '%.2f' "($(pf_ticks) - $c0) * 1000 / $HZ / $N")
			else
				err "Postfix, -s $s ${opt[*]}: $(pf_count) messages held, expected $PF_TOTAL"
				PF_TOTAL=$(pf_count)
			fi
		else
			err "Postfix, -s $s ${opt[*]}: smtp-source failed after $ELAPSED s: $(tail -n 3 "$W/source.postfix.log")"
			PF_TOTAL=$(pf_count)
		fi
	fi
	printf '  -s %-3s %-3s mgate %8s s %6s msg/s %5s ms CPU/msg   Postfix %8s s %6s msg/s %5s ms CPU/msg\n' \
		"$s" "${opt[*]}" "${MG_SEC[$r]:-n/a}" "${MG_RATE[$r]:-n/a}" "${MG_CPU[$r]:-n/a}" \
		"${PF_SEC[$r]:-n/a}" "${PF_RATE[$r]:-n/a}" "${PF_CPU[$r]:-n/a}"
done

# Every message the listener acknowledged is on mgate's queue, for the site.
if [ "$MG_OK" = 1 ]; then
	if listed=$("$MGATE" -c "$W/gw.conf" list --json 2>>"$W/gw.log" |
		jq --arg r "$RCPT" '[.[] | select(.via == "ship" and .recipients[0].address == $r)] | length'); then
		say "mgate list --json: $listed messages for site ship (expected $MG_TOTAL)"
		[ "$listed" = "$MG_TOTAL" ] || err "mgate lists $listed messages for the site, expected $MG_TOTAL"
	else
		err "mgate list --json failed"
	fi
fi
if grep -qiE 'assert|abort|segfault|sanitizer' "$W/gw.log"; then
	err "a crash in mgate's log ($W/gw.log)"
fi
say "load after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------
# Side by side.

say ""
say "=== inbound SMTP, $N messages per run, -l $SIZE, durable before 250 (messages/s)"
printf '%-26s %8s %8s %14s   %s\n' "smtp-source" "mgate" "Postfix" "mgate/Postfix" \
	"CPU ms/msg mgate, Postfix"
met=1
for r in $RUNS; do
	s=${r%d}
	if [ "$s" = "$r" ]; then label="-s $s (1 msg/connection)"; else label="-s $s -d (1 connection)"; fi
	ratio=n/a
	if [ -n "${MG_RATE[$r]:-}" ] && [ -n "${PF_RATE[$r]:-}" ]; then
		ratio=$(calc '%.2fx' "${MG_RATE[$r]} / ${PF_RATE[$r]}")
		[ "$(calc '%d' "${MG_RATE[$r]} >= ${PF_RATE[$r]}")" = 1 ] || met=0
	else
		met=0
	fi
	printf '%-26s %8s %8s %14s   %s, %s\n' "$label" "${MG_RATE[$r]:-n/a}" "${PF_RATE[$r]:-n/a}" "$ratio" \
		"${MG_CPU[$r]:-n/a}" "${PF_CPU[$r]:-n/a}"
done
if [ "$met" = 1 ]; then
	say "Target of issue 6 (mgate >= 1x Postfix at every level): met"
else
	say "Target of issue 6 (mgate >= 1x Postfix at every level): not met"
fi

say ""
if [ ${#errors[@]} -ne 0 ]; then
	say "bench/smtpd.sh: ${#errors[@]} problem(s):"
	printf '  - %s\n' "${errors[@]}"
	exit 1
fi
say "bench/smtpd.sh: all runs ran, every message stored"
