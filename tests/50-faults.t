#!/usr/bin/env bash
# Storage faults: a full disk (a small tmpfs as the spool), I/O errors,
# ENOSPC and short writes injected with libfiu (fiu-run's preload
# libraries) into `mgate queue' and `mgate pickup', and read errors on one
# maildrop file (strace -P ... -e inject).
#
#   queue:  every storage failure exits EX_TEMPFAIL (75) with a message
#           that says what went wrong; nothing half-written is visible
#           (maildrop/ gains nothing, tmp/ keeps nothing); short writes
#           are not failures.
#   pickup: a failure is reported (exit 75, a message), the maildrop file
#           stays where it is, intact, and a later clean pickup imports it
#           exactly once; an I/O error is never mistaken for corruption.
#   always: every message acknowledged before is listed once and intact.
set -uo pipefail
. "$(dirname "$0")/lib/testlib.sh"

need_mgate
need_cmd fiu-run jq cmp
mgate_setup
echo 'pickup_after_queue = no' >>"$MGATE_CONFIG"
MAIN_CONFIG=$MGATE_CONFIG
SPOOL=$T/spool
HAVE_STRACE=0
command -v strace >/dev/null 2>&1 && HAVE_STRACE=1

# A part of the test cannot run: skip it, or fail under CI, where every
# prerequisite must be there.
cannot() { # REASON COUNT
	if [ "${CI:-}" = true ]; then
		fail "prerequisite missing under CI=true: $1"
	else
		skip "$1" "$2"
	fi
}

# ---------------------------------------------------------------------------
# Helpers.

# Bodies are cut from a pool of text.
POOL=$T/pool
base64 -w 76 </dev/urandom | head -c 1200000 >"$POOL"
NMSG=0
declare -A MSGFILE	# queue ID -> the file submitted (acknowledged ones)
declare -A SPOOLOF	# queue ID -> config it was queued with

# make_msg SIZE: a new message file with a unique token, path in $MSG.
make_msg() {
	local size=$1 f=$T/msg.$NMSG tok="faulttok-$NMSG-$RANDOM$RANDOM"
	{
		printf 'From: Fault Test <fault@example.org>\nTo: bob@example.com\n'
		printf 'Subject: fault %s\n\n%s\n' "$tok" "$tok"
		head -c "$size" "$POOL"
	} >"$f"
	NMSG=$((NMSG + 1))
	MSG=$f
}

# queue FILE [PREFIX-CMD...]: `mgate -v queue' FILE, maybe under a
# wrapper; sets Q_RC, Q_ERR, Q_ID and records an acknowledged message.
queue() {
	local f=$1
	shift
	Q_RC=0
	"$@" "$MGATE" -v queue bob@example.com <"$f" >/dev/null 2>"$T/q.err" || Q_RC=$?
	Q_ERR=$(cat "$T/q.err")
	Q_ID=$(sed -n 's/^mgate: queued as \([0-9A-Z]\{16\}\)$/\1/p' "$T/q.err")
	if [ "$Q_RC" = 0 ] && [ -n "$Q_ID" ]; then
		MSGFILE[$Q_ID]=$f
		SPOOLOF[$Q_ID]=$MGATE_CONFIG
	fi
	_tap_check_sanitizer_logs || true
}

# Under libfiu: fiu ENABLE-COMMAND... -- CMD...  (fiu-run -x without the
# script, so that under ASan the sanitizer runtime can come first in
# LD_PRELOAD; no remote-control FIFOs).
FIU_LIBS="/usr/lib/fiu/fiu_run_preload.so /usr/lib/fiu/fiu_posix_preload.so"
if [ "${MGATE_ASAN:-0}" = 1 ]; then
	ASAN_LIB=$(ldd "$MGATE" | awk '/libasan/ {print $3; exit}')
	[ -n "$ASAN_LIB" ] && FIU_LIBS="$ASAN_LIB $FIU_LIBS"
	# libfiu's own allocation at start-up is not mgate's leak.
	printf 'leak:fiu_run_preload.so\nleak:fiu_posix_preload.so\n' >"$T/lsan.supp"
	export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$T/lsan.supp:print_suppressions=0"
fi
# LeakSanitizer cannot work under ptrace: no leak check under strace.
TRACE=(strace)
[ "${MGATE_ASAN:-0}" = 1 ] && TRACE=(env "ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0" strace)
fiu() {
	local enable=
	while [ "$1" != -- ]; do
		enable="$enable$1"$'\n'
		shift
	done
	shift
	FIU_ENABLE=$enable FIU_CTRL_FIFO= LD_PRELOAD=$FIU_LIBS "$@"
}

# The names in maildrop/ and tmp/, one line each.
dir_list() { ls -A "$1" 2>/dev/null | LC_ALL=C sort; }

# Does the output of `mgate cat' ($1) end with exactly the bytes of $2?
ends_with() {
	local size
	size=$(stat -c %s "$2")
	[ "$(stat -c %s "$1")" -ge "$size" ] && cmp -s <(tail -c "$size" "$1") "$2"
}

# check_all NAME: `list --json' (which runs pickup) lists every message
# acknowledged on the current spool exactly once, and `cat' gives each
# back intact.
check_all() {
	local name=$1 id n bad=() listed
	run timeout 120 "$MGATE" list --json
	is "$RUN_STATUS" 0 "$name: list exits 0" || diag "$RUN_STDERR"
	listed=$(jq -r '.[].id' <<<"$RUN_STDOUT" 2>/dev/null)
	for id in "${!MSGFILE[@]}"; do
		[ "${SPOOLOF[$id]}" = "$MGATE_CONFIG" ] || continue
		n=$(grep -cx "$id" <<<"$listed")
		if [ "$n" != 1 ]; then
			bad+=("$id listed $n times")
		elif ! timeout 60 "$MGATE" cat "$id" >"$T/cat.out" 2>"$T/cat.err"; then
			bad+=("$id: cat failed: $(cat "$T/cat.err")")
		elif ! ends_with "$T/cat.out" "${MSGFILE[$id]}"; then
			bad+=("$id: content differs from what was submitted")
		fi
	done
	is "${#bad[@]}" 0 "$name: every acknowledged message is listed once and intact" ||
		diag "$(printf '  %s\n' "${bad[@]}" | head -n 20)"
}

# ---------------------------------------------------------------------------
# (a) Disk full: the spool on a small tmpfs.

AN=15	# assertions in disk_full, for skips

# mount_tmpfs DIR SIZE: a tmpfs at DIR, unmounted at exit.
mount_tmpfs() {
	mkdir -p "$1"
	mount -t tmpfs -o size="$2" tmpfs "$1" || return 1
	on_exit "umount -l $(printf '%q' "$1")"
}

disk_full() {
	local id n listed missing acked_full acked_ids

	# A spool on a 2 MB filesystem: the database cannot fit, but mgate
	# must say so, not die by a signal.
	if ! mount_tmpfs "$T/tiny" 2m; then
		cannot "cannot mount a tmpfs" "$AN"
		return
	fi
	sed "s|^spool_directory = .*|spool_directory = $T/tiny/spool|" "$MAIN_CONFIG" >"$T/tiny.conf"
	run env MGATE_CONFIG="$T/tiny.conf" timeout 60 "$MGATE" init
	diag "init on a 2 MB tmpfs: exit $RUN_STATUS: $RUN_STDERR"
	like "$RUN_STATUS $RUN_STDERR" '^(0 |75 .*[Ss]pace)' \
	    "init on a 2 MB filesystem: exit 0, or 75 saying the disk is full; not a signal (got $RUN_STATUS)"

	# The real test: a tmpfs the database fits in, filled up by a filler
	# file but for a few hundred KB.
	FULL=$T/full
	if ! mount_tmpfs "$FULL" 96m; then
		cannot "cannot mount a tmpfs" $((AN - 1))
		return
	fi
	sed "s|^spool_directory = .*|spool_directory = $FULL/spool|" "$MAIN_CONFIG" >"$T/full.conf"
	export MGATE_CONFIG=$T/full.conf
	ok "init on a 96 MB tmpfs" timeout 60 "$MGATE" init
	for n in 1 2 3; do
		make_msg 15000; queue "$MSG"
	done
	ok "pickup of the first messages" timeout 60 "$MGATE" pickup
	make_msg 15000; queue "$MSG"	# this one waits in maildrop/
	dd if=/dev/zero of="$FULL/filler" bs=1M 2>/dev/null
	truncate -s -400K "$FULL/filler"
	diag "free on the spool's tmpfs: $(df -k --output=avail "$FULL" | tail -n 1 | tr -d ' ') KB"

	# Small messages of various sizes until the disk is full.
	acked_full=0
	for ((n = 0; n < 200; n++)); do
		make_msg $((2000 + RANDOM % 40000)); queue "$MSG"
		[ "$Q_RC" = 0 ] || break
		acked_full=$((acked_full + 1))
	done
	diag "disk full after $acked_full more messages; queue said (exit $Q_RC): $Q_ERR"
	is "$Q_RC" 75 "queue on a full disk exits 75 (EX_TEMPFAIL)"
	like "$Q_ERR" '[Nn]o space left' "... with a message that says the disk is full"
	like "$Q_ERR" 'not queued' "... and that the message was not queued"
	is "$(dir_list "$FULL/spool/tmp")" "" "no temporary file is left in tmp/"
	# maildrop/ holds exactly the acknowledged files, nothing of the
	# failed submission.
	acked_ids=$(for id in "${!MSGFILE[@]}"; do
		[ "${SPOOLOF[$id]}" = "$MGATE_CONFIG" ] &&
		    [ -e "$FULL/spool/maildrop/$id" ] && echo "$id"
	done | LC_ALL=C sort)
	is "$(dir_list "$FULL/spool/maildrop")" "$acked_ids" \
	    "maildrop/ holds the acknowledged messages and nothing else"

	# Pickup and list while the disk is full (not a byte left): either
	# they work, or they exit 75 with a message; never a signal, never a
	# silent partial answer.
	dd if=/dev/zero of="$FULL/filler2" bs=4k 2>/dev/null
	diag "free on the spool's tmpfs: $(df -k --output=avail "$FULL" | tail -n 1 | tr -d ' ') KB"
	run timeout 60 "$MGATE" pickup
	diag "pickup on the full disk: exit $RUN_STATUS: $(grep -v 'queue active' <<<"$RUN_STDERR" | tail -n 3)"
	like "$RUN_STATUS $RUN_STDERR" '^(0 |75 .*[Ss]pace)' \
	    "pickup on a full disk: exit 0, or 75 saying the disk is full; not a signal (got $RUN_STATUS)"
	run timeout 60 "$MGATE" list --json
	listed=$(jq -r '.[].id' <<<"$RUN_STDOUT" 2>/dev/null)
	missing=0
	for id in "${!MSGFILE[@]}"; do
		[ "${SPOOLOF[$id]}" = "$MGATE_CONFIG" ] || continue
		grep -qx "$id" <<<"$listed" || missing=$((missing + 1))
	done
	diag "list on the full disk: exit $RUN_STATUS, $(grep -c . <<<"$listed") listed, $missing acknowledged not listed: $(grep -v 'queue active' <<<"$RUN_STDERR" | tail -n 3)"
	like "$RUN_STATUS $missing $RUN_STDERR" '^(0 0 |75 [0-9]+ .*[Ss]pace)' \
	    "list on a full disk: exit 0 showing every acknowledged message, or 75 saying the disk is full ($missing not shown, exit $RUN_STATUS)"
	is "$(dir_list "$FULL/spool/corrupt")" "" "nothing moved to corrupt/ on the full disk"

	# Room again: everything acknowledged is there, once, intact.
	rm -f "$FULL/filler" "$FULL/filler2"
	check_all "after freeing space"
	is "$(dir_list "$FULL/spool/maildrop")" "" "maildrop/ is empty after pickup with room again"
	make_msg 5000; queue "$MSG"
	is "$Q_RC" 0 "queue works again once there is room"
	export MGATE_CONFIG=$MAIN_CONFIG
}

if [ "$(id -u)" != 0 ]; then
	cannot "needs root: mounts a tmpfs for a full disk" "$AN"
else
	disk_full
fi

# ---------------------------------------------------------------------------
# (b) Faults injected into `mgate queue' (libfiu).

ok "mgate init" "$MGATE" init
for n in 1 2 3; do
	make_msg $((1000 + RANDOM % 5000)); queue "$MSG"
done
ok "pickup of the earlier messages" "$MGATE" pickup
make_msg 3000; queue "$MSG"	# an earlier message still in maildrop/
is "$Q_RC" 0 "a message waiting in maildrop/ before the faults"

# queue_fault NAME SIZE ENABLE... : the message must not be queued.
queue_fault() {
	local name=$1 size=$2 before
	shift 2
	before=$(dir_list "$SPOOL/maildrop")
	make_msg "$size"; queue "$MSG" fiu "$@" --
	diag "$name: exit $Q_RC: $Q_ERR"
	is "$Q_RC" 75 "queue, $name: exits 75 (EX_TEMPFAIL)"
	is "$(dir_list "$SPOOL/maildrop")" "$before" "queue, $name: nothing new in maildrop/"
	is "$(dir_list "$SPOOL/tmp")" "" "queue, $name: nothing left in tmp/"
}

queue_fault "EIO on fsync" 2000 'enable name=posix/io/sync/fsync,failinfo=5'
like "$Q_ERR" 'Input/output error' "queue, EIO on fsync: the message names the I/O error"
like "$Q_ERR" 'not queued' "queue, EIO on fsync: the message says the mail was not queued"

queue_fault "ENOSPC on write (small message)" 2000 'enable name=posix/io/rw/write,failinfo=28'
like "$Q_ERR" '[Nn]o space left' "queue, ENOSPC on write: the message says the disk is full"

queue_fault "ENOSPC on write (1 MB message)" 1000000 'enable name=posix/io/rw/write,failinfo=28'
like "$Q_ERR" '[Nn]o space left' "queue, ENOSPC on write mid-message: the message says the disk is full"

queue_fault "EIO on write (1 MB message)" 1000000 'enable name=posix/io/rw/write,failinfo=5'
like "$Q_ERR" 'I/O error|Input/output error' "queue, EIO on write mid-message: the message names the I/O error"

queue_fault "EIO on rename" 2000 'enable name=posix/io/dir/rename,failinfo=5'
like "$Q_ERR" 'Input/output error|I/O error' "queue, EIO on rename: the message names the I/O error"

# The directory fsync after the rename fails: the name may not be
# durable, so the message must be taken back (exit 75, gone).
if [ "$HAVE_STRACE" = 1 ]; then
	before=$(dir_list "$SPOOL/maildrop")
	make_msg 2000; queue "$MSG" "${TRACE[@]}" -qq -o /dev/null -e trace=fsync -e inject=fsync:error=EIO:when=2
	diag "EIO on the directory fsync: exit $Q_RC: $Q_ERR"
	is "$Q_RC" 75 "queue, EIO on the directory fsync after the rename: exits 75"
	is "$(dir_list "$SPOOL/maildrop")" "$before" "queue, EIO on the directory fsync: the file is taken back from maildrop/"
else
	cannot "strace not installed (add it to tests/lib/install-deps)" 2
fi

# Short writes are not errors: the message is queued, intact.
make_msg 300000; queue "$MSG" fiu 'enable name=posix/io/rw/write/reduce' --
is "$Q_RC" 0 "queue with every write short: exits 0" || diag "$Q_ERR"

# ---------------------------------------------------------------------------
# (c) Faults in `mgate pickup': reported, the file stays, and a later clean
# pickup imports it exactly once.

pickup_fault() { # NAME REGEX ENABLE...: REGEX: what the message must say
	local name=$1 re=$2 rc=0
	shift 2
	# Only this message waits: pickup goes through maildrop/ in name
	# order and stops at the first failure.
	timeout 60 "$MGATE" pickup >/dev/null 2>&1
	corrupt_before=$(dir_list "$SPOOL/corrupt")
	make_msg $((1000 + RANDOM % 3000)); queue "$MSG"
	PF_ID=$Q_ID
	fiu "$@" -- timeout 60 "$MGATE" pickup >/dev/null 2>"$T/p.err" || rc=$?
	_tap_check_sanitizer_logs || true
	diag "pickup, $name: exit $rc: $(grep -v 'queue active' "$T/p.err" | tail -n 3)"
	is "$rc" 75 "pickup, $name: exits 75"
	like "$(cat "$T/p.err")" "$re" "pickup, $name: says what went wrong"
	ok "pickup, $name: the file stays in maildrop/" test -e "$SPOOL/maildrop/$PF_ID"
	is "$(dir_list "$SPOOL/corrupt")" "$corrupt_before" "pickup, $name: nothing moved to corrupt/"
}

pickup_fault "EIO on the rename after the commit" 'cannot move.*Input/output error' 'enable name=posix/io/dir/rename,failinfo=5'
# Committed but not moved: cat finds it (body still in maildrop/).
ok "pickup, EIO on the rename: cat shows the committed message" "$MGATE" cat "$PF_ID"

pickup_fault "EIO on the log flush (commit fails)" 'Input/output error|I/O error' 'enable name=posix/io/sync/fdatasync,failinfo=5'
# Berkeley DB writes its log and pages with pwrite(): fail both.
pickup_fault "ENOSPC on write" '[Nn]o space left' 'enable name=posix/io/rw/write,failinfo=28' \
    'enable name=posix/io/rw/pwrite,failinfo=28'

# `list' runs pickup first; when that fails, list must not present a
# partial queue as the whole truth: it shows every acknowledged message,
# or exits 75 saying why.  The failure: EIO on the flush of the log file
# at pickup's first commit (strace -P: only that file's fdatasync).
if [ "$HAVE_STRACE" = 1 ]; then
	timeout 60 "$MGATE" pickup >/dev/null 2>&1
	make_msg 2500; queue "$MSG"
	lf_id=$Q_ID
	log=$(ls "$SPOOL"/db/log.* | LC_ALL=C sort | tail -n 1)
	rc=0
	"${TRACE[@]}" -f -qq -o /dev/null -P "$log" -e trace=fdatasync,fsync \
	    -e inject=fdatasync,fsync:error=EIO \
	    timeout 60 "$MGATE" list --json >"$T/l.out" 2>"$T/l.err" || rc=$?
	_tap_check_sanitizer_logs || true
	shown=0
	jq -r '.[].id' "$T/l.out" 2>/dev/null | grep -qx "$lf_id" && shown=1
	diag "list whose pickup fails (EIO on the log flush): exit $rc, the waiting message shown: $shown: $(grep -v 'queue active' "$T/l.err" | tail -n 2)"
	like "$rc $shown" '^(0 1|75 [01])$' \
	    "list whose pickup fails: exit 0 showing the waiting acknowledged message, or 75 (got exit $rc, shown $shown)"
else
	cannot "strace not installed (add it to tests/lib/install-deps)" 1
fi

# Short writes in the database layer are not errors.
make_msg 4000; queue "$MSG"
sw_id=$Q_ID
rc=0
fiu 'enable name=posix/io/rw/write/reduce' 'enable name=posix/io/rw/pwrite/reduce' -- \
    timeout 60 "$MGATE" pickup >/dev/null 2>"$T/p.err" || rc=$?
is "$rc" 0 "pickup with every write short: exits 0" || diag "$(cat "$T/p.err")"
ok "pickup with every write short: the message is imported" test -e "$SPOOL/queue/$sw_id"

# A read error on one maildrop file is an I/O error, not corruption: the
# file must stay (and not go to corrupt/ as if it were damaged).
if [ "$HAVE_STRACE" = 1 ]; then
	# Read 1: the magic number; read 2 of a small file: the check that
	# nothing follows the end record; read 3 of a large one: content.
	for when in 1 2 3; do
		timeout 60 "$MGATE" pickup >/dev/null 2>&1
		corrupt_before=$(dir_list "$SPOOL/corrupt")
		size=3000
		[ "$when" = 3 ] && size=400000
		make_msg $size; queue "$MSG"
		id=$Q_ID
		rc=0
		"${TRACE[@]}" -f -qq -o /dev/null -P "$SPOOL/maildrop/$id" -e trace=read \
		    -e inject=read:error=EIO:when=$when \
		    timeout 60 "$MGATE" pickup >/dev/null 2>"$T/p.err" || rc=$?
		_tap_check_sanitizer_logs || true
		diag "pickup, EIO on read $when of one maildrop file: exit $rc: $(grep -v 'queue active' "$T/p.err" | tail -n 3)"
		is "$rc" 75 "pickup, EIO on read $when of a maildrop file: exits 75"
		ok "pickup, EIO on read $when of a maildrop file: the file stays in maildrop/" \
		    test -e "$SPOOL/maildrop/$id"
		is "$(dir_list "$SPOOL/corrupt")" "$corrupt_before" "pickup, EIO on read $when of a maildrop file: nothing moved to corrupt/"
	done
else
	cannot "strace not installed (add it to tests/lib/install-deps)" 9
fi

# A clean pickup now imports everything exactly once.
run timeout 60 "$MGATE" pickup
is "$RUN_STATUS" 0 "a clean pickup after the faults exits 0" || diag "$RUN_STDERR"
is "$(dir_list "$SPOOL/maildrop")" "" "... and empties maildrop/"
check_all "after the faults"
is "$(dir_list "$SPOOL/corrupt")" "" "nothing in corrupt/ at the end"

done_testing
