#!/usr/bin/env bash
# 55-export-import.t - sneakernet bundles between a site and a gateway
# spool, through `mgate export' and `mgate import' files (issue 3).
#
#  (a) Round trip of the whole shared corpus (every message of the five
#      directories, mbox From line stripped): queued at the site, exported
#      in bundles of at most max_bundle_size (8M) until "nothing queued",
#      imported at the gateway.  Every message arrives exactly once (by
#      peer_id), with the same sender, recipients and size, and the same
#      bytes (see "Content" below) as at the site, where they are the
#      Received header mgate prepends, a Message-ID where the message had
#      none, and exactly the submitted bytes.
#      The acknowledgements, imported at the site, turn every recipient
#      "accepted".
#  (b) Re-importing a bundle stores nothing new, says so, and still writes
#      an acknowledgement; importing an acknowledgement twice is harmless.
#  (c) Rejections through the CLI, each with a non-zero exit, a message
#      naming the reason, the gateway's `list --json' unchanged and no new
#      file in queue/ or tmp/ (and no acknowledgement written): a flipped
#      bit in each chunk of a multi-chunk bundle, in the preamble and in
#      the sealed header; a flipped last-chunk flag; truncation mid-header,
#      mid-chunk, at every chunk boundary (the last one: the last chunk
#      missing); trailing bytes; reordered, dropped and duplicated chunks;
#      a bundle encrypted to another peer, one addressed to another peer
#      name, one signed by an unknown key, one checked against a
#      public_key that is someone else's; garbage, an empty file, a
#      missing file.  Afterwards the intact bundle still imports: the
#      rejections left no trace (no "seen" mark).
#  (d) `export --resend ID' writes a byte-identical copy of a bundle that
#      is waiting for its acknowledgement, and refuses once it is acked.
#
# The spools live on /dev/shm when it is a tmpfs with room to spare and
# TMPDIR is not set (fsync costs nothing there; this test is about bytes
# and bookkeeping, 56-import-kill.t about crashes).  Under MGATE_ASAN=1
# every third corpus message is used.  MGATE_EXPIMP_PAR sets how many
# `mgate queue' run at once (default 4).
#
# Content: every message's content is compared in full, site against
# gateway, from the two body files (parsed as include/mgate/maildrop.h
# documents, size and SHA-256 checked as `cat' checks them); `mgate cat'
# runs at both ends for every MGATE_EXPIMP_CAT_EVERY-th message (default
# 10; 1 = all) and must give identical bytes at both ends, equal to the
# body files.  (Each `cat' sweeps the whole of queue/ - 6000 files here -
# so a cat of everything at both ends costs minutes of CPU.)
set -uo pipefail
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] &&
    [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] &&
    [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')" -gt 2000000 ] 2>/dev/null; then
	export TMPDIR=/dev/shm
fi
. "$(dirname "$0")/lib/testlib.sh"

need_mgate
need_cmd jq cmp
mgate_setup
CORPUS=$(corpus_dir) || skip_all "the shared corpus is missing"
ASAN=${MGATE_ASAN:-0}
STEP=1
[ "$ASAN" = 1 ] && STEP=3
PAR=${MGATE_EXPIMP_PAR:-4}
CAT_EVERY=${MGATE_EXPIMP_CAT_EVERY:-10}
START=$(date +%s)
diag "spools under $T; corpus $CORPUS$([ "$STEP" = 1 ] || echo " (every ${STEP}rd message)")"

site() { "$MGATE" -c "$T/site.conf" "$@"; }
gw() { "$MGATE" -c "$T/gw.conf" "$@"; }

# ---------------------------------------------------------------------------
# Keys and configurations.
#   site (ship)   -> peers gw; other (a third key pair); gw2 (gw's key under
#                    another name)
#   gw            -> peer ship with the site's public key
#   gwX           -> the gateway's spool, but [peer ship] has other's key
#   siteU         -> calls itself ship, signs with an unknown key

for k in site gw other unknown; do
	"$MGATE" keygen "$T/$k.key" >"$T/keygen.out" 2>&1 ||
	    BAIL_OUT "mgate keygen $T/$k.key: $(cat "$T/keygen.out")"
done
is "$(stat -c %a "$T/site.key")" 600 "keygen: the private key file is mode 0600"

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
peer() { # NAME PUBKEY [EXTRA]
	printf '[peer %s]\ntransport = file\npublic_key = %s\n%s' "$1" "$2" "${3:+$3$'\n'}"
}
{
	common "$T/site" ship.example.org ship "$T/site.key"
	echo "default_peer = gw"
	peer gw "$T/gw.key.pub" "max_bundle_size = 8M"
	peer other "$T/other.key.pub"
	peer gw2 "$T/gw.key.pub"
} >"$T/site.conf"
{
	common "$T/gw" gw.example.net gw "$T/gw.key"
	peer ship "$T/site.key.pub"
} >"$T/gw.conf"
{
	common "$T/gw" gw.example.net gw "$T/gw.key"
	peer ship "$T/other.key.pub"
} >"$T/gwX.conf"
{
	common "$T/siteU" ship.example.org ship "$T/unknown.key"
	peer gw "$T/gw.key.pub"
} >"$T/siteU.conf"

ok "init the site spool" site init
ok "init the gateway spool" gw init
ok "init the spool of a site with an unknown key" "$MGATE" -c "$T/siteU.conf" init

# ---------------------------------------------------------------------------
# Helpers (python3: bulk queueing and comparing).

cat >"$T/queue_corpus.py" <<'EOF'
# queue_corpus.py MGATE CONF CORPUS OUTDIR STEP PAR MAPFILE
# Strips the mbox From line of every STEP-th corpus message into OUTDIR,
# queues each with `mgate -v queue -i bob@example.net', PAR at a time, and
# writes "QID<TAB>PATH" lines to MAPFILE.  Prints "queued N failed F".
import os, re, subprocess, sys, concurrent.futures as cf
mg, conf, corpus, out, step, par, mapfile = sys.argv[1:8]
step, par = int(step), int(par)
files = []
for d in sorted(os.listdir(corpus)):
    p = os.path.join(corpus, d)
    if os.path.isdir(p):
        files += [(d, f) for f in sorted(os.listdir(p))
                  if os.path.isfile(os.path.join(p, f))]
files = files[::step]
os.makedirs(out, exist_ok=True)
paths = []
for d, f in files:
    with open(os.path.join(corpus, d, f), 'rb') as fh:
        data = fh.read()
    if data.startswith(b'From '):
        nl = data.find(b'\n')
        data = b'' if nl < 0 else data[nl + 1:]
    dst = os.path.join(out, d + '.' + f)
    with open(dst, 'wb') as fh:
        fh.write(data)
    paths.append(dst)
rx = re.compile(rb'^[a-z]+: queued as ([0-9A-Z]{16})$', re.M)
def q(p):
    with open(p, 'rb') as fh:
        r = subprocess.run([mg, '-c', conf, '-v', 'queue', '-i',
                            'bob@example.net'], stdin=fh,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    m = rx.search(r.stderr)
    return p, r.returncode, (m.group(1).decode() if m else None), r.stderr
bad = 0
with cf.ThreadPoolExecutor(par) as ex, open(mapfile, 'w') as mf:
    for p, rc, qid, err in ex.map(q, paths):
        if rc != 0 or qid is None:
            bad += 1
            if bad <= 5:
                print('queue %s: exit %d: %s' % (p, rc, err[-300:]),
                      file=sys.stderr)
        else:
            mf.write('%s\t%s\n' % (qid, p))
print('queued %d failed %d' % (len(paths) - bad, bad))
EOF

cat >"$T/compare.py" <<'EOF'
# compare.py MGATE SITECONF GWCONF PEER SITESPOOL GWSPOOL CATEVERY [MAPFILE|bundle:ID]
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
gwl = [m for m in lst(gconf) if m.get('peer') == peer]
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
    if not os.environ.get('CMP_MISSING_EXPECTED'):
        problems.append('site message %s never arrived' % i)
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
             ('compared', len(pairs))]:
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

cat >"$T/chunks.py" <<'EOF'
# chunks.py BUNDLE: "header END" then "chunk INDEX OFFSET LEN LAST" lines,
# from the framing in mgate-bundle(5); "end OFFSET" (== the file size).
import struct, sys
d = open(sys.argv[1], 'rb').read()
hlen = struct.unpack('>H', d[6:8])[0]
off = 40 + hlen
print('header', off)
i = 0
while off + 4 <= len(d):
    w = struct.unpack('>I', d[off:off + 4])[0]
    n, last = w & 0x7fffffff, w >> 31
    print('chunk', i, off, n, last)
    off += 4 + n + 16
    i += 1
    if last:
        break
print('end', off)
EOF

cat >"$T/mutate.py" <<'EOF'
# mutate.py SRC DST OP ARGS: a damaged copy of a bundle.
#   flip OFF [BIT] | set OFF VALUE | trunc LEN | append BYTES
#   swap A B C  (ranges A:B and B:C exchanged) | drop A B | dup A B
import sys
src, dst, op, a = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
d = bytearray(open(src, 'rb').read())
n = [int(x) for x in a]
if op == 'flip':
    d[n[0]] ^= 1 << (n[1] if len(n) > 1 else 0)
elif op == 'set':
    d[n[0]] = n[1]
elif op == 'trunc':
    d = d[:n[0]]
elif op == 'append':
    d += b'\0' * n[0]
elif op == 'swap':
    d = d[:n[0]] + d[n[1]:n[2]] + d[n[0]:n[1]] + d[n[2]:]
elif op == 'drop':
    d = d[:n[0]] + d[n[1]:]
elif op == 'dup':
    d = d[:n[1]] + d[n[0]:n[1]] + d[n[1]:]
else:
    sys.exit('unknown op ' + op)
open(dst, 'wb').write(bytes(d))
EOF

# compare_spools NAME [MAPFILE|bundle:ID]: run compare.py, which sets
# CMP_site, CMP_gateway, ... from its "key value" lines.
compare_spools() {
	local name=$1 map=${2:-} k v l rc=0
	"$PYTHON3" "$T/compare.py" "$MGATE" "$T/site.conf" "$T/gw.conf" ship \
	    "$T/site" "$T/gw" "$CAT_EVERY" ${map:+"$map"} >"$T/cmp.out" 2>"$T/cmp.err" || rc=$?
	is "$rc" 0 "$name: the comparison ran" || diag "$(tail -c 2000 "$T/cmp.err")"
	while read -r k v; do
		[ "$k" = problem ] && continue
		printf -v "CMP_$k" '%s' "$v"
	done <"$T/cmp.out"
	grep '^problem ' "$T/cmp.out" | while IFS= read -r l; do diag "  $l"; done
}

# site_states: the distinct recipient states of the site's own mail.
site_states() {
	site list --json | jq -r '[.[] | select(.peer == null) | .recipients[].state] | unique | join(" ")'
}

# ===========================================================================
# (a) Round trip of the corpus.

run "$PYTHON3" "$T/queue_corpus.py" "$MGATE" "$T/site.conf" "$CORPUS" \
    "$T/orig" "$STEP" "$PAR" "$T/map.tsv"
NCORPUS=$(find "$CORPUS" -mindepth 2 -maxdepth 2 -type f | wc -l)
NEXP=$(( (NCORPUS + STEP - 1) / STEP ))
is "$RUN_STDOUT" "queued $NEXP failed 0" "queue accepts every corpus message ($NEXP)" ||
    diag "$RUN_STDERR"
[ "$STEP" = 1 ] && is "$NCORPUS" 6046 "the corpus has its 6046 messages"
NQ=$(wc -l <"$T/map.tsv")
diag "queued $NQ messages in $(( $(date +%s) - START )) s"
ok "one pickup imports them" site pickup
is "$(site list --json | jq length)" "$NQ" "the site lists every queued message"
is "$(site_states)" queued "every recipient is queued"

# Export until nothing is queued.
BIDS=() BCOUNT=() BRAW=()
i=0 total=0 export_ok=1
while :; do
	i=$((i + 1))
	if [ "$i" -gt 40 ]; then
		fail "export stops saying 'nothing queued' within 40 bundles"
		export_ok=0
		break
	fi
	run site export "$T/rt$i.mgb"
	if [ "$RUN_STATUS" != 0 ]; then
		is "$RUN_STATUS" 0 "export $i exits 0"
		diag "$RUN_STDERR"
		export_ok=0
		break
	fi
	if [[ $RUN_STDOUT == *"nothing queued for gw; no file written"* ]]; then
		ok "the last export writes no file" test ! -e "$T/rt$i.mgb"
		break
	fi
	if [[ $RUN_STDOUT =~ bundle\ ([0-9a-f]{32})\ for\ gw:\ ([0-9]+)\ messages?,\ 0\ status\ records,\ ([0-9]+)\ bytes\ \(([0-9]+)\ before\ compression\) ]]; then
		BIDS+=("${BASH_REMATCH[1]}")
		BCOUNT+=("${BASH_REMATCH[2]}")
		BRAW+=("${BASH_REMATCH[4]}")
		total=$((total + BASH_REMATCH[2]))
		is "$(stat -c %s "$T/rt$i.mgb")" "${BASH_REMATCH[3]}" \
		    "export $i: the file has the size it announces"
	else
		like "$RUN_STDOUT" 'bundle [0-9a-f]{32} for gw: [0-9]+ messages' "export $i says what it wrote"
		export_ok=0
		break
	fi
done
NB=${#BIDS[@]}
if [ "$NB" = 0 ] || [ "$export_ok" = 0 ]; then
	diag "the export loop failed: stopping here"
	done_testing
fi
diag "exported $NB bundles: ${BCOUNT[*]} messages; $(( $(date +%s) - START )) s so far"
is "$total" "$NQ" "the bundles carry every queued message"
if [ "$STEP" = 1 ]; then
	ok "8M of mail needs several bundles ($NB)" test "$NB" -ge 3
else
	ok "8M of mail needs several bundles ($NB)" test "$NB" -ge 2
fi
over=0
for ((b = 0; b < NB; b++)); do
	[ "${BRAW[b]}" -le $((8 * 1024 * 1024)) ] || [ "${BCOUNT[b]}" = 1 ] || over=$((over + 1))
done
is "$over" 0 "no bundle carries more than max_bundle_size (8M) of mail"
is "$(site_states)" bundled "after export every recipient is bundled"
is "$(site list --json | jq -r '[.[] | .recipients[].bundle] | unique | length')" "$NB" \
    "each recipient names one of the $NB bundles"

# (d) --resend writes the same bytes again while the bundle waits for its ack.
for ((b = 0; b < NB; b++)); do
	n=$((b + 1))
	run site export --resend "${BIDS[b]}" "$T/resend$n.mgb"
	is "$RUN_STATUS" 0 "export --resend of bundle $n exits 0" || diag "$RUN_STDERR"
	ok "export --resend of bundle $n writes a byte-identical copy" cmp "$T/rt$n.mgb" "$T/resend$n.mgb"
done

# Import at the gateway.
for ((b = 0; b < NB; b++)); do
	n=$((b + 1))
	run gw import "$T/rt$n.mgb"
	is "$RUN_STATUS" 0 "import of bundle $n exits 0" || diag "$RUN_STDERR"
	like "$RUN_STDOUT" "bundle ${BIDS[b]} from ship: ${BCOUNT[b]} messages? \\(${BCOUNT[b]} new, 0 known\\)" \
	    "import of bundle $n stores its ${BCOUNT[b]} messages"
	ok "import of bundle $n writes its acknowledgement" test -s "$T/rt$n.mgb.ack"
done
ok "nothing is left in the gateway's tmp/" test -z "$(ls -A "$T/gw/tmp")"
diag "imported; $(( $(date +%s) - START )) s so far"

compare_spools "round trip" "$T/map.tsv"
is "${CMP_gateway:-}" "$NQ" "the gateway lists $NQ messages from ship"
is "${CMP_distinct:-}" "$NQ" "each arrived under its own peer_id"
is "${CMP_dups:-}" 0 "no peer_id arrived twice"
is "${CMP_missing:-}" 0 "no site message is missing at the gateway"
is "${CMP_extra:-}" 0 "no gateway message has a peer_id the site does not know"
is "${CMP_envelope_bad:-}" 0 "sender, recipients and size are the same at both ends"
is "${CMP_compared:-}" "$NQ" "every pair was compared"
is "${CMP_body_bad:-}" 0 "every body file at both ends is complete (size and SHA-256 match)"
is "${CMP_body_differ:-}" 0 "the content at the gateway is byte-identical to the site's, for every message"
is "${CMP_cat_checked:-}" "$(( (NQ + CAT_EVERY - 1) / CAT_EVERY ))" "cat ran at both ends for every ${CAT_EVERY}th message"
is "${CMP_cat_errors:-}" 0 "cat works at both ends"
is "${CMP_cat_differ:-}" 0 "cat at the gateway is byte-identical to cat at the site"
is "${CMP_cat_vs_body:-}" 0 "and cat gives exactly the body file's content"
is "${CMP_orig_checked:-}" "$NQ" "every submitted file was checked against the site's copy"
is "${CMP_orig_bad:-}" 0 "the site's copy is mgate's Received header (and any Message-ID/Date/From it adds) plus exactly the submitted bytes"
diag "header fields mgate added at submission: ${CMP_added:-?}"
ok "queue/ at the gateway holds exactly one body file per message" \
    test "$(ls -A "$T/gw/queue" | wc -l)" = "$(gw list --json | jq length)"
diag "compared; $(( $(date +%s) - START )) s so far"

# ===========================================================================
# (b) Replay.

GWLIST=$(gw list --json)
GWQ=$(ls -A "$T/gw/queue")
rm -f "$T/rt1.mgb.ack"
run gw import "$T/rt1.mgb"
is "$RUN_STATUS" 0 "re-import of bundle 1 exits 0" || diag "$RUN_STDERR"
like "$RUN_STDOUT" "bundle ${BIDS[0]} from ship: imported before; nothing changed" \
    "re-import says the bundle was imported before"
is "$(gw list --json)" "$GWLIST" "re-import changes nothing in the gateway's list"
is "$(ls -A "$T/gw/queue")" "$GWQ" "re-import adds no file to queue/"
ok "re-import writes the acknowledgement again" test -s "$T/rt1.mgb.ack"
# A resent copy is the same bundle: a replay too.
run gw import "$T/resend1.mgb"
like "$RUN_STATUS:$RUN_STDOUT" "^0:.*imported before; nothing changed" "importing the --resend copy is a replay"
is "$(gw list --json | jq length)" "$NQ" "the message count is unchanged"

# The acknowledgements, at the site.
for ((b = 0; b < NB; b++)); do
	n=$((b + 1))
	run site import "$T/rt$n.mgb.ack"
	is "$RUN_STATUS" 0 "the site imports acknowledgement $n" || diag "$RUN_STDERR"
	like "$RUN_STDOUT" "0 messages \\(0 new, 0 known\\), 0 status records, 1 bundle acknowledged" \
	    "acknowledgement $n acknowledges one bundle"
	ok "a pure acknowledgement is not acknowledged ($n)" test ! -e "$T/rt$n.mgb.ack.ack"
done
is "$(site_states)" accepted "after the acknowledgements every recipient is accepted"
is "$(site list --json | jq length)" "$NQ" "the site still lists its messages"
ok "the acknowledged bundle files are gone from the site's outgoing/" \
    test -z "$(ls -A "$T/site/outgoing")"
SITELIST=$(site list --json)
run site import "$T/rt1.mgb.ack"
is "$RUN_STATUS" 0 "importing an acknowledgement twice exits 0" || diag "$RUN_STDERR"
like "$RUN_STDOUT" "imported before; nothing changed" "and says it was imported before"
is "$(site list --json)" "$SITELIST" "and changes nothing at the site"
ok "and writes no acknowledgement of the acknowledgement" test ! -e "$T/rt1.mgb.ack.ack"
run site export --resend "${BIDS[0]}" "$T/resend-acked.mgb"
isnt "$RUN_STATUS" 0 "export --resend of an acknowledged bundle fails"
like "$RUN_STDERR" "${BIDS[0]}: not waiting for an acknowledgement" "and says the bundle is not waiting"
ok "and writes no file" test ! -e "$T/resend-acked.mgb"
run site export "$T/none.mgb"
like "$RUN_STATUS:$RUN_STDOUT" "^0:nothing queued for gw; no file written" "export with nothing queued says so"
unlike "$RUN_STDOUT" "not yet acknowledged" "and no bundle is left unacknowledged"

# ===========================================================================
# (c) Rejections.

# A multi-chunk bundle of incompressible text: six ~80 KB messages.
for m in 1 2 3 4 5 6; do
	{
		printf 'From: rnd@example.org\nTo: bob@example.net\nSubject: random %d\n\n' "$m"
		head -c 60000 /dev/urandom | base64 -w 76
	} >"$T/rnd$m.eml"
	site queue -i bob@example.net <"$T/rnd$m.eml" 2>/dev/null ||
	    fail "queue random message $m"
done
run site export "$T/rej.mgb"
is "$RUN_STATUS" 0 "export of the multi-chunk bundle exits 0" || diag "$RUN_STDERR"
REJ_ID=$(sed -n 's/^bundle \([0-9a-f]\{32\}\) for gw: 6 messages.*/\1/p' <<<"$RUN_STDOUT")
like "$REJ_ID" '^[0-9a-f]{32}$' "it carries the six random messages"
run site export --resend "$REJ_ID" "$T/rej-resend.mgb"
ok "export --resend writes a byte-identical copy of it" cmp "$T/rej.mgb" "$T/rej-resend.mgb"

"$PYTHON3" "$T/chunks.py" "$T/rej.mgb" >"$T/rej.chunks"
HDR_END=$(awk '$1 == "header" { print $2 }' "$T/rej.chunks")
FILE_END=$(awk '$1 == "end" { print $2 }' "$T/rej.chunks")
CH_OFF=() CH_LEN=() CH_LAST=()
while read -r _ idx off len last; do
	CH_OFF[idx]=$off CH_LEN[idx]=$len CH_LAST[idx]=$last
done < <(awk '$1 == "chunk"' "$T/rej.chunks")
NCH=${#CH_OFF[@]}
LASTCH=$((NCH - 1))
ok "the bundle has at least 4 chunks ($NCH)" test "$NCH" -ge 4
is "$FILE_END" "$(stat -c %s "$T/rej.mgb")" "its chunk framing accounts for every byte"
is "${CH_LAST[LASTCH]}" 1 "only the final chunk is flagged last"

# Secondary bundles: to another peer, to another peer name, from a site
# with an unknown key.
site queue -i bob@example.net <"$T/rnd1.eml" 2>/dev/null
run site export --peer other "$T/to-other.mgb"
is "$RUN_STATUS" 0 "export of a bundle for peer 'other'" || diag "$RUN_STDERR"
site queue -i bob@example.net <"$T/rnd2.eml" 2>/dev/null
run site export --peer gw2 "$T/to-gw2.mgb"
is "$RUN_STATUS" 0 "export of a bundle for peer 'gw2' (the gateway's key)" || diag "$RUN_STDERR"
"$MGATE" -c "$T/siteU.conf" queue -i bob@example.net <"$T/rnd3.eml" 2>/dev/null
run "$MGATE" -c "$T/siteU.conf" export "$T/unknown-signer.mgb"
is "$RUN_STATUS" 0 "export of a bundle signed by an unknown key" || diag "$RUN_STDERR"
head -c 5000 /dev/urandom >"$T/garbage.mgb"
{ head -c 8 "$T/rej.mgb"; head -c 5000 /dev/urandom; } >"$T/garbage-preamble.mgb"
: >"$T/empty.mgb"

NREJ=0
GWLIST=$(gw list --json)
GWQ=$(ls -A "$T/gw/queue")
# reject NAME FILE REGEX [CONF]: importing FILE fails, says REGEX, and
# leaves the gateway as it was ($GWLIST, $GWQ: the list and queue/ before).
reject() {
	local name=$1 file=$2 rx=$3 conf=${4:-$T/gw.conf} now
	NREJ=$((NREJ + 1))
	rm -f "$file.ack"
	run "$MGATE" -c "$conf" import "$file"
	isnt "$RUN_STATUS" 0 "$name: import fails"
	like "$RUN_STDERR" "rejected, nothing imported: .*$rx" "$name: the message names the reason" ||
	    diag "  exit $RUN_STATUS"
	now=$(gw list --json)
	is "$now" "$GWLIST" "$name: the gateway's list is unchanged"
	GWLIST=$now
	is "$(ls -A "$T/gw/queue")|$(ls -A "$T/gw/tmp")" "$GWQ|" \
	    "$name: no new file in queue/ or tmp/"
	ok "$name: no acknowledgement written" test ! -e "$file.ack"
}
# damaged NAME REGEX OP ARGS: reject a damaged copy of rej.mgb.
damaged() {
	local name=$1 rx=$2
	shift 2
	"$PYTHON3" "$T/mutate.py" "$T/rej.mgb" "$T/bad.mgb" "$@" ||
	    BAIL_OUT "mutate.py $*"
	reject "$name" "$T/bad.mgb" "$rx"
}
ID=$REJ_ID
AUTH="chunk %d failed authentication"
for ((c = 0; c < NCH; c++)); do
	# A bit in the middle of the ciphertext, and one in the tag.
	damaged "flipped bit in chunk $c (ciphertext)" "bundle $ID: $(printf "$AUTH" "$c")" \
	    flip $((CH_OFF[c] + 4 + CH_LEN[c] / 2)) $((c % 8))
done
for c in 0 "$LASTCH"; do
	damaged "flipped bit in chunk $c (tag)" "bundle $ID: $(printf "$AUTH" "$c")" \
	    flip $((CH_OFF[c] + 4 + CH_LEN[c] + 15)) 7
done
damaged "flipped bit in chunk 0's length word" "bundle $ID: chunk 0: length [0-9]+ does not match" \
    flip $((CH_OFF[0] + 2)) 0
damaged "chunk 0 flagged last" "bundle $ID: chunk 0 (failed authentication|.*last)" \
    flip "${CH_OFF[0]}" 7
damaged "last flag cleared on the final chunk" "bundle $ID: chunk $LASTCH(: length [0-9]+ does not match| failed authentication)" \
    flip "${CH_OFF[LASTCH]}" 7
damaged "flipped bit in the magic" "not an mgate bundle \\(bad magic number\\)" flip 1 3
damaged "version 2" "unsupported bundle format version 2" set 4 2
damaged "unknown cipher suite" "unsupported cipher suite 9" set 5 9
damaged "flipped bit in the ephemeral key" "header failed authentication" flip 20 4
damaged "flipped bit in the sealed header" "header failed authentication" flip $((40 + (HDR_END - 40) / 2)) 2
damaged "flipped bit in the header's tag" "header failed authentication" flip $((HDR_END - 1)) 0
damaged "truncated in the preamble" "truncated before the end of the header \\(20 bytes\\)" trunc 20
damaged "truncated after the preamble" "truncated before the end of the header \\(40 bytes\\)" trunc 40
damaged "truncated mid-header" "truncated before the end of the header" trunc $((40 + (HDR_END - 40) / 2))
damaged "truncated at the end of the header" "bundle $ID: truncated: 0 chunks verified, the last chunk is missing" trunc "$HDR_END"
for c in 0 $((NCH / 2)) "$LASTCH"; do
	damaged "truncated mid-chunk $c" "bundle $ID: truncated: $c chunks? verified" \
	    trunc $((CH_OFF[c] + 4 + CH_LEN[c] / 3))
done
# At every chunk boundary; the last one: the last chunk missing.
for ((c = 1; c < NCH; c++)); do
	damaged "truncated at the boundary before chunk $c" "bundle $ID: truncated: $c chunks? verified, the last chunk is missing" \
	    trunc "${CH_OFF[c]}"
done
damaged "one byte short" "bundle $ID: truncated" trunc $((FILE_END - 1))
damaged "a trailing byte" "bundle $ID: 1 bytes? of trailing data" append 1
damaged "a trailing chunk-sized tail" "bundle $ID: [0-9]+ bytes? of trailing data" append 65556
damaged "chunks 1 and 2 swapped" "bundle $ID: $(printf "$AUTH" 1)" swap "${CH_OFF[1]}" "${CH_OFF[2]}" "${CH_OFF[3]}"
damaged "chunk 1 dropped" "bundle $ID: $(printf "$AUTH" 1)" drop "${CH_OFF[1]}" "${CH_OFF[2]}"
damaged "chunk 1 duplicated" "bundle $ID: $(printf "$AUTH" 2)" dup "${CH_OFF[1]}" "${CH_OFF[2]}"
damaged "next-to-last chunk dropped" "bundle $ID: $(printf "$AUTH" $((LASTCH - 1)))" drop "${CH_OFF[LASTCH - 1]}" "${CH_OFF[LASTCH]}"

reject "bundle encrypted to another peer" "$T/to-other.mgb" "not encrypted to this peer's key"
reject "bundle addressed to peer gw2" "$T/to-gw2.mgb" "addressed to peer 'gw2', but this is 'gw'"
reject "bundle signed by an unknown key" "$T/unknown-signer.mgb" "not signed by the expected key"
reject "gw.conf has someone else's key for ship" "$T/rej.mgb" "not signed by the expected key" "$T/gwX.conf"
reject "the site's acknowledgement imported at the gateway" "$T/rt1.mgb.ack" "not encrypted to this peer's key"
reject "garbage" "$T/garbage.mgb" "not an mgate bundle \\(bad magic number\\)"
reject "garbage after a valid preamble start" "$T/garbage-preamble.mgb" "(header failed authentication|header length|truncated)"
reject "empty file" "$T/empty.mgb" "truncated before the end of the header \\(0 bytes\\)"
reject "missing file" "$T/no-such.mgb" "No such file or directory"
diag "$NREJ rejection cases; $(( $(date +%s) - START )) s so far"

# The intact bundle still imports: no rejection marked it seen.
run gw import "$T/rej.mgb"
is "$RUN_STATUS" 0 "after all rejections the intact bundle imports" || diag "$RUN_STDERR"
like "$RUN_STDOUT" "bundle $REJ_ID from ship: 6 messages \\(6 new, 0 known\\)" "with its six messages"
CMP_MISSING_EXPECTED=1 compare_spools "after the rejections" "bundle:$REJ_ID"
is "${CMP_compared:-}" 6 "the six messages of that bundle were compared"
is "${CMP_gateway:-}" "$((NQ + 6))" "the gateway now lists $((NQ + 6)) messages from ship"
is "${CMP_dups:-}|${CMP_body_bad:-}|${CMP_body_differ:-}|${CMP_envelope_bad:-}" "0|0|0|0" \
    "each once, byte-identical to the site's"
is "${CMP_cat_checked:-}|${CMP_cat_differ:-}|${CMP_cat_errors:-}|${CMP_cat_vs_body:-}" "6|0|0|0" \
    "cat of the six gives the same bytes at both ends"
# The site's three messages bundled for other / gw2 never reached the gateway.
is "${CMP_missing:-}" 2 "only the two messages bundled for 'other' and 'gw2' are missing at the gateway"

diag "runtime $(( $(date +%s) - START )) s"
done_testing
