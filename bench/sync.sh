#!/usr/bin/env bash
# bench/sync.sh - `mgate sync` over a real slow link, side by side with the
# other ways of moving the same mail over the same link.
#
# Three network namespaces, site -- router -- gateway, joined by veth pairs
# (10.77.1.0/24 site side, 10.77.2.0/24 gateway side; these addresses exist
# only inside the namespaces made here, nothing can leave them).  The router
# shapes both of its egress interfaces with
#   tc qdisc add dev X root tbf rate 64kbit burst 1600 latency 2s
# and every veth end has gro/gso/tso off (TESTBED.md: shaping an endpoint's
# own egress makes the kernel abort connections).
#
# The mail: the first N (default 100) easy_ham corpus messages, sorted by
# name, mbox From line stripped.  "raw" is the sum of their sizes.
#
# Peers, one after the other over the same link, each from a fresh start:
#   1. mgate sync over SSH (libssh2 -> OpenSSH sshd -> forced `mgate serve`);
#      mail queued and picked up beforehand (not timed), then `mgate sync`
#      timed from start to exit; one that exits 75 runs again (at most 3),
#      and that counts as a problem.  The gateway's log goes to a file, not
#      back over the link (see the authorized_keys line below).
#   2. Postfix -> Postfix SMTP: a sending instance in the site namespace
#      (relayhost = [gateway]:25, plain SMTP, no TLS) and a receiving one in
#      the gateway namespace delivering to Maildir.  Mail is queued with
#      Postfix's sendmail and held by a header_checks HOLD (not timed);
#      timed from `postsuper -H ALL; postqueue -f` until all N are in the
#      Maildir.
#   3. NNCP: `nncp-exec gw sendmail RCPT` per message (not timed), then
#      `nncp-call` to an nncp-daemon in the gateway namespace (NNCPDEADLINE=60)
#      and `nncp-toss` there, timed until all N were handed to the exec
#      handler.  The call is ended once the site holds no packet for the
#      gateway any more (each confirmed by the far end).
#   4. `ssh -C` (OpenSSH client, same user and host keys, a port of the same
#      sshd whose authorized_keys has no forced command) of the concatenation
#      into `wc -c`.
#   5. gzip -9 of the concatenation through a plain TCP socket (socat), timed
#      until the receiver has every byte; plus the payload-only link time
#      (gzip bytes * 8 / rate).
#   cut: mgate sync again from fresh spools; when half (and, in a second
#      run, 80%) of the uncut run's wire bytes have crossed, the router
#      answers every TCP segment with a reset (iptables REJECT --reject-with
#      tcp-reset) for 2 s; then `mgate sync` runs again (as a link-up hook
#      would) until it exits 0.  Total time and wire bytes versus the uncut
#      run, how many bytes the gateway had on disk, where the sync resumed.
#
# Wire bytes: the tx counters of the router's two egress interfaces, i.e.
# what crossed the shaped link in both directions (Ethernet/IP/TCP headers
# and retransmissions included, packets the shaper dropped not), read before
# and after each peer, the same way for every peer.
#
# Needs root (namespaces, tc, iptables, sshd, Postfix), and the packages
# openssh-server, postfix, nncp, socat, ethtool, iproute2, iptables, jq
# (missing ones are installed with apt-get when root; a peer that still
# cannot run prints "n/a (reason)").
#
# Environment: MGATE_BUILD (default REPO/build), MGATE_CORPUS, BENCH_N
# (default 100), BENCH_RATE (default 64kbit), BENCH_NO_INSTALL=1 (never call
# apt-get), BENCH_PEERS (default "mgate cut postfix nncp sshc gzip": which
# to run), BENCH_CUTS (default "0.5 0.8": where to cut), MGATE_SYNC_FLAGS and
# MGATE_SERVE_FLAGS (extra flags for the site's and the gateway's mgate,
# e.g. -v; the gateway logs to WORKDIR/serve.log), BENCH_TRACE=1 (wire bytes
# and the gateway's partial bundle once a second during the mgate run),
# MGATE_KEEP=1 keeps the work directory.  About 4 minutes.
# Exit status: 0 when every peer ran, 1 otherwise (figures still printed).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
MGATE_BUILD=${MGATE_BUILD:-$REPO/build}
MGATE=$MGATE_BUILD/mgate
CORPUS=${MGATE_CORPUS:-$REPO/../shared/corpus/spamassassin-public}
N=${BENCH_N:-100}
RATE=${BENCH_RATE:-64kbit}
RCPT=bench@example.net
SENDER=bench@ship.example.org
STEP_TIMEOUT=180 # seconds, for any one transfer
CUT_SECONDS=2

# Private addresses that exist only inside the namespaces made below.
A_SITE=10.77.1.1 A_RSITE=10.77.1.254
A_GW=10.77.2.1 A_RGW=10.77.2.254
NS_SITE=mgb$$-site NS_RTR=mgb$$-rtr NS_GW=mgb$$-gw
SSH_PORT=22 SSH_PLAIN_PORT=2200 NNCP_PORT=5400 GZ_PORT=5401

say() { printf '%s\n' "$*"; }
BENCH_PEERS=${BENCH_PEERS:-mgate cut postfix nncp sshc gzip}
want() { [[ " $BENCH_PEERS " == *" $1 "* ]]; }
skipped() { # PEER
	R_NA[$1]="not run (BENCH_PEERS)"
	say "  skipped (BENCH_PEERS=$BENCH_PEERS)"
}
errors=()
err() {
	printf 'ERROR: %s\n' "$*" >&2
	errors+=("$*")
}
die() {
	err "$*"
	exit 1
}
now() { printf '%s\n' "$EPOCHREALTIME"; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
in_site() { ip netns exec "$NS_SITE" "$@"; }
in_rtr() { ip netns exec "$NS_RTR" "$@"; }
in_gw() { ip netns exec "$NS_GW" "$@"; }

# ---------------------------------------------------------------------------
# Cleanup: every process started here lives in one of our namespaces (or is
# a child of this shell), every iptables rule in the router namespace.

W=
NS_MADE=()
PF_DIRS=()  # Postfix instances started
CUT_RULE=0  # the reset rule is in place

cleanup() {
	local rc=$? ns p d pids
	set +e
	trap '' INT TERM
	if [ "$CUT_RULE" = 1 ]; then
		in_rtr iptables -D FORWARD -p tcp -j REJECT --reject-with tcp-reset 2>/dev/null
		CUT_RULE=0
	fi
	for d in "${PF_DIRS[@]}"; do
		pf_stop "$d"
	done
	# Background jobs of this shell that still run (no PID that may have
	# been reused).
	for p in $(jobs -p); do
		kill "$p" 2>/dev/null
	done
	for p in "$W"/*.pid; do
		[ -r "$p" ] && kill "$(cat "$p")" 2>/dev/null
	done
	# Whatever is left in our namespaces (sshd sessions, mgate serve, Postfix
	# daemons, nncp): by PID, namespace by namespace.
	for ns in "${NS_MADE[@]}"; do
		pids=$(ip netns pids "$ns" 2>/dev/null)
		[ -n "$pids" ] && kill $pids 2>/dev/null
	done
	sleep 0.3
	for ns in "${NS_MADE[@]}"; do
		pids=$(ip netns pids "$ns" 2>/dev/null)
		[ -n "$pids" ] && kill -KILL $pids 2>/dev/null
	done
	for ns in "${NS_MADE[@]}"; do
		[ "$ns" = "$NS_RTR" ] && ip netns exec "$ns" iptables -F FORWARD 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
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

# Poll CMD every 50 ms for at most SECONDS.
wait_for() { # SECONDS CMD...
	local limit=$1 t0
	shift
	t0=$SECONDS
	until "$@"; do
		[ $((SECONDS - t0)) -lt "$limit" ] || return 1
		sleep 0.05
	done
}

# ---------------------------------------------------------------------------
# Prerequisites.

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, tc, iptables, sshd, Postfix)"
[ -x "$MGATE" ] || die "no mgate binary at $MGATE (run make)"

# Install what is missing (package:command), unless told not to.
need_pkgs=()
for pc in iproute2:ip iptables:iptables ethtool:ethtool socat:socat nncp:nncp-call \
	openssh-server:sshd openssh-client:ssh postfix:postfix bsdutils:script jq:jq; do
	command -v "${pc#*:}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pc#*:}" ] || need_pkgs+=("${pc%%:*}")
done
if [ ${#need_pkgs[@]} -ne 0 ]; then
	if [ "${BENCH_NO_INSTALL:-0}" = 1 ]; then
		say "missing packages (BENCH_NO_INSTALL=1, not installing): ${need_pkgs[*]}"
	else
		say "installing missing packages: ${need_pkgs[*]}"
		case " ${need_pkgs[*]} " in *" postfix "*)
			need_pkgs+=(bsd-mailx)
			debconf-set-selections <<-'EOF'
				postfix postfix/main_mailer_type select No configuration
				postfix postfix/mailname string mgate-test.invalid
			EOF
			;;
		esac
		policy_made=0
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod 0755 /usr/sbin/policy-rc.d
			policy_made=1
		fi
		{ timeout 300 apt-get -q update && DEBIAN_FRONTEND=noninteractive timeout 300 \
			apt-get -q -y -o DPkg::Lock::Timeout=120 install "${need_pkgs[@]}"; } \
			>/tmp/mgate-bench-apt.$$.log 2>&1 ||
			say "apt-get failed (see /tmp/mgate-bench-apt.$$.log); going on with what is there"
		[ "$policy_made" = 1 ] && rm -f /usr/sbin/policy-rc.d
	fi
fi
for c in ip tc iptables ethtool; do
	command -v "$c" >/dev/null || die "$c is missing"
done

W=$(mktemp -d /tmp/mgate-bsync.XXXXXX)
chmod 0711 "$W" # Postfix's users must reach their directories under $W
# A copy of the binary, so that a rebuild during the run (make in the same
# tree) cannot mix two versions of mgate on one spool.
cp "$MGATE" "$W/mgate"
MGATE=$W/mgate

# ---------------------------------------------------------------------------
# The corpus.

[ -d "$CORPUS/easy_ham" ] || die "no corpus at $CORPUS/easy_ham (set MGATE_CORPUS)"
mkdir "$W/msgs"
mapfile -t names < <(LC_ALL=C find "$CORPUS/easy_ham" -maxdepth 1 -type f -printf '%f\n' | LC_ALL=C sort | head -n "$N")
[ "${#names[@]}" = "$N" ] || die "only ${#names[@]} easy_ham messages, need $N"
for name in "${names[@]}"; do
	LC_ALL=C sed '1{/^From /d}' "$CORPUS/easy_ham/$name" >"$W/msgs/$name"
done
MSGS=("$W"/msgs/*)
cat "${MSGS[@]}" >"$W/concat"
RAW=$(stat -c %s "$W/concat")
say "corpus: first $N of easy_ham (From line stripped), $RAW bytes raw"

# ---------------------------------------------------------------------------
# The link: site [s0] -- [r0] router [r1] -- [g0] gateway.

for ns in "$NS_SITE" "$NS_RTR" "$NS_GW"; do
	ip netns add "$ns"
	NS_MADE+=("$ns")
	# No IPv6: no neighbour discovery or MLD chatter in the counters.
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	ip netns exec "$ns" ip link set lo up
done
ip link add s0 netns "$NS_SITE" type veth peer name r0 netns "$NS_RTR"
ip link add g0 netns "$NS_GW" type veth peer name r1 netns "$NS_RTR"
in_site ip addr add "$A_SITE/24" dev s0
in_rtr ip addr add "$A_RSITE/24" dev r0
in_rtr ip addr add "$A_RGW/24" dev r1
in_gw ip addr add "$A_GW/24" dev g0
for d in "$NS_SITE:s0" "$NS_RTR:r0" "$NS_RTR:r1" "$NS_GW:g0"; do
	ip netns exec "${d%%:*}" ethtool -K "${d#*:}" gro off gso off tso off >/dev/null 2>&1 ||
		die "ethtool -K ${d#*:} gro off gso off tso off failed"
	ip netns exec "${d%%:*}" ip link set "${d#*:}" up
done
in_site ip route add 10.77.2.0/24 via "$A_RSITE"
in_gw ip route add 10.77.1.0/24 via "$A_RGW"
in_rtr sysctl -qw net.ipv4.ip_forward=1
for d in r0 r1; do
	in_rtr tc qdisc add dev "$d" root tbf rate "$RATE" burst 1600 latency 2s
done
say "link: $NS_SITE $A_SITE -- $NS_RTR (tbf $RATE both ways) -- $NS_GW $A_GW"

# Wire counters: what left the router through the shaped link, i.e. the tx
# counters of its two egress interfaces: r1 (towards the gateway) is the
# upload, r0 (towards the site) the download.  Packets the shaper dropped
# never crossed the slow link and are not counted; retransmissions are.
counter() { # up|down
	local d=r1
	[ "$1" = up ] || d=r0
	in_rtr cat "/sys/class/net/$d/statistics/tx_bytes"
}
tc_drops() { # total packets dropped by both shapers so far
	in_rtr tc -s qdisc show | awk '/dropped/ { sub(",", "", $7); n += $7 } END { print n + 0 }'
}
WIRE0_UP=0 WIRE0_DOWN=0 DROPS0=0
wire_start() {
	sleep 1 # let the previous peer's last packets drain
	WIRE0_UP=$(counter up)
	WIRE0_DOWN=$(counter down)
	DROPS0=$(tc_drops)
}
wire_now() { echo $(($(counter up) + $(counter down) - WIRE0_UP - WIRE0_DOWN)); }
wire_stop() { # sets W_UP W_DOWN W_TOTAL W_DROPS
	sleep 0.3 # the last ACKs
	W_UP=$(($(counter up) - WIRE0_UP))
	W_DOWN=$(($(counter down) - WIRE0_DOWN))
	W_TOTAL=$((W_UP + W_DOWN))
	W_DROPS=$(($(tc_drops) - DROPS0))
}

# Results, by peer key.
declare -A R_WIRE R_UP R_DOWN R_TIME R_NA R_NOTE R_DROPS
PEERS=(mgate postfix nncp sshc gzip)
declare -A LABEL=(
	[mgate]="mgate sync (SSH)"
	[postfix]="Postfix -> Postfix SMTP"
	[nncp]="NNCP exec + call"
	[sshc]="ssh -C of the concat"
	[gzip]="gzip -9 at link rate"
)
# Measured when issue 4 was written, for orientation (wire KB, seconds).
declare -A ORIENT=(
	[postfix]="~462 KB, ~53 s" [nncp]="~346 KB, ~40 s" [sshc]="~115 KB, ~13 s" [gzip]="~11.9 s"
)
record() { # PEER SECONDS [NOTE]
	R_WIRE[$1]=$W_TOTAL R_UP[$1]=$W_UP R_DOWN[$1]=$W_DOWN R_TIME[$1]=$2
	R_NOTE[$1]=${3:-} R_DROPS[$1]=$W_DROPS
	say "  ${LABEL[$1]}: $W_TOTAL wire bytes ($W_UP up, $W_DOWN down), $2 s, $W_DROPS packets dropped by the shapers"
}
na() { # PEER REASON
	R_NA[$1]=$2
	err "${LABEL[$1]}: $2"
}

# ---------------------------------------------------------------------------
# SSH: one sshd in the gateway namespace.  Port 22: the site key's forced
# command is `mgate serve`.  Port 2200: the same host and user keys, no
# forced command (the ssh -C peer).

ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$W/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C bench-site -f "$W/id_ed25519"
hostkey=$(cut -d' ' -f1,2 "$W/host_ed25519.pub")
{
	echo "$A_GW $hostkey"
	echo "[$A_GW]:$SSH_PLAIN_PORT $hostkey"
} >"$W/known_hosts"
printf 'restrict %s\n' "$(cat "$W/id_ed25519.pub")" >"$W/authorized_keys_plain"

mgate_confs() {
	cat >"$W/gw.conf" <<-EOF
		spool_directory = $W/mg-gw
		myhostname = gw.example.net
		local_name = gw
		# stderr, which the forced command below sends to a file: left to
		# itself, sshd would carry mgate serve's log lines back over the
		# slow link inside the SSH channel.
		log_destination = stderr
		private_key = $W/gw.key
		[peer ship]
		transport = file
		public_key = $W/site.key.pub
	EOF
	cat >"$W/site.conf" <<-EOF
		spool_directory = $W/mg-site
		myhostname = ship.example.org
		local_name = ship
		log_destination = stderr
		private_key = $W/site.key
		pickup_after_queue = no
		[peer gw]
		transport = ssh
		host = $A_GW
		port = $SSH_PORT
		user = root
		identity_file = $W/id_ed25519
		known_hosts = $W/known_hosts
		public_key = $W/gw.key.pub
		io_timeout = 5m
	EOF
}

MGATE_OK=0
mkdir -p /run/sshd
if "$MGATE" keygen "$W/site.key" >/dev/null && "$MGATE" keygen "$W/gw.key" >/dev/null; then
	mgate_confs
	if "$MGATE" -c "$W/gw.conf" authorized-key --peer ship "$W/id_ed25519.pub" >"$W/authorized_keys.mgate"; then
		MGATE_OK=1
		# The gateway's log to a file (sshd runs the command with sh -c).
		sed "s|serve --peer ship\"|${MGATE_SERVE_FLAGS:+$MGATE_SERVE_FLAGS }serve --peer ship 2>>$W/serve.log\"|" \
			"$W/authorized_keys.mgate" >"$W/authorized_keys"
		grep -q 'serve.log' "$W/authorized_keys" || { err "unexpected authorized-key line: $(cat "$W/authorized_keys.mgate")"; MGATE_OK=0; }
	else
		err "mgate authorized-key failed"
	fi
else
	err "mgate keygen failed"
fi
[ -s "$W/authorized_keys" ] || : >"$W/authorized_keys"
cat >"$W/sshd_config" <<EOF
Port $SSH_PORT
Port $SSH_PLAIN_PORT
ListenAddress $A_GW
HostKey $W/host_ed25519
AuthorizedKeysFile $W/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
UseDNS no
PidFile $W/sshd.pid
Match LocalPort $SSH_PLAIN_PORT
	AuthorizedKeysFile $W/authorized_keys_plain
EOF
SSHD_OK=0
if in_gw /usr/sbin/sshd -f "$W/sshd_config" -E "$W/sshd.log" &&
	wait_for 10 in_gw sh -c "ss -Hltn 'sport = :$SSH_PORT' | grep -q . && ss -Hltn 'sport = :$SSH_PLAIN_PORT' | grep -q ."; then
	SSHD_OK=1
else
	err "sshd did not start in $NS_GW (see $W/sshd.log)"
	tail -n 5 "$W/sshd.log" >&2 2>/dev/null || true
fi

# Fresh spools at both ends, N messages queued and picked up at the site.
gw_idle() { # no mgate process left in the gateway namespace
	[ -z "$(ip netns pids "$NS_GW" | xargs -r ps -o comm= -p | grep -x mgate)" ]
}
mgate_prepare() {
	wait_for 10 gw_idle || err "an mgate process still runs at the gateway"
	rm -rf "$W/mg-gw" "$W/mg-site"
	timeout 60 "$MGATE" -c "$W/gw.conf" init >/dev/null 2>>"$W/mgate.log" &&
		timeout 60 "$MGATE" -c "$W/site.conf" init >/dev/null 2>>"$W/mgate.log" || return 1
	local f
	for f in "${MSGS[@]}"; do
		timeout 30 "$MGATE" -c "$W/site.conf" queue -i -f "$SENDER" -- "$RCPT" <"$f" 2>>"$W/mgate.log" || return 1
	done
	timeout 120 "$MGATE" -c "$W/site.conf" pickup 2>>"$W/mgate.log"
}

# Did every message arrive, once?  Compares the sizes of what the gateway
# holds with what the site queued (mgate list --json at both ends).  Prints
# nothing when they match, else what is wrong.
gw_check() {
	local g s
	g=$(timeout 60 "$MGATE" -c "$W/gw.conf" list --json 2>/dev/null | jq -r '.[].size' 2>/dev/null | sort -n) ||
		{ echo "mgate list --json failed at the gateway"; return; }
	s=$(timeout 60 "$MGATE" -c "$W/site.conf" list --json 2>/dev/null | jq -r '.[].size' 2>/dev/null | sort -n)
	if [ "$(printf '%s\n' "$g" | grep -c .)" != "$N" ]; then
		echo "the gateway holds $(printf '%s\n' "$g" | grep -c .) messages, expected $N"
	elif [ "$g" != "$s" ]; then
		echo "the sizes of the messages at the gateway differ from the site's"
	fi
}

part_sizes() { # bytes in the gateway's unfinished bundle files
	local p n=0
	for p in "$W"/mg-gw/incoming/*.part; do
		[ -e "$p" ] && n=$((n + $(stat -c %s "$p")))
	done
	echo "$n"
}

MG_LINE=
say ""
say "=== 1. mgate sync over SSH"
if ! want mgate; then
	skipped mgate
elif [ "$MGATE_OK" = 0 ] || [ "$SSHD_OK" = 0 ]; then
	na mgate "setup failed (see errors)"
elif ! mgate_prepare; then
	na mgate "queueing at the site failed: $(tail -n 1 "$W/mgate.log")"
else
	# As a link-up hook would: `mgate sync`, and again while it exits 75
	# (EX_TEMPFAIL: link failure) - at most 3 times.  Any failed attempt is
	# reported: on this link nothing should fail.
	wire_start
	t0=$(now)
	attempts=0 rc=1 MG_FAILS=()
	if [ "${BENCH_TRACE:-0}" = 1 ]; then
		# Once a second: wire bytes so far, bytes on the gateway's disk.
		(while sleep 1; do
			say "    trace: $(calc '%.1f' "$(now) - $t0") s: $(wire_now) wire bytes," \
				"gateway .part $(part_sizes) bytes, $(ls "$W/mg-gw/queue" 2>/dev/null | wc -l) messages in its queue"
		done) &
		tracer=$!
	fi
	while [ "$attempts" -lt 3 ]; do
		attempts=$((attempts + 1))
		rc=0
		in_site timeout "$STEP_TIMEOUT" "$MGATE" ${MGATE_SYNC_FLAGS:-} -c "$W/site.conf" sync \
			>"$W/sync.out.$attempts" 2>"$W/sync.err.$attempts" || rc=$?
		cat "$W/sync.err.$attempts" >>"$W/mgate.log"
		MG_LINE=$(tail -n 1 "$W/sync.out.$attempts")
		say "  sync $attempts (exit $rc, after $(calc '%.2f' "$(now) - $t0") s): $MG_LINE"
		grep -o 'resuming at byte [0-9]* of [0-9]*' "$W/sync.err.$attempts" | sed 's/^/    /' || true
		[ "$rc" = 0 ] && break
		MG_FAILS+=("sync $attempts exited $rc: $(grep -v '^mgate/[a-z]*: debug:' "$W/sync.err.$attempts" | tail -n 1)")
		say "    ${MG_FAILS[-1]}"
		grep 'debug: ssh' "$W/sync.err.$attempts" | sed 's/^/    /' || true
		[ "$rc" = 75 ] || break
		sleep 0.2
	done
	t1=$(now)
	[ -z "${tracer:-}" ] || kill "$tracer" 2>/dev/null || true
	wire_stop
	if [ "$rc" != 0 ]; then
		na mgate "no successful sync in $attempts attempts: ${MG_FAILS[-1]}"
	else
		note=
		if [ "$attempts" -gt 1 ]; then
			note="$attempts syncs, figures are their sum"
			for f in "${MG_FAILS[@]}"; do err "mgate, uncut link: $f"; done
		fi
		bad=$(gw_check)
		if [ -n "$bad" ]; then
			note="${note:+$note; }$bad"
			err "mgate: $bad"
		fi
		record mgate "$(calc '%.2f' "$t1 - $t0")" "$note"
	fi
fi

# ---------------------------------------------------------------------------
# The cut variant.

# cut_run FRACTION: fresh spools, `mgate sync`; once FRACTION of the uncut
# run's wire bytes have crossed, the router resets every TCP segment for
# CUT_SECONDS; then `mgate sync` again (as the link-up hook would) until one
# exits 0, at most 5 syncs.  Sets C_*[FRACTION].
declare -A C_WIRE C_UP C_DOWN C_DROPS C_TIME C_NOTE C_RESUME

cut_run() {
	local frac=$1 at attempts=0 rc=1 cut_done=0 spid t0 t1 tcut bad f
	say ""
	say "=== 1b. mgate sync, link cut (tcp-reset for ${CUT_SECONDS} s) at $(calc '%.0f' "$frac * 100")% of the uncut wire bytes"
	if ! mgate_prepare; then
		C_NOTE[$frac]="n/a (preparing the spools failed: $(tail -n 1 "$W/mgate.log"))"
		err "cut variant: ${C_NOTE[$frac]}"
		return
	fi
	at=$(calc '%d' "${R_WIRE[mgate]} * $frac")
	wire_start
	t0=$(now)
	while [ "$attempts" -lt 5 ]; do
		attempts=$((attempts + 1))
		f=$W/cut.$frac.$attempts
		in_site timeout "$STEP_TIMEOUT" "$MGATE" ${MGATE_SYNC_FLAGS:-} -c "$W/site.conf" sync \
			>"$f.out" 2>"$f.err" &
		spid=$!
		if [ "$cut_done" = 0 ]; then
			while kill -0 "$spid" 2>/dev/null; do
				if [ "$(wire_now)" -ge "$at" ]; then
					in_rtr iptables -I FORWARD -p tcp -j REJECT --reject-with tcp-reset
					CUT_RULE=1
					tcut=$(now)
					say "  cut at $(calc '%.2f' "$tcut - $t0") s, $(wire_now) wire bytes in, for ${CUT_SECONDS} s;" \
						"the gateway has $(part_sizes) bytes of the bundle on disk"
					sleep "$CUT_SECONDS"
					in_rtr iptables -D FORWARD -p tcp -j REJECT --reject-with tcp-reset
					CUT_RULE=0
					cut_done=1
					break
				fi
				sleep 0.05
			done
		fi
		rc=0
		wait "$spid" || rc=$?
		cat "$f.err" >>"$W/mgate.log"
		say "  sync $attempts (exit $rc, after $(calc '%.2f' "$(now) - $t0") s): $(tail -n 1 "$f.out" 2>/dev/null)"
		if grep -q 'resuming at byte' "$f.err"; then
			C_RESUME[$frac]=$(grep -o 'resuming at byte [0-9]* of [0-9]*' "$f.err" | head -n 1)
			say "    ${C_RESUME[$frac]}"
		fi
		if [ "$rc" != 0 ]; then
			say "    $(grep -v ': debug:' "$f.err" | tail -n 1)"
			grep 'debug: ssh' "$f.err" | sed 's/^/    /' || true
			# What the gateway kept of the unfinished bundle.
			wait_for 10 gw_idle || true
			say "    the gateway kept $(part_sizes) bytes of the bundle"
		fi
		[ "$rc" = 0 ] && break
		sleep 0.2
	done
	t1=$(now)
	wire_stop
	if [ "$rc" = 0 ]; then
		C_TIME[$frac]=$(calc '%.2f' "$t1 - $t0")
		C_WIRE[$frac]=$W_TOTAL C_UP[$frac]=$W_UP C_DOWN[$frac]=$W_DOWN C_DROPS[$frac]=$W_DROPS
		C_NOTE[$frac]="$attempts syncs"
		[ -n "${C_RESUME[$frac]:-}" ] || C_NOTE[$frac]+=", no resume (started again at byte 0)"
		[ "$cut_done" = 1 ] || C_NOTE[$frac]+=", the transfer ended before the cut point"
		bad=$(gw_check)
		if [ -n "$bad" ]; then
			C_NOTE[$frac]+="; $bad"
			err "cut variant: $bad"
		fi
		say "  total: $W_TOTAL wire bytes ($W_UP up, $W_DOWN down) in ${C_TIME[$frac]} s"
	else
		C_NOTE[$frac]="n/a (no successful sync in $attempts attempts)"
		err "cut variant at $frac: ${C_NOTE[$frac]}"
	fi
}

CUTS=${BENCH_CUTS:-0.5 0.8}
if ! want cut; then
	:
elif [ -z "${R_WIRE[mgate]:-}" ]; then
	for c in $CUTS; do C_NOTE[$c]="n/a (the uncut run did not succeed)"; done
else
	for c in $CUTS; do cut_run "$c"; done
fi

# ---------------------------------------------------------------------------
# 2. Postfix -> Postfix.

PF_DAEMON_DIR=$(postconf -dh daemon_directory 2>/dev/null || echo /usr/lib/postfix/sbin)
pf_cmd() { # NS postfix-args...  (a pty: `postfix` tells errors only to syslog otherwise)
	local ns=$1 cmd out rc=0
	shift
	printf -v cmd '%q ' "$@"
	out=$(ip netns exec "$ns" timeout 60 script -qfec "$cmd" /dev/null </dev/null 2>&1) || rc=$?
	[ "$rc" = 0 ] || printf '%s\n' "${out//$'\r'/}" >&2
	return "$rc"
}
pf_master_pid() { # DIR
	local pid
	[ -r "$1/queue/pid/master.pid" ] || return 1
	read -r pid <"$1/queue/pid/master.pid" || return 1
	[ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$PF_DAEMON_DIR/master" ] &&
		printf '%s\n' "$pid"
}
pf_stop() { # DIR
	local dir=$1 pid ns
	pid=$(pf_master_pid "$dir") || return 0
	ns=$(cat "$dir/ns")
	pf_cmd "$ns" postfix -c "$dir/conf" stop >/dev/null 2>&1 || kill "$pid" 2>/dev/null
	wait_for 10 sh -c "! kill -0 $pid 2>/dev/null" || kill -KILL "$pid" 2>/dev/null
}
# pf_setup DIR NS ROLE: write a self-contained instance (TESTBED.md).
pf_setup() {
	local dir=$1 ns=$2 role=$3
	mkdir -p "$dir/conf" "$dir/queue" "$dir/data" "$dir/mail" "$dir/log"
	chmod 0755 "$dir" "$dir/conf" "$dir/queue" "$dir/mail" "$dir/log"
	chown postfix: "$dir/data"
	chown nobody:nogroup "$dir/mail"
	echo "$ns" >"$dir/ns"
	cat >"$dir/conf/main.cf" <<-EOF
		compatibility_level = 3.6
		queue_directory = $dir/queue
		data_directory = $dir/data
		mail_owner = postfix
		setgid_group = postdrop
		syslog_name = mgb-$role
		maillog_file = $dir/log/maillog
		maillog_file_prefixes = /var, /dev/stdout, $dir
		readme_directory = no
		biff = no
		inet_protocols = ipv4
		mynetworks = 127.0.0.0/8
		mydestination =
		append_dot_mydomain = no
		smtp_dns_support_level = disabled
		local_transport = error:5.1.1 no local delivery
		local_recipient_maps =
		alias_maps =
		alias_database =
		relay_domains =
		smtpd_peername_lookup = no
		smtpd_relay_restrictions = reject_unauth_destination
		message_size_limit = 52428800
	EOF
	if [ "$role" = send ]; then
		cat >>"$dir/conf/main.cf" <<-EOF
			myhostname = ship.example.org
			inet_interfaces = loopback-only
			relayhost = [$A_GW]:25
			default_transport = smtp
			# every message is held until the timed release
			header_checks = regexp:$dir/conf/hold_checks
		EOF
		echo '/^/ HOLD held until the timed release' >"$dir/conf/hold_checks"
	else
		cat >>"$dir/conf/main.cf" <<-EOF
			myhostname = gw.example.net
			inet_interfaces = $A_GW
			default_transport = error:5.7.1 no relaying
			relay_transport = \$default_transport
			virtual_mailbox_domains = example.net
			virtual_mailbox_maps = texthash:$dir/conf/vmailbox
			virtual_mailbox_base = $dir/mail
			virtual_uid_maps = static:$(id -u nobody)
			virtual_gid_maps = static:$(id -g nobody)
			virtual_mailbox_limit = 0
		EOF
		echo "$RCPT example.net/bench/" >"$dir/conf/vmailbox"
	fi
	{
		[ "$role" = recv ] && echo "smtp      inet  n       -       n       -       -       smtpd"
		cat <<-EOF
			pickup    unix  n       -       n       60      1       pickup
			cleanup   unix  n       -       n       -       0       cleanup
			qmgr      unix  n       -       n       300     1       qmgr
			tlsmgr    unix  -       -       n       1000?   1       tlsmgr
			rewrite   unix  -       -       n       -       -       trivial-rewrite
			bounce    unix  -       -       n       -       0       bounce
			defer     unix  -       -       n       -       0       bounce
			trace     unix  -       -       n       -       0       bounce
			verify    unix  -       -       n       -       1       verify
			flush     unix  n       -       n       1000?   0       flush
			proxymap  unix  -       -       n       -       -       proxymap
			proxywrite unix -       -       n       -       1       proxymap
			smtp      unix  -       -       n       -       -       smtp
			relay     unix  -       -       n       -       -       smtp
			showq     unix  n       -       n       -       -       showq
			error     unix  -       -       n       -       -       error
			retry     unix  -       -       n       -       -       error
			discard   unix  -       -       n       -       -       discard
			local     unix  -       n       n       -       -       local
			virtual   unix  -       n       n       -       -       virtual
			anvil     unix  -       -       n       -       1       anvil
			scache    unix  -       -       n       -       1       scache
			postlog   unix-dgram n  -       n       -       1       postlogd
		EOF
	} >"$dir/conf/master.cf"
	# Postfix commands wait for a main.cf younger than a second or so.
	touch -d "@$(($(date +%s) - 2))" "$dir/conf/main.cf" "$dir/conf/master.cf"
	PF_DIRS+=("$dir")
	pf_cmd "$ns" postfix -c "$dir/conf" start >/dev/null &&
		wait_for 10 pf_master_pid "$dir" >/dev/null
}
count_files() { find "$@" -type f 2>/dev/null | wc -l; }

say ""
say "=== 2. Postfix -> Postfix over SMTP"
PFS=$W/pfs PFR=$W/pfr
if ! want postfix; then
	skipped postfix
elif ! command -v postfix >/dev/null || [ -L /usr/sbin/sendmail ] || ! dpkg -S /usr/sbin/sendmail 2>/dev/null | grep -q '^postfix:'; then
	na postfix "Postfix (and its sendmail) is not installed"
elif ! pf_setup "$PFR" "$NS_GW" recv; then
	na postfix "the receiving Postfix did not start (see $PFR/log/maillog)"
elif ! wait_for 10 in_gw sh -c "ss -Hltn 'sport = :25' | grep -q ."; then
	na postfix "the receiving Postfix does not listen on $A_GW:25"
elif ! pf_setup "$PFS" "$NS_SITE" send; then
	na postfix "the sending Postfix did not start (see $PFS/log/maillog)"
else
	fails=0
	for f in "${MSGS[@]}"; do
		in_site timeout 30 /usr/sbin/sendmail -C "$PFS/conf" -i -f "$SENDER" -- "$RCPT" <"$f" 2>>"$W/postfix.log" ||
			fails=$((fails + 1))
	done
	if [ "$fails" != 0 ]; then
		na postfix "Postfix's sendmail failed for $fails messages"
	elif ! wait_for 60 eval 'test "$(count_files "$PFS/queue/hold")" -ge "$N"'; then
		na postfix "only $(count_files "$PFS/queue/hold") of $N messages reached the sender's hold queue"
	else
		wire_start
		t0=$(now)
		in_site timeout 30 postsuper -c "$PFS/conf" -H ALL 2>>"$W/postfix.log" &&
			in_site timeout 30 postqueue -c "$PFS/conf" -f 2>>"$W/postfix.log" ||
			err "Postfix: releasing the held mail failed: $(tail -n 1 "$W/postfix.log")"
		maildir=$PFR/mail/example.net/bench
		if wait_for "$STEP_TIMEOUT" eval 'test "$(count_files "$maildir/new")" -ge "$N"'; then
			t1=$(now)
			wire_stop
			record postfix "$(calc '%.2f' "$t1 - $t0")" "plain SMTP, no TLS"
		else
			wire_stop
			na postfix "only $(count_files "$maildir/new") of $N in the Maildir after $STEP_TIMEOUT s"
		fi
	fi
fi
for d in "$PFS" "$PFR"; do pf_stop "$d"; done
PF_DIRS=()

# ---------------------------------------------------------------------------
# 3. NNCP.

say ""
say "=== 3. NNCP (nncp-exec + nncp-call)"
nncp_keys() { # CFGNEW-OUTPUT: print the key lines of the top-level self block
	awk '/^  self: \{/ { f = 1; next } f && /^  \}/ { exit }
		f && /^ *(id|exchpub|exchprv|signpub|signprv|noiseprv|noisepub):/ { print }' "$1"
}
nncp_pub() { grep -E '^ *(id|exchpub|signpub|noisepub):' "$1"; }
NN=$W/nncp
if ! want nncp; then
	skipped nncp
elif ! command -v nncp-call >/dev/null; then
	na nncp "nncp is not installed"
elif ! mkdir -p "$NN/site/spool" "$NN/gw/spool" "$NN/inbox" ||
	! nncp-cfgnew -nocomments >"$NN/site.new" 2>/dev/null ||
	! nncp-cfgnew -nocomments >"$NN/gw.new" 2>/dev/null; then
	na nncp "nncp-cfgnew failed"
else
	nncp_keys "$NN/site.new" >"$NN/site.keys"
	nncp_keys "$NN/gw.new" >"$NN/gw.keys"
	nncp_pub "$NN/site.keys" >"$NN/site.pub"
	nncp_pub "$NN/gw.keys" >"$NN/gw.pub"
	# The exec handler at the gateway: one file per message.
	cat >"$NN/deliver" <<-EOF
		#!/bin/sh
		exec cat >"\$(mktemp "$NN/inbox/msg.XXXXXX")"
	EOF
	chmod 0755 "$NN/deliver"
	cat >"$NN/site.hjson" <<-EOF
		{
		  spool: $NN/site/spool
		  log: $NN/site/log
		  self: {
		$(cat "$NN/site.keys")
		  }
		  neigh: {
		    self: {
		$(cat "$NN/site.pub")
		    }
		    gw: {
		$(cat "$NN/gw.pub")
		      addrs: {main: "$A_GW:$NNCP_PORT"}
		    }
		  }
		}
	EOF
	cat >"$NN/gw.hjson" <<-EOF
		{
		  spool: $NN/gw/spool
		  log: $NN/gw/log
		  self: {
		$(cat "$NN/gw.keys")
		  }
		  neigh: {
		    self: {
		$(cat "$NN/gw.pub")
		    }
		    ship: {
		$(cat "$NN/site.pub")
		      exec: {sendmail: ["$NN/deliver"]}
		    }
		  }
		}
	EOF
	fails=0
	for f in "${MSGS[@]}"; do
		timeout 30 nncp-exec -cfg "$NN/site.hjson" -quiet gw sendmail "$RCPT" <"$f" 2>>"$NN/exec.log" ||
			fails=$((fails + 1))
	done
	if [ "$fails" != 0 ]; then
		na nncp "nncp-exec failed for $fails messages: $(tail -n 1 "$NN/exec.log")"
	else
		in_gw env NNCPDEADLINE=60 nncp-daemon -cfg "$NN/gw.hjson" -quiet -bind "$A_GW:$NNCP_PORT" \
			>"$NN/daemon.log" 2>&1 &
		if ! wait_for 10 in_gw sh -c "ss -Hltn 'sport = :$NNCP_PORT' | grep -q ."; then
			na nncp "nncp-daemon does not listen (see $NN/daemon.log)"
		else
			# The call is done when the site has no packet left for the
			# gateway: NNCP deletes a sent packet only when the far end
			# confirms it has the whole of it.  (With -onlinedeadline 1 the
			# caller hangs up as soon as everything sits in its socket's
			# send buffer - at 64 kbit/s long before it has crossed - and the
			# reset loses the rest; so a long online deadline, and the call
			# is ended once every packet is confirmed.)
			gwid=$(awk '$1 == "id:" { print $2; exit }' "$NN/gw.keys")
			txdir=$NN/site/spool/$gwid/tx
			wire_start
			t0=$(now)
			in_site env NNCPDEADLINE=60 timeout "$STEP_TIMEOUT" \
				nncp-call -cfg "$NN/site.hjson" -onlinedeadline 60 gw >"$NN/call.log" 2>&1 &
			cpid=$!
			ok=0
			wait_for "$STEP_TIMEOUT" eval '[ "$(count_files "$txdir")" = 0 ] || ! kill -0 $cpid 2>/dev/null' &&
				[ "$(count_files "$txdir")" = 0 ] && ok=1
			t1=$(now)
			kill "$cpid" 2>/dev/null || true
			wait "$cpid" 2>/dev/null || true
			wire_stop
			rc2=0
			timeout 60 nncp-toss -cfg "$NN/gw.hjson" -quiet >"$NN/toss.log" 2>&1 || rc2=$?
			t2=$(now)
			got=$(count_files "$NN/inbox")
			if [ "$ok" != 1 ]; then
				na nncp "$(count_files "$txdir") of $N packets still unsent when nncp-call ended: $(grep -a '^Err:' "$NN/site/log" | tail -n 1)"
			elif [ "$got" != "$N" ]; then
				na nncp "$got of $N messages at the gateway after call and toss (toss exit $rc2)"
			else
				record nncp "$(calc '%.2f' "$t2 - $t0")" \
					"call $(calc '%.2f' "$t1 - $t0") s + toss $(calc '%.2f' "$t2 - $t1") s"
			fi
		fi
	fi
fi

# ---------------------------------------------------------------------------
# 4. ssh -C of the concatenation.

say ""
say "=== 4. ssh -C of the concatenation"
if ! want sshc; then
	skipped sshc
elif [ "$SSHD_OK" = 0 ]; then
	na sshc "sshd did not start"
else
	wire_start
	t0=$(now)
	rc=0
	got=$(in_site timeout "$STEP_TIMEOUT" ssh -C -F /dev/null -p "$SSH_PLAIN_PORT" -i "$W/id_ed25519" \
		-o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$W/known_hosts" \
		-o GlobalKnownHostsFile=/dev/null "root@$A_GW" 'wc -c' <"$W/concat" 2>"$W/sshc.log") || rc=$?
	t1=$(now)
	wire_stop
	if [ "$rc" != 0 ]; then
		na sshc "ssh exited $rc: $(tail -n 1 "$W/sshc.log")"
	elif [ "${got// /}" != "$RAW" ]; then
		na sshc "the far end counted '$got' bytes, expected $RAW"
	else
		record sshc "$(calc '%.2f' "$t1 - $t0")" "OpenSSH client, default cipher, zlib"
	fi
fi

# ---------------------------------------------------------------------------
# 5. gzip -9 of the concatenation at link rate.

say ""
say "=== 5. gzip -9 of the concatenation through the link (plain TCP)"
GZ_BYTES=$(gzip -9 -c "$W/concat" | wc -c)
rate_bps=$(tc_rate=$RATE awk 'BEGIN { r = ENVIRON["tc_rate"]; m = 1
	if (r ~ /kbit$/) m = 1000; else if (r ~ /mbit$/) m = 1000000; else if (r ~ /bit$/) m = 1
	sub(/[a-z]+$/, "", r); print r * m }')
GZ_THEORY=$(calc '%.2f' "$GZ_BYTES * 8 / $rate_bps")
if ! want gzip; then
	skipped gzip
elif ! command -v socat >/dev/null; then
	na gzip "socat is not installed"
else
	in_gw timeout "$STEP_TIMEOUT" socat -u "TCP-LISTEN:$GZ_PORT,bind=$A_GW,reuseaddr" \
		"OPEN:$W/gz.recv,creat,trunc" 2>"$W/gz.log" &
	gpid=$!
	if ! wait_for 10 in_gw sh -c "ss -Hltn 'sport = :$GZ_PORT' | grep -q ."; then
		na gzip "socat does not listen"
	else
		wire_start
		t0=$(now)
		rc=0
		gzip -9 -c "$W/concat" | in_site timeout "$STEP_TIMEOUT" socat -u STDIN "TCP:$A_GW:$GZ_PORT" 2>>"$W/gz.log" || rc=$?
		wait "$gpid" || rc=$?
		t1=$(now)
		wire_stop
		if [ "$rc" != 0 ]; then
			na gzip "socat failed ($rc): $(tail -n 1 "$W/gz.log")"
		elif [ "$(stat -c %s "$W/gz.recv")" != "$GZ_BYTES" ]; then
			na gzip "received $(stat -c %s "$W/gz.recv") of $GZ_BYTES bytes"
		else
			record gzip "$(calc '%.2f' "$t1 - $t0")" "$GZ_BYTES bytes compressed; payload alone ${GZ_THEORY} s at $RATE"
		fi
	fi
fi

# ---------------------------------------------------------------------------
# The table.

say ""
say "=== $N corpus messages ($RAW bytes raw) over $RATE (tbf on the router, both ways)"
say "    wire = bytes through the shaped link, both directions (router egress counters);"
say "    drops = packets the shapers dropped (their retransmissions are in wire)"
say "    issue 4 = the figures the issue quotes, measured earlier, for orientation"
printf '%-26s %10s %9s %9s %8s %10s %6s  %-16s %s\n' "" "wire B" "up B" "down B" "wall s" "wire/raw" "drops" "issue 4" "note"
for p in "${PEERS[@]}"; do
	if [ -n "${R_WIRE[$p]:-}" ]; then
		printf '%-26s %10d %9d %9d %8s %10s %6s  %-16s %s\n' "${LABEL[$p]}" "${R_WIRE[$p]}" "${R_UP[$p]}" "${R_DOWN[$p]}" \
			"${R_TIME[$p]}" "$(calc '%.3f' "${R_WIRE[$p]} / $RAW")" "${R_DROPS[$p]}" "${ORIENT[$p]:-}" "${R_NOTE[$p]}"
	else
		printf '%-26s %s\n' "${LABEL[$p]}" "n/a (${R_NA[$p]:-did not run})"
	fi
done
if want cut; then
	for c in $CUTS; do
		lab="mgate, cut at $(calc '%.0f' "$c * 100")%"
		if [ -n "${C_WIRE[$c]:-}" ]; then
			printf '%-26s %10d %9d %9d %8s %10s %6s  %-16s %s\n' "$lab" "${C_WIRE[$c]}" "${C_UP[$c]}" "${C_DOWN[$c]}" \
				"${C_TIME[$c]}" "$(calc '%.3f' "${C_WIRE[$c]} / $RAW")" "${C_DROPS[$c]}" "" "${C_NOTE[$c]}"
		else
			printf '%-26s %s\n' "$lab" "${C_NOTE[$c]:-n/a}"
		fi
	done
fi
printf '%-26s %10s %9s %9s %8s\n' "gzip -9 payload / rate" "$GZ_BYTES" "" "" "$GZ_THEORY"

say ""
if [ -n "${R_WIRE[mgate]:-}" ] || [ -n "${R_NA[mgate]:-}" ]; then
	for f in "$W"/sync.out.*; do
		[ -e "$f" ] && say "mgate's own summary, sync ${f##*.}: $(tail -n 1 "$f")"
	done
fi
if [ -n "${R_WIRE[mgate]:-}" ]; then
	mw=${R_WIRE[mgate]} mt=${R_TIME[mgate]}
	say "mgate wire ratio: $(calc '%.3f' "$mw / $RAW") of raw ($(calc '%.2f' "$RAW / $mw")x smaller than the messages)"
	target() { # TEXT CONDITION(awk) FIGURE
		local v="not met"
		[ "$(calc '%d' "($2)")" = 1 ] && v=met
		printf '  %-44s %-28s %s\n' "$1" "$3" "$v"
	}
	say "targets (issue 4):"
	if [ -n "${R_WIRE[postfix]:-}" ]; then
		target ">= 4.5x fewer wire bytes than Postfix" "${R_WIRE[postfix]} / $mw >= 4.5" \
			"$(calc '%.2f' "${R_WIRE[postfix]} / $mw")x fewer"
	else
		say "  >= 4.5x fewer wire bytes than Postfix        n/a (Postfix did not run)"
	fi
	if [ -n "${R_WIRE[nncp]:-}" ]; then
		target "fewer wire bytes than NNCP" "$mw < ${R_WIRE[nncp]}" "$mw vs ${R_WIRE[nncp]}"
	else
		say "  fewer wire bytes than NNCP                   n/a (NNCP did not run)"
	fi
	if [ -n "${R_WIRE[sshc]:-}" ]; then
		target "fewer wire bytes than ssh -C" "$mw < ${R_WIRE[sshc]}" "$mw vs ${R_WIRE[sshc]}"
	else
		say "  fewer wire bytes than ssh -C                 n/a (ssh -C did not run)"
	fi
	if [ -n "${R_TIME[gzip]:-}" ]; then
		target "wall time <= gzip -9 at link rate" "$mt <= ${R_TIME[gzip]}" "$mt s vs ${R_TIME[gzip]} s"
	fi
	target "wall time <= gzip -9 payload / rate" "$mt <= $GZ_THEORY" "$mt s vs $GZ_THEORY s"
	for c in $CUTS; do
		[ -n "${C_WIRE[$c]:-}" ] || continue
		say "cut at $(calc '%.0f' "$c * 100")%: ${C_WIRE[$c]} wire bytes in ${C_TIME[$c]} s (${CUT_SECONDS} s cut included)" \
			"vs $mw in $mt s uncut: +$((C_WIRE[$c] - mw)) bytes, +$(calc '%.2f' "${C_TIME[$c]} - $mt") s;" \
			"${C_RESUME[$c]:-no resume: the whole bundle was sent again}"
	done
fi

say ""
if [ ${#errors[@]} -ne 0 ]; then
	say "bench/sync.sh: ${#errors[@]} problem(s):"
	printf '  - %s\n' "${errors[@]}"
	exit 1
fi
say "bench/sync.sh: every peer ran"
