#!/usr/bin/env bash
# 56-import-kill.t - kill -9 of `mgate import' at random points (issue 3:
# "kill -9 during import at random points (>=100): after a re-import,
# everything exactly once").
#
# The site exports bundles of a few hundred corpus messages (200 for the
# first, whose import is timed; more if that took under ~500 ms, up to
# 400).  Each bundle
# is imported at the gateway again and again, every attempt killed with
# SIGKILL after a random delay, then imported once more without a kill;
# the next bundle follows.  Delays: three quarters uniform in 0-300 ms,
# one quarter uniform over the measured duration of a whole import (so
# that the commit and the acknowledgement are hit as well as the
# staging).  Only a kill that found the process still running counts.
# Every import that is not killed runs under a watchdog: one that hangs
# (a spool wedged by a killed process) is shown with gdb and fails.
#
# After each bundle: the final import exits 0, says either "N new" or
# "imported before", and writes the acknowledgement; every message sent
# so far is listed exactly once by peer_id.  In the end: every message at
# the gateway exactly once, its content byte-identical to the site's (body
# files compared for all, `cat' at both ends for a sample), nothing in
# the gateway's tmp/, no listed message without its body file; body files
# in queue/ that no message names (staged by a killed import) are counted
# and reported as known debris, not failures.  Re-importing every bundle
# changes nothing; the acknowledgements turn every site recipient
# "accepted".
#
# Environment: MGATE_KILL_SEED (repeat a run), MGATE_IMPORT_KILLS (kills
# to reach; default 100, 34 under ASan), MGATE_KILL_BUNDLE (messages per
# bundle before scaling; default 200, 80 under ASan), MGATE_KILL_CAT_EVERY
# (`mgate cat' at both ends for every Nth message; default 10: every cat
# sweeps queue/, which holds thousands of debris files by then; the content
# of every message is compared from the body files anyway).
set -uo pipefail
. "$(dirname "$0")/lib/testlib.sh"

need_mgate
need_cmd jq cmp
mgate_setup
CORPUS=$(corpus_dir) || skip_all "the shared corpus is missing"
ASAN=${MGATE_ASAN:-0}
if [ "$ASAN" = 1 ]; then
	KILL_TARGET=${MGATE_IMPORT_KILLS:-34}
	N0=${MGATE_KILL_BUNDLE:-80}
	HANG=120
	CAT_EVERY=${MGATE_KILL_CAT_EVERY:-10}
else
	KILL_TARGET=${MGATE_IMPORT_KILLS:-100}
	N0=${MGATE_KILL_BUNDLE:-200}
	HANG=40
	CAT_EVERY=${MGATE_KILL_CAT_EVERY:-10}
fi
SEED=${MGATE_KILL_SEED:-$(( $(date +%s%N) % 1000000007 ))}
RANDOM=$SEED
START=$(date +%s)
diag "seed $SEED (MGATE_KILL_SEED=$SEED repeats the delays), kill target $KILL_TARGET, spools under $T"

site() { "$MGATE" -c "$T/site.conf" "$@"; }
gw() { "$MGATE" -c "$T/gw.conf" "$@"; }

for k in site gw; do
	"$MGATE" keygen "$T/$k.key" >"$T/keygen.out" 2>&1 ||
	    BAIL_OUT "mgate keygen $T/$k.key: $(cat "$T/keygen.out")"
done
common() { # SPOOL HOSTNAME LOCALNAME KEY
	cat <<EOF
spool_directory = $1
myhostname = $2
local_name = $3
log_destination = stderr
private_key = $4
pickup_after_queue = no
EOF
}
{
	common "$T/site" ship.example.org ship "$T/site.key"
	printf '[peer gw]\ntransport = file\npublic_key = %s\nmax_bundle_size = 1G\n' "$T/gw.key.pub"
} >"$T/site.conf"
{
	common "$T/gw" gw.example.net gw "$T/gw.key"
	printf '[peer ship]\ntransport = file\npublic_key = %s\n' "$T/site.key.pub"
} >"$T/gw.conf"
# A scratch gateway to time a whole import on.
sed "s#^spool_directory = .*#spool_directory = $T/probe#" "$T/gw.conf" >"$T/probe.conf"
ok "init the site spool" site init
ok "init the gateway spool" gw init
ok "init a scratch gateway spool" "$MGATE" -c "$T/probe.conf" init

# ---------------------------------------------------------------------------
# Helpers.

# Microseconds since the epoch, without a fork.
now_us() { _now=${EPOCHREALTIME//[.,]/}; }
# Sleep without a fork: a read with a timeout from a FIFO nobody writes.
mkfifo "$T/sleep.fifo"
exec {SLEEP_FD}<>"$T/sleep.fifo"
usleep_() { # MICROSECONDS
	local us=$1
	[ "$us" -gt 0 ] || return 0
	read -r -t "$(printf '%d.%06d' $((us / 1000000)) $((us % 1000000)))" \
	    -u "$SLEEP_FD" _ || true
}

# Is process PID still running (not a zombie, not gone)?
alive() {
	local st=
	{ read -r _ _ st _ <"/proc/$1/stat"; } 2>/dev/null || return 1
	[ "$st" != Z ] && [ "$st" != X ]
}

# Where a hung process is stuck (gdb on the running binary, if present).
show_hang() { # PID WHAT
	diag "HANG: $2 (pid $1) still running after ${HANG}s" 2>&3
	diag "  wchan: $(cat "/proc/$1/wchan" 2>/dev/null); state: $(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" 2>&3
	if command -v gdb >/dev/null 2>&1; then
		diag "$(timeout 60 gdb -batch "/proc/$1/exe" -p "$1" -ex bt 2>&1 |
		    grep -E '^#' | head -n 20 | sed 's/^/  /')" 2>&3
	fi
}

# bounded CMD [ARGS...]: like run, but a command still running after
# $HANG seconds is shown and killed: RUN_STATUS 124, HUNG incremented.
HUNG=0
bounded() {
	local pid deadline hung=0
	"$@" >"$T/bounded.out" 2>"$T/bounded.err" &
	pid=$!
	now_us
	deadline=$((_now + HANG * 1000000))
	while alive "$pid"; do
		now_us
		if [ "$_now" -gt "$deadline" ]; then
			show_hang "$pid" "$*"
			kill -KILL "$pid" 2>/dev/null
			hung=1
			HUNG=$((HUNG + 1))
			break
		fi
		usleep_ 5000
	done
	RUN_STATUS=0
	wait "$pid" 2>/dev/null || RUN_STATUS=$?
	[ "$hung" = 0 ] || RUN_STATUS=124
	RUN_STDOUT=$(cat "$T/bounded.out")
	RUN_STDERR=$(cat "$T/bounded.err")
	_tap_check_sanitizer_logs || true
}

# The corpus, From lines stripped, in a fixed shuffled order; batches of
# it are queued with `mgate -v queue', four at a time.
cat >"$T/corpus.py" <<'EOF'
# corpus.py prepare CORPUS OUTDIR SEED  -> OUTDIR/list (shuffled paths)
# corpus.py queue MGATE CONF LISTFILE FROM COUNT MAPFILE (wraps around)
import os, random, re, subprocess, sys, concurrent.futures as cf
if sys.argv[1] == 'prepare':
    corpus, out, seed = sys.argv[2], sys.argv[3], int(sys.argv[4])
    os.makedirs(out, exist_ok=True)
    paths = []
    for d in sorted(os.listdir(corpus)):
        p = os.path.join(corpus, d)
        if not os.path.isdir(p):
            continue
        for f in sorted(os.listdir(p)):
            with open(os.path.join(p, f), 'rb') as fh:
                data = fh.read()
            if data.startswith(b'From '):
                nl = data.find(b'\n')
                data = b'' if nl < 0 else data[nl + 1:]
            dst = os.path.join(out, d + '.' + f)
            with open(dst, 'wb') as fh:
                fh.write(data)
            paths.append(dst)
    random.Random(seed).shuffle(paths)
    with open(os.path.join(out, 'list'), 'w') as fh:
        fh.write(''.join(p + '\n' for p in paths))
    print(len(paths))
    sys.exit(0)
mg, conf, lst, start, count, mapfile = sys.argv[2:8]
allp = [l for l in open(lst).read().split('\n') if l]
paths = [allp[(int(start) + i) % len(allp)] for i in range(int(count))]
rx = re.compile(rb'^[a-z]+: queued as ([0-9A-Z]{16})$', re.M)
def q(p):
    with open(p, 'rb') as fh:
        r = subprocess.run([mg, '-c', conf, '-v', 'queue', '-i',
                            'bob@example.net'], stdin=fh,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    m = rx.search(r.stderr)
    return p, r.returncode, (m.group(1).decode() if m else None), r.stderr
bad = 0
with cf.ThreadPoolExecutor(4) as ex, open(mapfile, 'a') as mf:
    for p, rc, qid, err in ex.map(q, paths):
        if rc != 0 or qid is None:
            bad += 1
            print('queue %s: exit %d: %s' % (p, rc, err[-300:]),
                  file=sys.stderr)
        else:
            mf.write('%s\t%s\n' % (qid, p))
print('queued %d failed %d' % (len(paths) - bad, bad))
EOF

cat >"$T/compare.py" <<'EOF'
# compare.py MGATE SITECONF GWCONF PEER SITESPOOL GWSPOOL CATEVERY [MAPFILE]
# Matches the gateway's messages from PEER (by peer_id) with the site's
# messages and compares envelopes and content.  The content of EVERY pair
# is compared in full from the two body files (the format in
# include/mgate/maildrop.h: magic, then tag + be32 length + value fields;
# content is the 'C' fields; 'Z' = be64 size + SHA-256 of the content,
# checked here as cat checks it).  For every CATEVERY-th pair (every pair
# with bundle:ID, restricted to that bundle) `mgate cat' runs at both
# ends: the two outputs must be identical, and equal to the body files'
# content.  With MAPFILE (QID<TAB>PATH) every site message must be the
# Received header mgate prepends (plus any Message-ID/Date/From it adds)
# and exactly the submitted bytes.
# Also: body files in GWSPOOL/queue that no gateway message names
# ("orphans"), and listed messages without a body file ("nobody").
# Prints "key value" lines, then up to 10 "problem ..." lines.
import hashlib, json, os, re, subprocess, sys, concurrent.futures as cf
mg, sconf, gconf, peer, sdir, gdir, every = sys.argv[1:8]
every = max(1, int(every))
mapfile = sys.argv[8] if len(sys.argv) > 8 else None
only = None
if mapfile and mapfile.startswith('bundle:'):
    only, mapfile = mapfile[7:], None
def lst(conf):
    r = subprocess.run([mg, '-c', conf, 'list', '--json'],
                       capture_output=True, timeout=600)
    if r.returncode != 0:
        sys.exit('list %s: exit %d: %s' % (conf, r.returncode, r.stderr))
    return json.loads(r.stdout)
def body(spool, qid):
    """(None, content) for a sound body file, else (reason, None)."""
    for sub in ('queue', 'maildrop'):
        p = os.path.join(spool, sub, qid)
        if os.path.exists(p):
            break
    else:
        return 'no body file', None
    d = open(p, 'rb').read()
    if d[:8] != b'MGDROP\x00\x01':
        return 'bad magic', None
    off, parts, z = 8, [], None
    while off < len(d):
        if z is not None:
            return 'data after the Z field', None
        if off + 5 > len(d):
            return 'truncated field header', None
        tag, n = d[off], int.from_bytes(d[off + 1:off + 5], 'big')
        v = d[off + 5:off + 5 + n]
        if len(v) != n:
            return 'truncated field', None
        off += 5 + n
        if tag == ord('C'):
            parts.append(v)
        elif tag == ord('Z'):
            z = v
    c = b''.join(parts)
    if z is None or len(z) != 40:
        return 'no Z field', None
    if int.from_bytes(z[:8], 'big') != len(c) or \
            z[8:] != hashlib.sha256(c).digest():
        return 'size or digest mismatch', None
    return None, c
def cat(conf, qid):
    try:
        r = subprocess.run([mg, '-c', conf, 'cat', qid], capture_output=True,
                           timeout=120)
    except subprocess.TimeoutExpired:
        return -1, b'', b'timed out'
    return r.returncode, r.stdout, r.stderr
site = [m for m in lst(sconf) if 'peer' not in m]
gwall = lst(gconf)
gwl = [m for m in gwall if m.get('peer') == peer]
listed = {m['id'] for m in gwall}
files = {f for f in os.listdir(os.path.join(gdir, 'queue')) if len(f) == 16}
orphans = sorted(files - listed)
nobody = sorted(listed - files)
sby = {m['id']: m for m in site}
problems = []
def problem(kind, limit, text):
    cnt[kind] = cnt.get(kind, 0) + 1
    if cnt[kind] <= limit:
        problems.append(text)
cnt = {}
byp = {}
for m in gwl:
    byp.setdefault(m.get('peer_id'), []).append(m)
dups = {k: v for k, v in byp.items() if len(v) > 1}
for k, v in list(dups.items())[:3]:
    problems.append('peer_id %s listed %d times: %s' %
                    (k, len(v), ' '.join(x['id'] for x in v)))
missing = [i for i in sby if i not in byp]
extra = [k for k in byp if k not in sby]
for i in missing[:3]:
    problems.append('site message %s never arrived' % i)
for q in nobody[:3]:
    problems.append('listed message %s has no body file in queue/' % q)
for k in extra[:3]:
    problems.append('gateway message %s has unknown peer_id %s' %
                    (byp[k][0]['id'], k))
pairs = []
for k, v in sorted(byp.items()):
    if k not in sby:
        continue
    s, g = sby[k], v[0]
    sr = [r['address'] for r in s['recipients']]
    gr = [r['address'] for r in g['recipients']]
    if s['sender'] != g['sender'] or sr != gr or s['size'] != g['size']:
        problem('envelope_bad', 3, 'envelope of %s differs at %s: %r %r %r / '
                '%r %r %r' % (k, g['id'], s['sender'], sr, s['size'],
                              g['sender'], gr, g['size']))
    if only is None or any(r.get('bundle') == only for r in s['recipients']):
        pairs.append((k, g['id']))
scontent = {}
for s, g in pairs:
    e1, a = body(sdir, s)
    e2, b = body(gdir, g)
    if e1 or e2:
        problem('body_bad', 3, 'body file: site %s: %s; gateway %s: %s' %
                (s, e1 or 'ok', g, e2 or 'ok'))
    elif a != b:
        n = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]),
                 min(len(a), len(b)))
        problem('body_differ', 3, 'content differs: site %s (%d bytes), '
                'gateway %s (%d bytes), first difference at byte %d' %
                (s, len(a), g, len(b), n))
    scontent[s] = a
sel = pairs if only is not None else pairs[::every]
def catpair(p):
    return p, cat(sconf, p[0]), cat(gconf, p[1])
with cf.ThreadPoolExecutor(4) as ex:
    for (s, g), a, b in ex.map(catpair, sel):
        cnt['cat_checked'] = cnt.get('cat_checked', 0) + 1
        if a[0] != 0 or b[0] != 0:
            problem('cat_errors', 3, 'cat %s/%s: exit %d/%d: %s %s' % (
                s, g, a[0], b[0], a[2][-1500:], b[2][-1500:]))
        elif a[1] != b[1]:
            problem('cat_differ', 3, 'cat differs: site %s (%d bytes), '
                    'gateway %s (%d bytes)' % (s, len(a[1]), g, len(b[1])))
        elif scontent.get(s) is not None and a[1] != scontent[s]:
            problem('cat_vs_body', 3, 'cat of %s is not its body file\'s '
                    'content' % s)
added = {}
hdr = re.compile(rb'^([A-Za-z-]+):')
if mapfile:
    for line in open(mapfile):
        qid, path = line.rstrip('\n').split('\t')
        cnt['orig_checked'] = cnt.get('orig_checked', 0) + 1
        data = open(path, 'rb').read()
        c = scontent.get(qid)
        if c is None:
            c = body(sdir, qid)[1] or b''
        ok = c.startswith(b'Received: by ') and c.endswith(data)
        if ok:
            head = c[:len(c) - len(data)]
            ok = (b'\tid ' + qid.encode() + b';') in head
            for l in head.split(b'\n')[1:-1]:
                if l.startswith((b'\t', b' ')):
                    continue
                m = hdr.match(l)
                if not m or m.group(1).lower() not in (b'received',
                                                       b'message-id',
                                                       b'date', b'from'):
                    ok = False
                    break
                if m.group(1).lower() != b'received':
                    k = m.group(1).decode()
                    added[k] = added.get(k, 0) + 1
        if not ok:
            problem('orig_bad', 3, 'site copy of %s (%s) is not Received + '
                    'the submitted bytes' % (qid, path))
for k, v in [('site', len(site)), ('gateway', len(gwl)),
             ('distinct', len(byp)), ('dups', len(dups)),
             ('missing', len(missing)), ('extra', len(extra)),
             ('compared', len(pairs)), ('orphans', len(orphans)),
             ('nobody', len(nobody))]:
    print(k, v)
for k in ('envelope_bad', 'body_bad', 'body_differ', 'cat_checked',
          'cat_errors', 'cat_differ', 'cat_vs_body', 'orig_checked',
          'orig_bad'):
    print(k, cnt.get(k, 0))
print('added', ','.join('%s=%d' % kv for kv in sorted(added.items())) or
      'none')
for p in problems[:10]:
    print('problem', p)
EOF

# compare: run compare.py (cat for every $CAT_EVERY-th message); sets
# CMP_<key> from its report.
compare() {
	local k v l rc=0
	"$PYTHON3" "$T/compare.py" "$MGATE" "$T/site.conf" "$T/gw.conf" ship \
	    "$T/site" "$T/gw" "$CAT_EVERY" "$T/map.tsv" >"$T/cmp.out" 2>"$T/cmp.err" || rc=$?
	[ "$rc" = 0 ] || fail "compare.py ran (exit $rc): $(tail -c 1500 "$T/cmp.err")"
	while read -r k v; do
		[ "$k" = problem ] && continue
		printf -v "CMP_$k" '%s' "$v"
	done <"$T/cmp.out"
	grep '^problem ' "$T/cmp.out" | while IFS= read -r l; do diag "  $l"; done
	return "$rc"
}

NPREP=$("$PYTHON3" "$T/corpus.py" prepare "$CORPUS" "$T/orig" "$SEED")
ok "the corpus is there ($NPREP messages)" test "${NPREP:-0}" -gt 1000
NEXT=0			# next index into the shuffled list
NSENT=0			# messages exported so far
BUNDLES=()		# bundle files
BIDS=()			# their IDs
BN=()			# their message counts

# new_bundle N: queue the next N corpus messages, export them as one
# bundle $T/bK.mgb; appends to BUNDLES, BIDS, BN.
new_bundle() {
	local n=$1 k=$((${#BUNDLES[@]} + 1)) out
	out=$("$PYTHON3" "$T/corpus.py" queue "$MGATE" "$T/site.conf" \
	    "$T/orig/list" "$NEXT" "$n" "$T/map.tsv" 2>"$T/q.err")
	NEXT=$((NEXT + n))
	if [ "$out" != "queued $n failed 0" ]; then
		fail "queue $n messages for bundle $k: $out $(head -c 600 "$T/q.err")"
		return 1
	fi
	run site export "$T/b$k.mgb"
	if [ "$RUN_STATUS" != 0 ] ||
	    ! [[ $RUN_STDOUT =~ bundle\ ([0-9a-f]{32})\ for\ gw:\ ([0-9]+)\ messages? ]]; then
		fail "export of bundle $k: exit $RUN_STATUS: $RUN_STDOUT $RUN_STDERR"
		return 1
	fi
	BUNDLES+=("$T/b$k.mgb")
	BIDS+=("${BASH_REMATCH[1]}")
	BN+=("${BASH_REMATCH[2]}")
	NSENT=$((NSENT + BASH_REMATCH[2]))
	[ "${BASH_REMATCH[2]}" = "$n" ] ||
	    fail "bundle $k carries ${BASH_REMATCH[2]} messages, not $n"
}

# ---------------------------------------------------------------------------
# How long does a whole import take here?  Scale the bundles to it.

new_bundle "$N0" || BAIL_OUT "cannot make the first bundle"
exec 3>&2
now_us; t0=$_now
bounded "$MGATE" -c "$T/probe.conf" import "${BUNDLES[0]}"
now_us; D0=$(( (_now - t0) / 1000 ))
is "$RUN_STATUS" 0 "a whole import of $N0 messages works (scratch spool)" || diag "$RUN_STDERR"
# At least ~500 ms, so that the 0-300 ms window lands inside the import
# (between N0 and 2*N0 messages; smaller bundles would spend most of
# their time in start-up, commit and acknowledgement).
N=$(( N0 * 500 / (D0 > 0 ? D0 : 1) ))
[ "$N" -le $((2 * N0)) ] || N=$((2 * N0))
[ "$N" -ge "$N0" ] || N=$N0
diag "a whole import of $N0 messages takes $D0 ms here; bundles of $N messages from the second on"
rm -rf "$T/probe"

# ---------------------------------------------------------------------------
# The kills.

# bash reports every killed job on its stderr ("line N: PID Killed ..."):
# the loop's stderr goes to a log, and diagnostics to fd 3.
d3() { diag "$@" 2>&3; }
KILLS=0 LATE=0 ATTEMPTS=0 ROUNDS=0 HANGS=0 BADRC=0 FINAL_BAD=0 ONCE_BAD=0
WIN_A=0 WIN_B=0
declare -A PHASE=()	# where the kills landed
DFULL=$((D0 * N / N0))	# duration of a whole import, updated as we go
b=0
while [ "$KILLS" -lt "$KILL_TARGET" ]; do
	if [ "$b" -ge "${#BUNDLES[@]}" ]; then
		new_bundle "$N" || break
	fi
	B=${BUNDLES[b]}
	ROUNDS=$((ROUNDS + 1))
	want=$((10 + RANDOM % 9))	# kills on this bundle
	got=0 late=0
	while [ "$got" -lt "$want" ] && [ "$KILLS" -lt "$KILL_TARGET" ]; do
		if ((RANDOM % 4)); then
			delay=$(( (RANDOM * 32768 + RANDOM) % 300001 ))
			WIN_A=$((WIN_A + 1))
		else
			delay=$(( (RANDOM * 32768 + RANDOM) % (DFULL * 1000 + 1) ))
			WIN_B=$((WIN_B + 1))
		fi
		qbefore=$(ls -A "$T/gw/queue" | wc -l)
		tbefore=$(ls -A "$T/gw/tmp" | wc -l)
		rm -f "$B.ack"
		ATTEMPTS=$((ATTEMPTS + 1))
		now_us; t0=$_now
		"$MGATE" -c "$T/gw.conf" import "$B" >"$T/att.out" 2>"$T/att.err" &
		pid=$!
		now_us
		usleep_ $((t0 + delay - _now))
		kill -KILL "$pid" 2>/dev/null
		# A process that does not go away is stuck in the kernel.
		deadline=$((t0 + delay + HANG * 1000000))
		while alive "$pid"; do
			now_us
			if [ "$_now" -gt "$deadline" ]; then
				d3 "HANG: import pid $pid survives SIGKILL for ${HANG}s"
				HANGS=$((HANGS + 1))
				break
			fi
			usleep_ 5000
		done
		wait "$pid" 2>/dev/null
		rc=$?
		if [ "$rc" = 137 ]; then
			KILLS=$((KILLS + 1))
			got=$((got + 1))
			qafter=$(ls -A "$T/gw/queue" | wc -l)
			ntmp=$(ls -A "$T/gw/tmp" | wc -l)
			if [ "$qafter" -gt "$qbefore" ] || [ "$ntmp" -gt "$tbefore" ]; then
				PHASE[staging_or_later]=$((${PHASE[staging_or_later]:-0} + 1))
			else
				PHASE[before_any_body_file]=$((${PHASE[before_any_body_file]:-0} + 1))
			fi
		elif [ "$rc" = 0 ]; then
			# Finished before its kill: the bundle is in.  A replay
			# means the kill before it came after the commit.
			LATE=$((LATE + 1))
			if grep -q "imported before; nothing changed" "$T/att.out"; then
				late=replay
			else
				late=1
			fi
			break
		else
			BADRC=$((BADRC + 1))
			d3 "import of $B exited $rc (not killed): $(tail -c 600 "$T/att.err")"
		fi
	done
	# The re-import that completes.
	rm -f "$B.ack"
	now_us; t0=$_now
	bounded "$MGATE" -c "$T/gw.conf" import "$B"
	now_us
	if [ "$RUN_STATUS" = 124 ]; then
		d3 "bundle $((b + 1)): the import after $got kills hangs: the gateway spool is wedged; stopping the kills"
		break
	fi
	if [ "$RUN_STATUS" = 0 ] && [[ $RUN_STDOUT == *"(${BN[b]} new, 0 known)"* ]]; then
		DFULL=$(( (_now - t0) / 1000 ))
		PHASE[committed_by_the_reimport]=$((${PHASE[committed_by_the_reimport]:-0} + 1))
	elif [ "$RUN_STATUS" = 0 ] && [[ $RUN_STDOUT == *"imported before; nothing changed"* ]]; then
		if [ "$late" = 1 ]; then
			PHASE[committed_by_an_attempt_that_beat_its_kill]=$((${PHASE[committed_by_an_attempt_that_beat_its_kill]:-0} + 1))
		else
			# The last kill came after the commit.
			PHASE[killed_after_the_commit]=$((${PHASE[killed_after_the_commit]:-0} + 1))
		fi
	else
		FINAL_BAD=$((FINAL_BAD + 1))
		d3 "bundle $((b + 1)): the re-import after the kills: exit $RUN_STATUS: $RUN_STDOUT $(tail -c 800 <<<"$RUN_STDERR")"
	fi
	[ -s "$B.ack" ] || { FINAL_BAD=$((FINAL_BAD + 1)); d3 "bundle $((b + 1)): no acknowledgement after the re-import"; }
	# Exactly once so far (list only; the bytes are compared at the end).
	n=$(timeout -s KILL "$HANG" "$MGATE" -c "$T/gw.conf" list --json | jq -r '[.[] | select(.peer == "ship") | .peer_id] | "\(length) \(unique | length)"')
	if [ "$n" != "$NSENT $NSENT" ]; then
		ONCE_BAD=$((ONCE_BAD + 1))
		d3 "after bundle $((b + 1)) ($got kills): gateway messages / distinct peer_ids: $n, expected $NSENT $NSENT"
	fi
	b=$((b + 1))
done 2>>"$T/loop.err"
exec 3>&-
grep -v -E '^[^ ]+: line [0-9]+: +[0-9]+ Killed ' "$T/loop.err" | while IFS= read -r l; do diag "$l"; done

diag "$KILLS kills in $ATTEMPTS attempts on $ROUNDS bundles ($LATE attempts finished before their kill); delays: $WIN_A in 0-300 ms, $WIN_B over the whole import (~${DFULL} ms)"
for k in "${!PHASE[@]}"; do
	diag "  $k: ${PHASE[$k]}"
done
is "$HUNG" 0 "no import after a kill hangs (${HANG}s)"
if [ "$HUNG" != 0 ]; then
	diag "the gateway spool is wedged: skipping the end-state checks"
	done_testing
fi
ok "at least $KILL_TARGET imports were killed while running ($KILLS)" test "$KILLS" -ge "$KILL_TARGET"
ok "some kills landed after body files were staged" test "${PHASE[staging_or_later]:-0}" -gt 0
is "$HANGS" 0 "no import survived SIGKILL"
is "$BADRC" 0 "no unkilled import failed"
is "$FINAL_BAD" 0 "every re-import after the kills exits 0, reports the bundle and writes its acknowledgement"
is "$ONCE_BAD" 0 "after every bundle each message sent so far is listed exactly once"
diag "kill phase done; $(( $(date +%s) - START )) s so far"

# ---------------------------------------------------------------------------
# The end state.

compare
is "${CMP_gateway:-}" "$NSENT" "the gateway lists every message sent ($NSENT)"
is "${CMP_distinct:-}" "$NSENT" "under $NSENT distinct peer_ids"
is "${CMP_dups:-}" 0 "no message is listed twice"
is "${CMP_missing:-}" 0 "no message is missing"
is "${CMP_extra:-}" 0 "no message the site did not send"
is "${CMP_envelope_bad:-}" 0 "sender, recipients and size match"
is "${CMP_nobody:-}" 0 "every listed message has its body file"
is "${CMP_compared:-}" "$NSENT" "every message was compared"
is "${CMP_body_bad:-}" 0 "every body file at both ends is complete (size and SHA-256 match)"
is "${CMP_body_differ:-}" 0 "the content at the gateway is byte-identical to the site's, for every message"
is "${CMP_orig_checked:-}|${CMP_orig_bad:-}" "$NSENT|0" "every message is the site's Received header plus exactly the submitted file"
is "${CMP_cat_checked:-}" "$(( (NSENT + CAT_EVERY - 1) / CAT_EVERY ))" "cat ran at both ends for every ${CAT_EVERY}th message"
is "${CMP_cat_errors:-}" 0 "cat works at both ends"
is "${CMP_cat_differ:-}" 0 "cat at the gateway is byte-identical to cat at the site"
is "${CMP_cat_vs_body:-}" 0 "and cat gives exactly the body file's content"
ORPHANS=${CMP_orphans:-?}
diag "known debris: $ORPHANS body files in gw/queue/ that no message names (staged by killed imports)"
tmpfiles=$(ls -A "$T/gw/tmp")
is "$(wc -w <<<"$tmpfiles")" 0 "no file is left in the gateway's tmp/" ||
    diag "  gw/tmp: $(head -c 400 <<<"$tmpfiles" | tr '\n' ' ')"
ok "no acknowledgement temporary file is left" test -z "$(find "$T" -maxdepth 1 -name '*.ack.tmp')"

# Everything again: replays only.
GWLIST=$(gw list --json)
replay_bad=0
for ((k = 0; k < ${#BUNDLES[@]}; k++)); do
	[ "$k" -lt "$b" ] || continue	# a bundle made but never imported
	run gw import "${BUNDLES[k]}"
	if [ "$RUN_STATUS" != 0 ] || [[ $RUN_STDOUT != *"imported before; nothing changed"* ]]; then
		replay_bad=$((replay_bad + 1))
		diag "re-import of bundle $((k + 1)): exit $RUN_STATUS: $RUN_STDOUT"
	fi
done
is "$replay_bad" 0 "importing every bundle once more is a replay"
is "$(gw list --json)" "$GWLIST" "and changes nothing at the gateway"

# The acknowledgements, at the site.
ack_bad=0
for ((k = 0; k < b; k++)); do
	run site import "${BUNDLES[k]}.ack"
	[ "$RUN_STATUS" = 0 ] || { ack_bad=$((ack_bad + 1)); diag "ack $((k + 1)): $RUN_STDERR"; }
done
is "$ack_bad" 0 "the site imports every acknowledgement"
is "$(site list --json | jq -r '[.[] | .recipients[].state] | unique | join(" ")')" accepted \
    "every recipient at the site is accepted"

diag "runtime $(( $(date +%s) - START )) s"
done_testing
