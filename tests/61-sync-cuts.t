#!/usr/bin/env bash
# Link cuts: `mgate sync' through a relay (tests/lib/cutrelay.py) that
# resets the TCP connection between the site and sshd after a chosen
# number of bytes, over and over, until a sync gets through.
#
# ~150 corpus messages of mixed sizes (easy_ham, the largest hard_ham and
# a few large spam with base64 attachments, so that some bundles span
# several 16 KiB chunks), max_bundle_size 256k (several bundles).  Each
# attempt's cut is drawn from a seeded generator:
#   handshake/hello/offer   c2s after U(0, H0 - 200) bytes (H0: client->
#                           server bytes of a sync with nothing to send;
#                           its last ~150 bytes close the channel after
#                           the sync is done)
#   server side early       s2c after U(0, S0) bytes
#   after END, before ACK   the server's first bytes after the client sent
#                           H0 + U(0, min(REM, 200000)) (an ACK: the
#                           gateway has committed a bundle) are dropped
#   mid-data                c2s after H0 + U(0, min(REM, 80000)) bytes
# (REM: bundle bytes still to go, from the site's outgoing/ and the
# gateway's .part files)
# until at least CUTS cuts happened (more mail is queued if everything got
# through before that), then syncs without cuts until one exits 0.
#
# Then: every cut sync exited 75 and none hung; every message is at the
# gateway exactly once and byte-identical to the site's copy; every site
# recipient is accepted; no *.part file is left in the gateway's
# incoming/ (none for a committed bundle at any time); cuts landed in
# every phase; a cut between commit and ACK was recognised ("already
# committed") and not sent again; every "resuming at byte N" is the end of
# the last complete chunk the gateway held; no serve outlived its sync;
# `mgate list --json' always printed JSON.
#
# Resent bytes per cut.  `mgate serve' runs behind a byte counter
# (cutrelay.py count, in the forced command): the bytes sshd delivered to
# serve in each session.  With the sync logs ("resuming at byte N of M",
# "already committed"), the chunk boundaries of each bundle (from its
# file, mgate-bundle(5)), the gateway's .part sizes after each attempt
# and the relay's byte counts:
#   P  progress: bundle bytes the gateway holds verified (or committed)
#      after the attempt, minus before it
#   D  dropped at the gateway: bytes written to .part files in the attempt
#      but not verified, so cut off at the next resume: < one chunk
#      (16384 plaintext + 20 framing: the packer's chunk size)
#   R  resent: bytes serve received in the attempt minus P: what reached
#      mgate at the gateway and must be sent again.  Must be <= one chunk
#      (16384) + HANDSHAKE, where HANDSHAKE is the sync protocol's own
#      bytes: A0 (serve's input in a sync with nothing to send: hello,
#      empty offer, FIN, the download phase) + 40 per bundle offered + 82
#      per DATA frame or bundle (DATA and END frame headers).
#   W  resent on the wire: client->server bytes through the relay minus P
#      (diagnostic only: it adds the SSH handshake, which H0 measures,
#      and what OpenSSH's sshd had buffered and threw away at the reset,
#      which is not mgate's doing: with a forced command of `cat', a cut
#      after 150000 bytes let cat see 65536).
# A deterministic check follows: serve gets exactly 1.5 chunks of bundle
# data in each session; a many-chunk bundle must advance at least one chunk per
# session and get through.
#
# Environment: MGATE_CUTS_SEED (repeat a run), MGATE_CUTS (cuts to reach;
# default 100, 35 under MGATE_ASAN=1).
set -uo pipefail
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/sshd-setup.sh"

need_root "starts an OpenSSH sshd with its own host key and authorized_keys"
need_mgate
need_cmd jq cmp ssh-keygen
CORPUS=$(corpus_dir) || skip_all "no corpus"

if [ "${MGATE_ASAN:-0}" = 1 ]; then
	CUTS=${MGATE_CUTS:-35}
	SYNC_LIMIT=90
else
	CUTS=${MGATE_CUTS:-100}
	SYNC_LIMIT=30
fi
SEED=${MGATE_CUTS_SEED:-$(( $(date +%s%N) % 1000000007 ))}
RANDOM=$SEED
diag "seed $SEED (MGATE_CUTS_SEED=$SEED repeats the cut plan), $CUTS cuts"
CHUNK=16384	# the packer's chunk size (src/packer.c PACKER_CHUNK)
CHUNK_WIRE=$((CHUNK + 20))

sshd_gateway_setup "max_bundle_size = 256k"
sshd_wrap_serve "$T/serve.log" "$T/serve.limit"
# The gateway's own log lines (log_destination = stderr), for diagnosis.
sed -i "s|serve --peer ship\"|serve --peer ship 2>>$T/serve.err\"|" "$T/authorized_keys"
: >"$T/serve.log"
site() { "$MGATE" -c "$SITE_CONF" "$@"; }
gw() { "$MGATE" -c "$GW_CONF" "$@"; }
sj() { sync_list_json "$SITE_CONF"; }	# `list --json', checked
gj() { sync_list_json "$GW_CONF"; }

# ---------------------------------------------------------------------------
# The relay.

"$PYTHON3" "$TESTLIB/cutrelay.py" --target "$SSHD_PORT" --port-file "$T/relay.port" \
    --plan "$T/relay.plan" --log "$T/relay.log" --seed "$SEED" 2>"$T/relay.err" &
RELAY=$!
on_exit "kill $RELAY 2>/dev/null || true"
wait_for 10 test -s "$T/relay.port" || BAIL_OUT "the relay did not start: $(cat "$T/relay.err")"
RELAY_PORT=$(cat "$T/relay.port")
sshd_site_port "$RELAY_PORT"
: >>"$T/relay.log"

mkdir -p "$T/att" "$T/bundles"
ATT=0		# attempts so far (= relay connections)
SERVE_LINES=0	# lines of serve.log seen
STUCK=0		# times a serve outlived its sync by 20 s

# relay_line N: the relay's log line for connection N (waits for it).
relay_line() {
	wait_for 10 bash -c "[ \$(grep -c . $(printf %q "$T/relay.log")) -ge $1 ]" ||
	    { echo "conn=$1 missing"; return 1; }
	grep "^conn=$1 " "$T/relay.log"
}
field() { # LINE NAME
	local re="(^| )$2=([^ ]*)"
	[[ $1 =~ $re ]] && echo "${BASH_REMATCH[2]}"
}

# attempt PLAN: one sync through the relay; results in $T/att/N.*
attempt() {
	local n t0 t1
	ATT=$((ATT + 1))
	n=$ATT
	printf '%s\n' "$1" >"$T/relay.plan"
	t0=$(date +%s%N)
	timeout -s KILL "$SYNC_LIMIT" "$MGATE" -c "$SITE_CONF" sync \
	    >"$T/att/$n.out" 2>"$T/att/$n.err"
	echo $? >"$T/att/$n.rc"
	t1=$(date +%s%N)
	echo $(( (t1 - t0) / 1000000 )) >"$T/att/$n.ms"
	relay_line "$n" >"$T/att/$n.relay"
	rm -f "$T/relay.plan"
	# Let the gateway's end finish (it may still be committing a bundle
	# whose ACK was cut off) before looking at its spool.
	if ! sshd_wait_sessions 20; then
		STUCK=$((STUCK + 1))
		diag "attempt $n: serve sessions still running 20 s after their sync ended:
$(sshd_show_sessions)"
		for p in $(sshd_session_pids); do kill -9 "$p" 2>/dev/null; done
	fi
	# What serve got (the counter's line, if a session started).
	tail -n "+$((SERVE_LINES + 1))" "$T/serve.log" >"$T/att/$n.serve"
	SERVE_LINES=$(grep -c . "$T/serve.log")
	# Snapshots for the accounting: every bundle the site made (kept, to
	# find its chunk boundaries), the gateway's partial bundles (size, and
	# whether they are a prefix of the site's bundle), which site messages
	# the gateway holds, and which bundle each site message is in.
	local f id sz
	for f in "$T/site/outgoing/"*; do
		id=${f##*/}
		[[ $id =~ ^[0-9a-f]{32}$ ]] && [ ! -e "$T/bundles/$id" ] && cp "$f" "$T/bundles/$id"
	done
	for f in "$T/gw/incoming/"*.part; do
		[ -e "$f" ] || continue
		id=${f##*/ship.}
		id=${id%.part}
		sz=$(stat -c %s "$f")
		if [ -e "$T/bundles/$id" ] && cmp -s -n "$sz" "$f" "$T/bundles/$id"; then
			echo "$id $sz prefix"
		else
			echo "$id $sz NOT-A-PREFIX"
		fi
	done >"$T/att/$n.parts"
	gj | jq -r '.[].peer_id' >"$T/att/$n.gw"
	sj | jq -r '.[] | .id as $i | .recipients[] |
	    "\($i) \(.state) \(.bundle // "-")"' >"$T/att/$n.site"
}

# Bundle bytes still to go up, roughly: the site's bundles less what the
# gateway holds of them, plus a guess for mail not bundled yet.
remaining_bytes() {
	local f id sz have=0 total=0
	for f in "$T/site/outgoing/"*; do
		id=${f##*/}
		[[ $id =~ ^[0-9a-f]{32}$ ]] || continue
		sz=$(stat -c %s "$f")
		have=$(stat -c %s "$T/gw/incoming/ship.$id.part" 2>/dev/null || echo 0)
		total=$((total + (sz > have ? sz - have : 0)))
	done
	if [ "$ATT" = 0 ] || [ "${NEW_MAIL:-0}" = 1 ] ||
	    grep -q ' queued ' "$T/att/$ATT.site" 2>/dev/null; then
		total=$((total + 30000))
	fi
	echo "$total"
}

rand() { # N: a random number in [0, N)
	echo $(( (RANDOM * 32768 + RANDOM) % $1 ))
}

# ---------------------------------------------------------------------------
# H0, S0: the bytes of a sync that has nothing to send.

attempt none
attempt none
L1=$(cat "$T/att/1.relay")
L2=$(cat "$T/att/2.relay")
is "$(cat "$T/att/1.rc") $(cat "$T/att/2.rc")" "0 0" "empty syncs through the relay exit 0"
H0=$(field "$L2" c2s)
S0=$(field "$L2" s2c)
[ "$(field "$L1" c2s)" -gt "$H0" ] && H0=$(field "$L1" c2s)
A0=$(field "$(cat "$T/att/2.serve")" in)
diag "a sync with nothing to send: $H0 bytes client->server, $S0 server->client, $A0 into mgate serve"
like "$H0 $A0" '^[0-9]+ [0-9]+$' "measured the handshake bytes"
TAIL=200	# SSH channel close + disconnect, with room to spare

# ---------------------------------------------------------------------------
# The mail.

NQ=0
queue_one() { # FILE
	strip_from_line "$1" | site queue -i "cut$NQ@example.com" 2>/dev/null &&
	    NQ=$((NQ + 1))
}
mapfile -t EASY < <(cd "$CORPUS/easy_ham" && ls | LC_ALL=C sort)
EI=0		# next easy_ham index to use
# Mixed sizes: every 7th easy_ham message.
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
site pickup >/dev/null 2>&1

# ---------------------------------------------------------------------------
# Cut, cut, cut.

ncut=0 topups=0 bad_rc=0 slow=0 ok_syncs=0
FIRST_CUT=$((ATT + 1))
while :; do
	if [ "$ncut" -lt "$CUTS" ]; then
		r=$(rand 100)
		R=$(remaining_bytes)
		if [ "$r" -lt 10 ]; then
			# Not in the client's last bytes: its channel close and
			# disconnect come after the sync is done, and a cut
			# there is no cut.
			plan="c2s $(rand $((H0 - TAIL)))"
		elif [ "$r" -lt 20 ]; then
			plan="s2c $(rand "$S0")"
		elif [ "$r" -lt 30 ]; then
			plan="ack $((H0 + $(rand $((R < 200000 ? R + 1 : 200000))))) 0"
		elif [ "$R" -gt 0 ]; then
			plan="c2s $((H0 + $(rand $((R < 80000 ? R + 1 : 80000)))))"
		else
			# Nothing left to send: H0 is the whole sync, and a cut
			# at its end would be no cut.  Cut the handshake.
			plan="c2s $(rand $((H0 - TAIL)))"
		fi
	else
		plan=none
	fi
	attempt "$plan"
	NEW_MAIL=0
	line=$(cat "$T/att/$ATT.relay")
	rc=$(cat "$T/att/$ATT.rc")
	ms=$(cat "$T/att/$ATT.ms")
	[ "$ms" -lt $((SYNC_LIMIT * 1000 - 1000)) ] || {
		slow=$((slow + 1))
		diag "attempt $ATT ($plan) took $ms ms"
	}
	if [ "$(field "$line" cut)" = 1 ]; then
		ncut=$((ncut + 1))
		if [ "$rc" != 75 ]; then
			bad_rc=$((bad_rc + 1))
			diag "attempt $ATT ($plan): cut, but sync exited $rc: $(tail -n 2 "$T/att/$ATT.err")"
		fi
	else
		if [ "$rc" != 0 ]; then
			bad_rc=$((bad_rc + 1))
			diag "attempt $ATT ($plan): not cut, but sync exited $rc: $(tail -n 2 "$T/att/$ATT.err")"
		fi
	fi
	pending=$(awk '$2 != "accepted"' "$T/att/$ATT.site" | grep -c .)
	[ -s "$T/att/$ATT.site" ] || pending=unknown
	if [ "$rc" = 0 ] && [ "$pending" = 0 ]; then
		if [ "$ncut" -ge "$CUTS" ]; then
			ok_syncs=$((ok_syncs + 1))
			break
		fi
		# Everything got through before enough cuts: more mail.
		topups=$((topups + 1))
		queue_easy 30
		queue_one "$CORPUS/spam/$(cd "$CORPUS/spam" && ls -S | head -n 1)"
		site pickup >/dev/null 2>&1
		NEW_MAIL=1
		continue
	fi
	if [ "$STUCK" -ge 4 ]; then
		fail "the gateway's end hung $STUCK times: giving up the cuts"
		break
	fi
	if [ "$ATT" -gt $((CUTS * 4 + 50)) ]; then
		fail "sync never got through: $ATT attempts, $ncut cuts"
		break
	fi
done
LAST=$ATT
diag "$((LAST - FIRST_CUT + 1)) attempts, $ncut cuts, $topups top-ups of 31 messages, $NQ messages in all"

ok "at least $CUTS cuts" test "$ncut" -ge "$CUTS"
is "$bad_rc" 0 "every cut sync exited 75, every uncut one 0"
is "$slow" 0 "no sync hung (limit $SYNC_LIMIT s)"
is "$STUCK" 0 "no gateway end (mgate serve) stayed stuck after its sync ended"
is "$(cat "$T/att/$LAST.rc")" 0 "the last sync, without a cut, exits 0"

# ---------------------------------------------------------------------------
# Invariants.

MAP=$(sync_gw_map)
is "$(printf '%s\n' "$MAP" | awk '{print $1}' | uniq -d | grep -c .)" 0 \
    "no message is twice at the gateway (by peer_id)"
is "$(printf '%s\n' "$MAP" | grep -c .)" "$NQ" "the gateway holds all $NQ messages"
is "$(printf '%s\n' "$MAP" | awk '{print $1}')" "$(sj | jq -r '.[].id' | LC_ALL=C sort)" \
    "the gateway's peer_ids are exactly the site's queue IDs"
DIFFS=$(sync_compare_all 4)
is "$(printf '%s' "$DIFFS" | grep -c .)" 0 "every message at the gateway is byte-identical to the site's" ||
    diag "$(printf '%s\n' "$DIFFS" | head -n 5)"
is "$(sync_site_states | awk '$2 != "accepted"' | grep -c .)" 0 "every site recipient is accepted"
is "$(ls "$T/gw/incoming" | grep -c '\.part$')" 0 "no .part file left in the gateway's incoming/"
is "$(ls "$T/site/outgoing" | grep -c .)" 0 "no bundle left in the site's outgoing/"
# Staged files of an unpack cut short are swept by pickup once old enough
# (by design): age them, then count.
find "$T/gw/queue" "$T/gw/tmp" -type f -exec touch -d '2 days ago' {} +
gw pickup >/dev/null 2>&1
is "$(ls "$T/gw/queue" | grep -c .)" "$NQ" "the gateway's queue/ holds one body file per message (after pickup's sweep)"
is "$(ls "$T/gw/tmp" | grep -c .)" 0 "nothing in the gateway's tmp/"

# ---------------------------------------------------------------------------
# Where the cuts landed, and what they cost.

cat "$T/att/"*.err >"$T/all.err"
BIG=$(grep -h ': for gw, ' "$T/all.err" | sed -n 's/.* \([0-9]*\) bytes from .*/\1/p' | sort -n | tail -n 1)
NB=$(grep -ch ': for gw, ' "$T/all.err" | awk '{s += $1} END {print s}')
diag "$NB bundles packed, the largest $BIG bytes"
ok "several bundles" test "$NB" -ge 3
ok "a bundle spans several chunks" test "${BIG:-0}" -gt $((2 * CHUNK_WIRE))
ok "a transfer resumed mid-bundle (\"resuming at byte N\")" grep -q 'resuming at byte [1-9]' "$T/all.err"
ok "a cut between commit and ACK was recognised (\"already committed\")" \
    grep -q 'already committed by gw' "$T/all.err"

"$PYTHON3" - "$T/att" "$T/bundles" "$FIRST_CUT" "$LAST" "$H0" "$A0" "$CHUNK" "$CHUNK_WIRE" \
    >"$T/analysis" 2>"$T/analysis.err" <<'PY'
import os, re, struct, sys

d, bdir = sys.argv[1], sys.argv[2]
first, last, H0, A0, CHUNK, CHUNK_WIRE = map(int, sys.argv[3:])

def rd(n, ext):
    with open(os.path.join(d, "%d.%s" % (n, ext))) as f:
        return f.read()

# Resumption points of each bundle, from its file (mgate-bundle(5)):
# the end of the preamble + sealed header, then the end of every chunk.
bounds, size = {}, {}
for b in os.listdir(bdir):
    with open(os.path.join(bdir, b), "rb") as f:
        data = f.read()
    size[b] = len(data)
    hlen = struct.unpack(">H", data[6:8])[0]
    off = 40 + hlen
    bl = [off]
    while off < len(data):
        word = struct.unpack(">I", data[off:off + 4])[0]
        off += 4 + (word & 0x7fffffff) + 16
        bl.append(off)
    if off != len(data):
        print("bad_bundle %s" % b)
    bounds[b] = bl

def floor(b, s):
    v = 0
    for x in bounds[b]:
        if x <= s:
            v = x
    return v

qids, att = {}, {}
for n in range(1, last + 1):
    a = {"n": n}
    err = rd(n, "err")
    a["rc"] = int(rd(n, "rc"))
    rel = rd(n, "relay").strip()
    a["plan"] = re.search(r'plan="([^"]*)"', rel).group(1)
    a["c2s"] = int(re.search(r"c2s=(\d+)", rel).group(1))
    a["cut"] = re.search(r"cut=(\d)", rel).group(1) == "1"
    srv = rd(n, "serve").split("\n")
    a["app"] = sum(int(m.group(1)) for l in srv for m in [re.search(r"in=(\d+)", l)] if m)
    a["serve_end"] = " ".join(re.sub(r"^pid=\d+ in=\d+ ", "", l) for l in srv if l)
    a["resume"] = {m.group(1): int(m.group(2)) for m in
                   re.finditer(r"bundle ([0-9a-f]{32}): resuming at byte (\d+) of", err)}
    a["already"] = set(re.findall(r"bundle ([0-9a-f]{32}): already committed by", err))
    m = re.search(r"lost while ([a-z ]+?) \(", err)
    a["stage"] = m.group(1) if m else ("ok" if a["rc"] == 0 else "ssh")
    a["parts"], a["badprefix"] = {}, []
    for l in rd(n, "parts").split("\n"):
        if l.strip():
            b, sz, how = l.split()
            a["parts"][b] = int(sz)
            if how != "prefix":
                a["badprefix"].append(b)
    a["gw"] = set(rd(n, "gw").split())
    a["site_state"] = {}
    for l in rd(n, "site").split("\n"):
        if l.strip():
            q, st, b = l.split()
            a["site_state"][q] = st
            if b != "-":
                qids.setdefault(b, set()).add(q)
    att[n] = a

def committed(n, b):
    return n > 0 and bool(qids.get(b, set()) & att[n]["gw"])

def acked(n, b):
    return n > 0 and all(att[n]["site_state"].get(q) not in (None, "bundled", "queued")
                         for q in qids.get(b, ()))

def held(n, b):
    """Bundle bytes of b the gateway holds verified after attempt n."""
    if n == 0:
        return 0
    if committed(n, b):
        return size[b]
    return floor(b, att[n]["parts"].get(b, 0))

missing = [b for n in att for b in att[n]["parts"] if b not in size]
print("unknown_parts %s" % (",".join(sorted(set(missing))) or "-"))
print("not_prefix %s" % (",".join("%d:%s" % (n, b) for n in att
                                  for b in att[n]["badprefix"]) or "-"))
# A .part file of a bundle the gateway has committed is never resumed
# nor removed: stale.  Where it appeared first, and how serve ended then.
stale = {}
for n in sorted(att):
    for b in att[n]["parts"]:
        if b in size and committed(n, b) and b not in stale:
            stale[b] = n
print("stale_parts %d %s" % (len(stale), ",".join(
    "%s(size %d, after try %d, serve %s)" % (b[:8], att[n]["parts"][b], n,
                                             att[n]["serve_end"] or "-")
    for b, n in sorted(stale.items(), key=lambda x: x[1])) or "-"))
sig = [(n, att[n]["serve_end"]) for n in att if "signal=" in att[n]["serve_end"]]
print("serve_signals %d %s" % (len(sig), ",".join("%d:%s" % x for x in sig[:8]) or "-"))

# The sync logs must agree: "resuming at byte N" = what the gateway held
# verified after the previous attempt; "already committed" only for a
# bundle the gateway had committed.
bad_resume = []
for n in range(2, last + 1):
    for b, off in att[n]["resume"].items():
        if b in size and off != held(n - 1, b):
            bad_resume.append("%d:%s:%d!=%d" % (n, b[:8], off, held(n - 1, b)))
    for b in att[n]["already"]:
        if b in size and not committed(n - 1, b):
            bad_resume.append("%d:%s:already-but-not-committed" % (n, b[:8]))
print("bad_resume %s" % (",".join(bad_resume) or "-"))

rows, fail_r, fail_d = [], [], []
phases = {"handshake": 0, "offer": 0, "data": 0, "ack": 0}
for n in range(first, last + 1):
    a = att[n]
    if not a["cut"]:
        continue
    p = sum(held(n, b) - held(n - 1, b) for b in size)
    dsc = sum(s - floor(b, s) for b, s in a["parts"].items()
              if b in size and not committed(n, b))
    live = [b for b in size if not committed(n - 1, b)]
    nb = len(live)
    r = a["app"] - p
    allow = A0 + 40 * nb + 82 * (a["app"] // 65536 + nb + 1)
    w = a["c2s"] - p
    # Where the cut fell, as the gateway saw it.
    pre = A0 + 40 * nb
    if any(committed(n, b) and not acked(n, b) and not committed(n - 1, b)
           for b in size):
        ph = "ack"
    elif a["app"] < 27:
        ph = "handshake"
    elif a["app"] <= pre:
        ph = "offer"
    else:
        ph = "data"
    phases[ph] += 1
    rows.append((n, a["plan"], a["stage"], ph, a["c2s"], a["app"], p, dsc, r,
                 allow, w))
    if r > CHUNK + allow:
        fail_r.append("%d(%d>%d)" % (n, r, CHUNK + allow))
    if dsc >= CHUNK_WIRE:
        fail_d.append("%d(%d)" % (n, dsc))

print("cuts %d" % len(rows))
print("phases " + " ".join("%s=%d" % kv for kv in sorted(phases.items())))
for ph, k in phases.items():
    print("phase_%s %d" % (ph, k))
print("fail_r %s" % (",".join(fail_r) or "-"))
print("fail_d %s" % (",".join(fail_d) or "-"))
rs = [x[8] for x in rows]
ds = [x[7] for x in rows]
ws = [x[10] for x in rows]
print("summary: %d cuts; resent per cut (bytes serve got, minus progress): "
      "mean %d, max %d; dropped from .part files per cut: mean %d, max %d; "
      "resent on the wire per cut: mean %d, max %d; %d bundle bytes in %d "
      "bundles" % (len(rows), sum(rs) // max(1, len(rs)), max(rs or [0]),
                   sum(ds) // max(1, len(ds)), max(ds or [0]),
                   sum(ws) // max(1, len(ws)), max(ws or [0]),
                   sum(size.values()), len(size)))
print("table")
print("%4s %-18s %-22s %-9s %7s %7s %7s %6s %7s %6s %7s" % ("try", "plan",
      "client saw", "phase", "wire", "serve", "progr", "dropd", "resent",
      "allow", "wire-rs"))
for x in rows:
    print("%4d %-18s %-22s %-9s %7d %7d %7d %6d %7d %6d %7d" % x)
PY
ok "the resent-bytes analysis ran" test -s "$T/analysis" || diag "$(cat "$T/analysis.err")"
A=$(cat "$T/analysis")
get() { printf '%s\n' "$A" | awk -v k="$1" '$1 == k {print $2}'; }
diag "$(printf '%s\n' "$A" | sed -n '/^table/,$p' | tail -n +2)"
diag "$(printf '%s\n' "$A" | grep -E '^(phases|summary|serve_signals|stale_parts)')"
diag "$(ls -l "$T/gw/incoming")"
is "$(get cuts)" "$ncut" "the analysis saw every cut"
is "$(get unknown_parts)" - "every partial bundle at the gateway is one the site sent"
is "$(get not_prefix)" - "every partial bundle at the gateway is a prefix of the site's bundle"
is "$(get bad_resume)" - "every \"resuming at byte N\" is the end of the last complete chunk the gateway held"
for ph in handshake offer data ack; do
	ok "cuts landed in the $ph phase ($(get phase_$ph))" test "$(get phase_$ph)" -ge 1
done
is "$(get stale_parts)" 0 "no attempt left a .part file for a bundle the gateway had committed"
is "$(get fail_d)" - "every cut: bytes written at the gateway but dropped at resume < one chunk ($CHUNK_WIRE)"
is "$(get fail_r)" - "every cut: bytes resent <= one chunk ($CHUNK) + the sync protocol's handshake"

# ---------------------------------------------------------------------------
# Resume granularity, deterministic: serve gets the first LIMIT bytes of
# each session (hello, a one-bundle offer, then 1.5 chunks of bundle
# bytes in one DATA frame), then its input ends.  Every session must add
# at least one chunk to what the gateway holds.

BIGSPAM=$(cd "$CORPUS/spam" && ls -S | head -n 1)
strip_from_line "$CORPUS/spam/$BIGSPAM" | site queue -i granular@example.com 2>/dev/null
NQ=$((NQ + 1))
site pickup >/dev/null 2>&1
GID=$(sj | jq -r '.[] | select(.recipients[0].address == "granular@example.com") | .id')
LIMIT=$((A0 + 40 + 45 + CHUNK * 3 / 2))
echo "$LIMIT" >"$T/serve.limit"
offs=() got=0
GFIRST=$((ATT + 1))	# its first attempt packs its bundle
for i in $(seq 1 24); do
	attempt none
	o=$(sed -n 's/.*resuming at byte \([0-9]*\) of.*/\1/p' "$T/att/$ATT.err" | tail -n 1)
	offs+=("${o:-0}")
	if [ "$(cat "$T/att/$ATT.rc")" = 0 ]; then
		got=$i
		break
	fi
done
rm -f "$T/serve.limit"
GPACK=$(grep -h ': for gw, ' "$T/att/$GFIRST.err" | tail -n 1)
diag "serve limited to $LIMIT bytes per session: resume offsets ${offs[*]}; ${GPACK#*: for gw, }"
GBYTES=$(sed -n 's/.* \([0-9]*\) bytes from .*/\1/p' <<<"$GPACK")
NCHUNKS=$(( (${GBYTES:-0} + CHUNK - 1) / CHUNK ))
ok "a $NCHUNKS-chunk bundle gets through when each session delivers 1.5 chunks (sessions: ${got:-none})" \
    test "$got" -ge 1 -a "$got" -le $((NCHUNKS + 1))
adv=1
for ((i = 1; i < ${#offs[@]}; i++)); do
	[ "${offs[i]}" -ge $(( ${offs[i - 1]} + CHUNK )) ] || adv=0
done
is "$adv" 1 "every session with 1.5 chunks advanced the resume point by a chunk or more (offsets ${offs[*]})"
if [ "$got" = 0 ]; then
	attempt none
	is "$(cat "$T/att/$ATT.rc")" 0 "without the limit the bundle gets through"
fi
is "$(sync_gw_map | awk -v g="$GID" '$1 == g' | grep -c .)" 1 "the granularity test's message is at the gateway once"
GB=$(sj | jq -r --arg q "$GID" '.[] | select(.id == $q) | .recipients[0].bundle')
is "$(ls "$T/gw/incoming" | grep -c "$GB")" 0 "no .part file of its bundle left after it"

is "$(sync_json_errors)" 0 "mgate list --json always printed JSON (see $T/json-error.*)"

done_testing
