# testlib.sh - sourced by the end-to-end tests (tests/*.t), which prove runs.
# shellcheck shell=bash
#
# Usage, in a test script:
#
#   #!/usr/bin/env bash
#   . "$(dirname "$0")/lib/testlib.sh"
#   need_root "starts Postfix"          # only if the test needs root
#   mgate_setup                         # $T, $T/mgate.conf, $MGATE, MGATE_CONFIG
#   ok "queue accepts a message" "$MGATE" queue bob@example.com <"$T/msg"
#   is_exit 75 "queue fails on a full disk" "$MGATE" queue bob@example.com <"$T/msg"
#   run "$MGATE" list --json
#   is "$RUN_STATUS" 0 "list exits 0"
#   like "$RUN_STDOUT" '"queue_id"' "list prints queue IDs"
#   done_testing
#
# TAP output goes to stdout, diagnostics to stderr as "# ..." lines.
#
# Assertions return 0 when they pass and 1 when they fail, so
# `ok ... || BAIL_OUT "..."` works.  A script that runs under `set -e` stops
# at its first failed assertion; the exit trap then still prints the plan
# and says where it stopped, and prove reports the failure.  Without -e the
# script goes on and done_testing fails at the end.
#
# Functions:
#   plan N                      announce N tests up front (optional)
#   ok NAME CMD [ARGS...]       pass when CMD exits 0 (its output is shown on failure)
#   is GOT EXPECTED NAME        string equality
#   isnt GOT UNEXPECTED NAME    string inequality
#   is_exit N NAME CMD [ARGS...]  pass when CMD exits with status N
#   like TEXT REGEX NAME        bash ERE match ([[ =~ ]]); unlike is the opposite
#   pass NAME / fail NAME       unconditional results
#   skip REASON [COUNT]         record COUNT (default 1) skipped tests
#   diag MSG... / note MSG...   comment lines (stderr / stdout)
#   skip_all REASON             skip the whole script (1..0 # SKIP)
#   BAIL_OUT REASON             abort the whole prove run
#   done_testing                print the plan; exit status = failures
#   run CMD [ARGS...]           run CMD, set RUN_STATUS, RUN_STDOUT, RUN_STDERR
#   run_asan_aware CMD [ARGS...]  run CMD and account for sanitizer reports
#   wait_for SECONDS CMD [ARGS...]  poll CMD every 50 ms until it succeeds
#                               (a $(...) in ARGS is expanded once: to poll
#                               a changing value, pass a shell function)
#   need_root REASON            skip_all when not root (a failure when CI=true)
#   need_cmd CMD... / need_mgate  likewise for missing programs / binary
#   setup_tmpdir                $T: private temp dir, removed on exit
#                               (kept, and its path printed, with MGATE_KEEP=1)
#   mgate_setup                 setup_tmpdir + $T/mgate.conf + MGATE, MGATE_CONFIG
#   on_exit 'SHELL CODE'        run at exit (last registered first), before
#                               $T is removed: stop servers here
#   corpus_dir                  print the SpamAssassin corpus directory
#   strip_from_line FILE        print FILE without a leading mbox "From " line
#   free_port                   print a free TCP port on 127.0.0.1
#   start_postfix DIR [MODE]    start a Postfix instance (tests/lib/postfix-instance)
#                               on a free port, stopped on exit; sets POSTFIX_PORT
#
# Environment: MGATE_BUILD (directory holding the mgate binary; default
# REPO/build), MGATE_CORPUS, MGATE_KEEP=1, MGATE_ASAN=1 (binary built with
# ASan/UBSan), CI=true (skips that need something missing become failures).

# ---------------------------------------------------------------------------
# Locations.

TESTLIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$TESTLIB/../.." && pwd)
MGATE_BUILD=${MGATE_BUILD:-$REPO/build}
POSTFIX_INSTANCE=$TESTLIB/postfix-instance
export TESTLIB REPO MGATE_BUILD POSTFIX_INSTANCE

# Debian's python3, for helpers (a pyenv shim may shadow it and is slow).
if [ -x /usr/bin/python3 ]; then PYTHON3=/usr/bin/python3; else PYTHON3=python3; fi

# ---------------------------------------------------------------------------
# TAP state.

_tap_n=0           # tests run so far
_tap_failed=0      # tests failed so far
_tap_planned=      # N from `plan N`
_tap_done=0        # done_testing / skip_all / BAIL_OUT ran
_tap_exit_hooks=() # on_exit code, run last-first
_tap_tmp=          # private scratch dir for captured output
_tap_asan_seen=0   # sanitizer report files already accounted for
_tap_own_t=        # the $T this script made (and removes at exit)
T=                 # never inherited: a T from the environment is not ours

# Test names must not contain a newline, and '#' starts a directive in TAP.
_tap_name() {
	local n=${1//$'\n'/ }
	printf '%s' "${n//\#/\\#}"
}

_tap_result() { # STATUS(0 = pass) NAME
	_tap_n=$((_tap_n + 1))
	if [ "$1" = 0 ]; then
		printf 'ok %d - %s\n' "$_tap_n" "$(_tap_name "$2")"
		return 0
	fi
	_tap_failed=$((_tap_failed + 1))
	printf 'not ok %d - %s\n' "$_tap_n" "$(_tap_name "$2")"
	# Where: the first caller outside this library.
	local i caller=
	for ((i = 1; i < ${#BASH_SOURCE[@]}; i++)); do
		if [ "${BASH_SOURCE[i]}" != "${BASH_SOURCE[0]}" ]; then
			caller=${BASH_SOURCE[i]}:${BASH_LINENO[i - 1]}
			break
		fi
	done
	diag "  Failed test '$2'"
	[ -z "$caller" ] || diag "  at ${caller#"$REPO/"}"
	return 1
}

diag() {
	local line
	# One "# " per line, on stderr (prove shows it even when not verbose).
	while IFS= read -r line || [ -n "$line" ]; do
		printf '# %s\n' "$line" >&2
	done <<<"$*"
}

note() {
	local line
	while IFS= read -r line || [ -n "$line" ]; do
		printf '# %s\n' "$line"
	done <<<"$*"
}

# Show a captured file as diagnostics, at most the last 40 lines.
_tap_diag_file() { # LABEL FILE
	[ -s "$2" ] || return 0
	diag "  $1:"
	diag "$(tail -n 40 "$2" | sed 's/^/    /')"
}

_tap_scratch() {
	if [ -z "$_tap_tmp" ]; then
		_tap_tmp=$(mktemp -d "${TMPDIR:-/tmp}/mgate-tap.XXXXXX")
	fi
}

plan() {
	[[ ${1:-} =~ ^[0-9]+$ ]] || BAIL_OUT "plan: need a number, got '${1:-}'"
	_tap_planned=$1
	printf '1..%d\n' "$1"
}

pass() { _tap_result 0 "${1:-}"; }
fail() { _tap_result 1 "${1:-}"; }

ok() { # NAME CMD [ARGS...]
	local name=$1 rc=0
	shift
	[ $# -gt 0 ] || BAIL_OUT "ok: no command given for '$name'"
	_tap_scratch
	_tap_run "$@" >"$_tap_tmp/out" 2>"$_tap_tmp/err" || rc=$?
	if [ "$rc" = 0 ]; then
		_tap_result 0 "$name"
	else
		_tap_result 1 "$name" || true
		diag "  command: $(printf '%q ' "$@")"
		diag "  exit status: $(_tap_diag_status "$rc")"
		_tap_diag_file stdout "$_tap_tmp/out"
		_tap_diag_file stderr "$_tap_tmp/err"
	fi
	_tap_check_sanitizer_logs || true
	[ "$rc" = 0 ]
}

is_exit() { # N NAME CMD [ARGS...]
	local want=$1 name=$2 rc=0
	shift 2
	[ $# -gt 0 ] || BAIL_OUT "is_exit: no command given for '$name'"
	_tap_scratch
	_tap_run "$@" >"$_tap_tmp/out" 2>"$_tap_tmp/err" || rc=$?
	if [ "$rc" = "$want" ]; then
		_tap_result 0 "$name"
	else
		_tap_result 1 "$name" || true
		diag "  command: $(printf '%q ' "$@")"
		diag "  exit status: $(_tap_diag_status "$rc"), expected $want"
		_tap_diag_file stdout "$_tap_tmp/out"
		_tap_diag_file stderr "$_tap_tmp/err"
	fi
	_tap_check_sanitizer_logs || true
	[ "$rc" = "$want" ]
}

is() { # GOT EXPECTED NAME
	if [ "${1-}" == "${2-}" ]; then
		_tap_result 0 "${3:-}"
		return 0
	fi
	_tap_result 1 "${3:-}"
	diag "         got: '${1-}'"
	diag "    expected: '${2-}'"
	return 1
}

isnt() { # GOT UNEXPECTED NAME
	if [ "${1-}" != "${2-}" ]; then
		_tap_result 0 "${3:-}"
		return 0
	fi
	_tap_result 1 "${3:-}"
	diag "         got: '${1-}'"
	diag "    expected: anything else"
	return 1
}

like() { # TEXT REGEX NAME
	if [[ ${1-} =~ ${2-} ]]; then
		_tap_result 0 "${3:-}"
		return 0
	fi
	_tap_result 1 "${3:-}"
	diag "                  '${1-}'"
	diag "    doesn't match '${2-}'"
	return 1
}

unlike() { # TEXT REGEX NAME
	if ! [[ ${1-} =~ ${2-} ]]; then
		_tap_result 0 "${3:-}"
		return 0
	fi
	_tap_result 1 "${3:-}"
	diag "                  '${1-}'"
	diag "          matches '${2-}'"
	return 1
}

skip() { # REASON [COUNT]
	local i count=${2:-1}
	for ((i = 0; i < count; i++)); do
		_tap_n=$((_tap_n + 1))
		printf 'ok %d # skip %s\n' "$_tap_n" "$(_tap_name "$1")"
	done
}

skip_all() { # REASON
	_tap_done=1
	if [ "$_tap_n" -gt 0 ] || [ -n "$_tap_planned" ]; then
		# Too late for 1..0: skip what is left instead.
		diag "skip_all after tests ran: $1"
		done_testing
	fi
	printf '1..0 # SKIP %s\n' "$(_tap_name "$1")"
	exit 0
}

BAIL_OUT() { # REASON
	_tap_done=1
	printf 'Bail out!  %s\n' "$(_tap_name "$1")"
	exit 255
}

# A prerequisite is missing: skip the script, or fail it under CI, where
# every prerequisite must be there (install-deps installs them).
_tap_missing() { # REASON
	if [ "${CI:-}" = true ]; then
		_tap_done=1
		printf 'not ok 1 - prerequisite missing under CI=true: %s\n1..1\n' "$(_tap_name "$1")"
		exit 1
	fi
	skip_all "$1"
}

need_root() { # REASON
	[ "$(id -u)" = 0 ] || _tap_missing "needs root: ${1:-this test needs root}"
}

need_cmd() { # CMD...
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || _tap_missing "needs $c (run tests/lib/install-deps)"
	done
}

need_mgate() {
	[ -x "${MGATE:-$MGATE_BUILD/mgate}" ] ||
		_tap_missing "no mgate binary at ${MGATE:-$MGATE_BUILD/mgate} (run make)"
}

done_testing() {
	_tap_done=1
	_tap_check_sanitizer_logs
	if [ -z "$_tap_planned" ]; then
		printf '1..%d\n' "$_tap_n"
	elif [ "$_tap_planned" != "$_tap_n" ]; then
		diag "planned $_tap_planned tests but ran $_tap_n"
		[ "$_tap_failed" -gt 0 ] || _tap_failed=1
	fi
	[ "$_tap_failed" = 0 ] || diag "failed $_tap_failed of $_tap_n tests"
	[ "$_tap_failed" -le 254 ] || _tap_failed=254
	exit "$_tap_failed"
}

# ---------------------------------------------------------------------------
# Running commands.

# shellcheck disable=SC2034 # RUN_* are for the test scripts
run() { # CMD [ARGS...]: sets RUN_STATUS, RUN_STDOUT, RUN_STDERR (trailing newlines stripped)
	_tap_scratch
	RUN_STATUS=0
	_tap_run "$@" >"$_tap_tmp/run.out" 2>"$_tap_tmp/run.err" || RUN_STATUS=$?
	RUN_STDOUT=$(cat "$_tap_tmp/run.out")
	RUN_STDERR=$(cat "$_tap_tmp/run.err")
	_tap_check_sanitizer_logs || true
	return 0
}

# Sanitizers.  Under MGATE_ASAN=1 the binary is built with ASan+UBSan.  A
# report must not look like one of mgate's own exit codes (EX_TEMPFAIL etc.),
# so sanitizers exit with 23, and they write their reports to files under
# $T/sanitizer.* rather than into the stderr that a test inspects; every
# assertion that runs a command, and done_testing, turns new report files
# into a failing test.
if [ "${MGATE_ASAN:-0}" = 1 ]; then
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1:exitcode=23:abort_on_error=0"
	export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:halt_on_error=1:exitcode=23"
fi

_tap_sanitizer_logs() {
	local f
	[ "${MGATE_ASAN:-0}" = 1 ] && [ -n "${_tap_san_dir:-}" ] && [ -d "$_tap_san_dir" ] || return 0
	find "$_tap_san_dir" -maxdepth 1 -type f -name 'sanitizer.*' -size +0 2>/dev/null | LC_ALL=C sort |
	    while IFS= read -r f; do
		# A process killed with kill -9 while LeakSanitizer was
		# scanning it leaves only the tracer's complaint that its
		# target vanished: that is the test's kill, not a finding.
		grep -qvE '^(==[0-9]+==(Unable to get registers from thread [0-9]+\.|LeakSanitizer has encountered a fatal error\.)|==[0-9]+==HINT: .*|)$' "$f" &&
		    printf '%s\n' "$f"
	    done
}

# Report sanitizer log files not reported yet as one failed test each batch.
_tap_check_sanitizer_logs() {
	local logs count f
	logs=$(_tap_sanitizer_logs)
	[ -n "$logs" ] || return 0
	count=$(printf '%s\n' "$logs" | wc -l)
	[ "$count" -gt "$_tap_asan_seen" ] || return 0
	_tap_result 1 "no sanitizer reports (ASan/UBSan found errors)" || true
	printf '%s\n' "$logs" | tail -n "+$((_tap_asan_seen + 1))" | while IFS= read -r f; do
		diag "  $f:"
		diag "$(head -n 60 "$f" | sed 's/^/    /')"
	done
	_tap_asan_seen=$count
}

# Run a command.  (The callers look for sanitizer report files once the
# command's output is no longer redirected, so that the TAP line lands on
# the script's stdout.)
_tap_run() {
	"$@"
}

_tap_diag_status() { # STATUS
	if [ "$1" = 23 ] && [ "${MGATE_ASAN:-0}" = 1 ]; then
		echo "$1 (a sanitizer's exit status)"
	else
		echo "$1"
	fi
}

# run_asan_aware CMD [ARGS...]: run CMD (output not captured) and return its
# status; sanitizer reports it produced become a failed test.
run_asan_aware() {
	local rc=0
	_tap_run "$@" || rc=$?
	_tap_check_sanitizer_logs || true
	return "$rc"
}

wait_for() { # SECONDS CMD [ARGS...]
	local limit=$1 deadline
	shift
	deadline=$(($(date +%s%N) + limit * 1000000000))
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s%N)" -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

# ---------------------------------------------------------------------------
# Temporary directory, clean-up and the configuration of mgate.

on_exit() { # 'SHELL CODE'
	_tap_exit_hooks+=("$1")
}

_tap_on_exit() {
	local rc=$? i
	trap - EXIT
	# Run the clean-up hooks (servers to stop), last registered first.
	for ((i = ${#_tap_exit_hooks[@]} - 1; i >= 0; i--)); do
		eval "${_tap_exit_hooks[i]}" >&2 || diag "clean-up failed: ${_tap_exit_hooks[i]}"
	done
	if [ "$_tap_done" = 0 ]; then
		# The script ended without done_testing: `set -e`, an error or exit.
		_tap_check_sanitizer_logs
		diag "test script stopped after test $_tap_n (exit status $rc) without done_testing"
		[ -n "$_tap_planned" ] || printf '1..%d\n' "$_tap_n"
		[ "$rc" != 0 ] || rc=1
	elif [ "$rc" = 0 ] && [ "$(_tap_sanitizer_logs | wc -l)" -gt "$_tap_asan_seen" ]; then
		# Reports written by processes that outlived the last assertion.
		diag "sanitizer reports appeared after the last test:"
		_tap_asan_seen=0
		_tap_check_sanitizer_logs >/dev/null
		rc=1
	fi
	[ -z "$_tap_tmp" ] || rm -rf "$_tap_tmp"
	if [ -n "$_tap_own_t" ] && [ -d "$_tap_own_t" ]; then
		if [ "${MGATE_KEEP:-0}" = 1 ]; then
			diag "MGATE_KEEP=1: kept $_tap_own_t"
		else
			rm -rf "$_tap_own_t"
		fi
	fi
	exit "$rc"
}
trap _tap_on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

setup_tmpdir() {
	[ -z "$_tap_own_t" ] || return 0
	T=$(mktemp -d "${TMPDIR:-/tmp}/mgate-t.XXXXXX")
	_tap_own_t=$T
	# World-searchable (not readable) so that daemons started by a test
	# under their own users (Postfix, sshd) can reach their directories.
	chmod 0711 "$T"
	export T
	_tap_san_dir=$T
	if [ "${MGATE_ASAN:-0}" = 1 ]; then
		export ASAN_OPTIONS="$ASAN_OPTIONS:log_path=$T/sanitizer"
		export UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$T/sanitizer"
	fi
}

mgate_setup() {
	setup_tmpdir
	MGATE=$MGATE_BUILD/mgate
	MGATE_CONFIG=$T/mgate.conf
	export MGATE MGATE_CONFIG
	cat >"$MGATE_CONFIG" <<EOF
# written by tests/lib/testlib.sh mgate_setup
spool_directory = $T/spool
myhostname = site.example.org
mydomain = example.org
log_destination = stderr
EOF
	[ -x "$MGATE" ] || diag "warning: no mgate binary at $MGATE (run make)"
	return 0
}

# ---------------------------------------------------------------------------
# Test data.

corpus_dir() {
	local d=${MGATE_CORPUS:-$REPO/../shared/corpus/spamassassin-public}
	if [ ! -d "$d" ]; then
		diag "corpus not found at $d (set MGATE_CORPUS)"
		return 1
	fi
	(cd "$d" && pwd)
}

strip_from_line() { # FILE
	LC_ALL=C sed '1{/^From /d}' -- "$1"
}

free_port() {
	"$PYTHON3" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# start_postfix DIR [MODE]: a private Postfix on a free port (POSTFIX_PORT),
# stopped at exit.  Needs root.  Retries once if the port was taken meanwhile.
start_postfix() {
	local dir=$1 mode=${2:-mx} _
	for _ in 1 2 3; do
		POSTFIX_PORT=$(free_port)
		if "$POSTFIX_INSTANCE" start "$dir" "$POSTFIX_PORT" "$mode" >&2; then
			on_exit "$(printf '%q stop %q' "$POSTFIX_INSTANCE" "$dir")"
			export POSTFIX_PORT
			return 0
		fi
	done
	return 1
}
