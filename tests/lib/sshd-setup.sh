# sshd-setup.sh - a site and a gateway joined by a real OpenSSH sshd on
# loopback, for the sync tests (tests/6*-sync-*.t).  Source it after
# testlib.sh:
#
#   . "$(dirname "$0")/lib/testlib.sh"
#   . "$(dirname "$0")/lib/sshd-setup.sh"
#   need_root "starts sshd"
#   sshd_gateway_setup                 # everything below, sshd running
#   "$MGATE" -c "$SITE_CONF" queue -i bob@example.com <msg
#   "$MGATE" -c "$SITE_CONF" sync
#
# sshd_gateway_setup [SITE_EXTRA_CONF]
#     In $T (made by setup_tmpdir if needed):
#       host_ed25519{,.pub}   sshd's host key
#       id_ed25519{,.pub}     the site's SSH login key
#       site.key{,.pub}       the site's bundle keys   (mgate keygen)
#       gw.key{,.pub}         the gateway's bundle keys
#       site.conf, gw.conf    configurations; spools $T/site and $T/gw
#       authorized_keys       the forced-command line from
#                             `mgate -c gw.conf authorized-key --peer ship'
#       known_hosts           "[127.0.0.1]:PORT ssh-ed25519 ..." only
#       sshd_config, sshd.log, sshd.pid
#     Both spools are initialised.  sshd listens on 127.0.0.1:SSHD_PORT
#     (a free port) and is stopped at exit.  SITE_EXTRA_CONF lines are
#     added to the site's [peer gw] section (e.g. "max_bundle_size = 256k").
#     Exports SITE_CONF, GW_CONF, SSHD_PORT, SITE_SPOOL, GW_SPOOL, MGATE.
#     Under MGATE_ASAN=1, sshd hands `mgate serve' the sanitizer options
#     (SetEnv), so reports from the gateway's process also land in
#     $T/sanitizer.* where testlib.sh finds them.
#
# sshd_site_port PORT
#     Point the site's [peer gw] at another port on 127.0.0.1 (a relay
#     in front of sshd).  known_hosts gets the host key under
#     "[127.0.0.1]:PORT" too, so the host-key check still matches.
#
# sshd_known_hosts_restore
#     Rewrite known_hosts as sshd_gateway_setup made it (after a test
#     has replaced it), keeping entries added by sshd_site_port.
#
# sshd_running
#     True while the test's sshd is alive.
#
# sshd_wrap_serve LOG [LIMITFILE]
#     Put a byte counter (tests/lib/cutrelay.py count) in front of
#     `mgate serve' in the forced command; see below.
#
# sshd_serve_pids, sshd_session_pids, sshd_wait_sessions SECONDS,
# sshd_show_sessions
#     This test's gateway ends (found by their -c $T/gw.conf), waiting for
#     them to finish, and what a stuck one is doing (ps, kernel stack,
#     gdb backtrace, strace) for a diagnostic.
#
# sync_list_json CONF, sync_json_errors, sync_gw_map, sync_site_states,
# sync_compare_all [WORKERS]
#     Checks shared by the sync tests; see their comments below.
#
# At exit sshd and any session still running are stopped; if the test
# script is killed before its exit hooks run, a watchdog does it.
#
# Needs: ssh-keygen, /usr/sbin/sshd, root (sshd runs as root with its own
# configuration; nothing touches the system's sshd or its keys).
# shellcheck shell=bash

SSHD_BIN=${SSHD_BIN:-/usr/sbin/sshd}

_sshd_pid() {
	[ -s "$T/sshd.pid" ] && cat "$T/sshd.pid"
}

sshd_running() {
	local pid
	pid=$(_sshd_pid) || return 1
	kill -0 "$pid" 2>/dev/null
}

_sshd_stop() {
	local pid i p
	if pid=$(_sshd_pid) && kill "$pid" 2>/dev/null; then
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	# Sessions that outlived sshd (a serve stuck on a lock) are ours too.
	for p in $(sshd_session_pids); do
		kill -9 "$p" 2>/dev/null || true
	done
}

# If the test script dies without running its exit hooks (killed, or a
# SIGPIPE when prove went away), stop what it started: every process
# whose command line names a file in $T.
_sshd_watchdog() {
	local parent=$$
	(
		trap '' HUP INT TERM PIPE
		while kill -0 "$parent" 2>/dev/null; do sleep 2; done
		[ -d "$T" ] || exit 0
		for p in $(pgrep -f -- "$T/"); do kill -9 "$p"; done
	) </dev/null >/dev/null 2>&1 &
}

# The site's config, with PORT in the peer section.
_sshd_write_site_conf() { # PORT
	cat >"$SITE_CONF" <<EOF
# written by tests/lib/sshd-setup.sh
spool_directory = $T/site
myhostname = ship.example.org
mydomain = example.org
local_name = ship
log_destination = stderr
private_key = $T/site.key
pickup_after_queue = no

[peer gw]
transport = ssh
host = 127.0.0.1
port = $1
user = root
identity_file = $T/id_ed25519
known_hosts = $T/known_hosts
public_key = $T/gw.key.pub
connect_timeout = 5s
io_timeout = 10s
EOF
	if [ -n "${_SSHD_SITE_EXTRA:-}" ]; then
		printf '%s\n' "$_SSHD_SITE_EXTRA" >>"$SITE_CONF"
	fi
}

_sshd_known_hosts_line() { # PORT
	printf '[127.0.0.1]:%s %s\n' "$1" "$(cut -d' ' -f1,2 "$T/host_ed25519.pub")"
}

sshd_known_hosts_restore() {
	local p
	: >"$T/known_hosts"
	for p in "$SSHD_PORT" ${_SSHD_EXTRA_PORTS:-}; do
		_sshd_known_hosts_line "$p" >>"$T/known_hosts"
	done
}

sshd_site_port() { # PORT
	_SSHD_EXTRA_PORTS="${_SSHD_EXTRA_PORTS:-} $1"
	_sshd_write_site_conf "$1"
	_sshd_known_hosts_line "$1" >>"$T/known_hosts"
}

sshd_gateway_setup() { # [SITE_EXTRA_CONF]
	local try out
	_SSHD_SITE_EXTRA=${1:-}
	need_cmd ssh-keygen "$SSHD_BIN"
	setup_tmpdir
	MGATE=${MGATE:-$MGATE_BUILD/mgate}
	SITE_CONF=$T/site.conf
	GW_CONF=$T/gw.conf
	SITE_SPOOL=$T/site
	GW_SPOOL=$T/gw
	export MGATE SITE_CONF GW_CONF SITE_SPOOL GW_SPOOL

	ssh-keygen -q -t ed25519 -N '' -C mgate-test-host -f "$T/host_ed25519" &&
	    ssh-keygen -q -t ed25519 -N '' -C mgate-test-site -f "$T/id_ed25519" ||
	    BAIL_OUT "ssh-keygen failed"
	"$MGATE" keygen "$T/site.key" >/dev/null &&
	    "$MGATE" keygen "$T/gw.key" >/dev/null ||
	    BAIL_OUT "mgate keygen failed"

	cat >"$GW_CONF" <<EOF
# written by tests/lib/sshd-setup.sh
spool_directory = $T/gw
myhostname = gw.example.net
mydomain = example.net
local_name = gw
log_destination = stderr
private_key = $T/gw.key

[peer ship]
transport = file
public_key = $T/site.key.pub
EOF
	_sshd_write_site_conf 22	# the real port comes below
	"$MGATE" -c "$SITE_CONF" init >/dev/null &&
	    "$MGATE" -c "$GW_CONF" init >/dev/null ||
	    BAIL_OUT "mgate init failed"
	out=$("$MGATE" -c "$GW_CONF" authorized-key --peer ship "$T/id_ed25519.pub") ||
	    BAIL_OUT "mgate authorized-key failed"
	printf '%s\n' "$out" >"$T/authorized_keys"
	chmod 600 "$T/authorized_keys"

	mkdir -p /run/sshd
	for try in 1 2 3; do
		SSHD_PORT=$(free_port)
		cat >"$T/sshd_config" <<EOF
# written by tests/lib/sshd-setup.sh
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $T/host_ed25519
AuthorizedKeysFile $T/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
PidFile $T/sshd.pid
MaxStartups 100:30:200
LoginGraceTime 30
# As in Debian's sshd_config: a forced command must win over it.
Subsystem sftp internal-sftp
EOF
		if [ "${MGATE_ASAN:-0}" = 1 ]; then
			# sshd does not pass our environment to the forced
			# command: give `mgate serve' the sanitizer options.
			printf 'SetEnv ASAN_OPTIONS=%s UBSAN_OPTIONS=%s\n' \
			    "$ASAN_OPTIONS" "$UBSAN_OPTIONS" >>"$T/sshd_config"
		fi
		rm -f "$T/sshd.pid"
		if "$SSHD_BIN" -f "$T/sshd_config" -E "$T/sshd.log" &&
		    wait_for 5 test -s "$T/sshd.pid" &&
		    wait_for 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$SSHD_PORT"; then
			on_exit _sshd_stop
			_sshd_watchdog
			break
		fi
		_sshd_stop
		diag "sshd did not start on port $SSHD_PORT (try $try):"
		diag "$(tail -n 5 "$T/sshd.log" 2>/dev/null)"
		SSHD_PORT=
	done
	[ -n "$SSHD_PORT" ] || BAIL_OUT "cannot start sshd (see $T/sshd.log)"
	export SSHD_PORT
	_SSHD_EXTRA_PORTS=
	_sshd_write_site_conf "$SSHD_PORT"
	sshd_known_hosts_restore
	return 0
}

# ---------------------------------------------------------------------------
# Checks shared by the sync tests.
#
# sync_list_json CONF     `mgate -c CONF list --json', checked (see below)
# sync_json_errors        how many times it did not print JSON
# sync_gw_map             "PEER_ID GW_ID" for every message at the gateway,
#                         sorted (a site message twice shows as two lines)
# sync_site_states        "QID STATE" for every recipient at the site
# sync_compare_all [N]    compare every gateway message (`mgate cat') with
#                         the site's `mgate cat' of its peer_id, in N
#                         parallel workers (default 4); prints one line per
#                         message that differs or cannot be read, nothing
#                         when all are byte-identical

# sync_list_json CONF: `mgate -c CONF list --json', checked: output that
# is not JSON (or a failed list) is counted in $T/json-errors, kept as
# $T/json-error.N and shown once; then the list is tried once more.
# sync_json_errors prints the count (tests assert it is 0).
sync_list_json() { # CONF
	local try out n
	for try in 1 2; do
		out=$("$MGATE" -c "$1" list --json 2>"$T/list.err") &&
		    printf '%s' "$out" | jq -e 'type == "array"' >/dev/null 2>&1 && {
			printf '%s\n' "$out"
			return 0
		}
		n=$(($(sync_json_errors) + 1))
		echo "$n" >"$T/json-errors"
		{ printf '%s\n' "$out"; cat "$T/list.err"; } >"$T/json-error.$n"
		[ "$n" != 1 ] || diag "mgate -c ${1##*/} list --json did not print JSON (kept in $T/json-error.1): $(head -c 200 "$T/json-error.1")"
	done
	printf '%s\n' "$out"
	return 1
}
sync_json_errors() {
	cat "$T/json-errors" 2>/dev/null || echo 0
}

sync_gw_map() {
	sync_list_json "$GW_CONF" | jq -r '.[] | "\(.peer_id) \(.id)"' 2>/dev/null | LC_ALL=C sort
}

sync_site_states() {
	sync_list_json "$SITE_CONF" |
	    jq -r '.[] | .id as $i | .recipients[] | "\($i) \(.state)"' 2>/dev/null |
	    LC_ALL=C sort
}

_sync_compare_worker() { # K N MAPFILE DIR
	local pid gid
	while read -r pid gid; do
		if ! "$MGATE" -c "$SITE_CONF" cat "$pid" >"$4/$pid.site" 2>"$4/$pid.err" ||
		    ! "$MGATE" -c "$GW_CONF" cat "$gid" >"$4/$pid.gw" 2>>"$4/$pid.err"; then
			echo "$pid (gateway $gid): cat failed: $(tr '\n' ' ' <"$4/$pid.err")"
		elif [ ! -s "$4/$pid.site" ]; then
			echo "$pid: empty at the site"
		elif ! cmp -s "$4/$pid.site" "$4/$pid.gw"; then
			echo "$pid (gateway $gid) differs: $(cmp "$4/$pid.site" "$4/$pid.gw" 2>&1)"
		fi
		rm -f "$4/$pid".*
	done < <(awk -v k="$1" -v n="$2" 'NR % n == k' "$3")
}

sync_compare_all() { # [WORKERS]
	local n=${1:-4} k dir
	dir=$(mktemp -d "$T/compare.XXXXXX")
	sync_gw_map >"$dir/map"
	for ((k = 0; k < n; k++)); do
		_sync_compare_worker "$k" "$n" "$dir/map" "$dir" >"$dir/out.$k" &
	done
	wait
	cat "$dir"/out.*
	rm -rf "$dir"
}

# sshd_wrap_serve LOG [LIMITFILE]: put `cutrelay.py count' in front of
# mgate serve in the forced command: LOG gets one line per session with
# the bytes sshd delivered to serve's standard input and how serve ended
# ("pid=N in=BYTES status=S" or "signal=SIGNAME").  While LIMITFILE holds
# a number N, serve gets only the first N bytes of each session.
sshd_wrap_serve() { # LOG [LIMITFILE]
	local wrap
	wrap="$PYTHON3 $TESTLIB/cutrelay.py count $1${2:+ --limit-file $2} --"
	sed -i "s|command=\"|command=\"$wrap |" "$T/authorized_keys"
}

# sshd_serve_pids: PIDs of this test's `mgate serve' processes (the
# gateway's end, started by sshd; not a wrapper in front of it, not
# another test's).  sshd_session_pids: those and any wrapper.  Both
# exit 1 when there are none.
sshd_serve_pids() {
	pgrep -f -- "^[^ ]*mgate -c $(realpath "$GW_CONF") serve --peer ship\$"
}
sshd_session_pids() {
	pgrep -f -- "-c $(realpath "$GW_CONF") serve --peer ship\$"
}
# sshd_wait_sessions SECONDS: wait until no session of this test runs.
sshd_wait_sessions() {
	local i
	for ((i = 0; i < $1 * 20; i++)); do
		sshd_session_pids >/dev/null || return 0
		sleep 0.05
	done
	return 1
}

# sshd_show_sessions: what this test's sessions are doing (for diag).
sshd_show_sessions() {
	local p
	for p in $(sshd_session_pids); do
		ps -o pid=,stat=,etime=,wchan:24=,args= -p "$p" | cut -c1-160
		[ -r "/proc/$p/stack" ] && head -n 4 "/proc/$p/stack" | sed 's/^/    /'
		# Where in mgate, and what it keeps calling.
		if command -v gdb >/dev/null 2>&1; then
			timeout 20 gdb -p "$p" -batch -ex bt 2>/dev/null |
			    grep '^#' | head -n 12 | cut -c1-200 | sed 's/^/    /'
		fi
		if command -v strace >/dev/null 2>&1; then
			timeout 1 strace -p "$p" 2>&1 | head -n 6 | cut -c1-160 | sed 's/^/    strace: /'
		fi
	done
}
