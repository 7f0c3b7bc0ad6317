#!/usr/bin/env bash
# Sync over SMTP (the site's transport = smtp: STARTTLS with a pinned
# certificate, AUTH, X-MGATE-SYNC, then the sync protocol) through a relay
# that cuts the link (tests/lib/cutrelay.py), over and over.
#
# First, refusals with nothing sent: a pinned fingerprint of another
# certificate, a CA file that did not sign the gateway's certificate, a
# wrong password: sync exits 75 and says why, the gateway sees no AUTH (no
# session at all for a bad certificate), no bundle, the mail stays queued.
# Then one sync without cuts through the relay (the baseline, and H0/S0:
# the bytes each way of a sync with nothing to send).
#
# The cuts: ~100 corpus messages (and large incompressible ones, bundles
# of several 64 KiB chunks) queued at the site, max_bundle_size 64k.  Each
# attempt's cut is drawn from a seeded generator (E: roughly the bytes
# still to send, from the site's queue):
#   SMTP/TLS/AUTH/hello     c2s after U(0, H0) bytes
#   server side early       s2c after U(0, S0) bytes
#   after END, before ACK   the server's first bytes once the client sent
#                           H0 + U(0, E) are dropped
#   mid-data                c2s after H0 + U(0, E) bytes
# until at least CUTS cuts interrupted a sync (more mail is queued when
# everything got through before that), then syncs without cuts until one
# exits 0.  After each attempt the test waits until the gateway's session
# has ended.  Every sync must exit 0 or 75 (never a signal), 75 only when
# the relay cut; none may hang; `list --json' stays JSON.  Then: every
# message is at the gateway exactly once (by peer_id) and byte-identical to
# the site's copy; every site recipient is accepted; nothing partial is
# left on either side; a bundle resumed mid-way; a cut between commit and
# ACK was recognised.
#
# The cuts again without waiting for the gateway's end of a cut session
# (the site reconnects at once), and a link that goes silent without a
# reset: the site gives up after io_timeout, syncs again while the
# gateway's old session still hangs (the listener takes no per-site lock),
# resumes the bundle, and the stale session's end changes nothing.  Last,
# tls_ca_file instead of a pin.
#
# Environment: MGATE_CUTS_SEED (repeat a run), MGATE_CUTS (cuts to reach;
# default 100, 33 under MGATE_ASAN=1).
set -uo pipefail
. "$(dirname "$0")/lib/testlib.sh"

need_mgate
need_cmd openssl jq cmp
CORPUS=$(corpus_dir) || skip_all "no corpus"
mgate_setup

if [ "${MGATE_ASAN:-0}" = 1 ]; then
	CUTS=${MGATE_CUTS:-33}
	NMSG=30
	TOPUP=10
	RACE_CUTS=8
	SYNC_LIMIT=90
else
	CUTS=${MGATE_CUTS:-100}
	NMSG=100
	TOPUP=15
	RACE_CUTS=15
	SYNC_LIMIT=30
fi
SMTPD_TIMEOUT=10
IO_TIMEOUT=10
SEED=${MGATE_CUTS_SEED:-$(($(date +%s%N) % 1000000007))}
RANDOM=$SEED
diag "seed $SEED (MGATE_CUTS_SEED=$SEED repeats the cut plan), $CUTS cuts"

# ---------------------------------------------------------------------------
# Gateway (daemon with its listener) and site.

mkcert() { # NAME CN
	openssl req -x509 -newkey ed25519 -nodes -keyout "$T/$1.key.pem" -out "$T/$1.pem" \
	    -days 30 -subj "/CN=$2" -addext "subjectAltName=DNS:$2,IP:127.0.0.1" 2>/dev/null
}
mkcert gwcert gw.example.net && mkcert other gw.example.net || BAIL_OUT "openssl req failed"
fpr() { openssl x509 -in "$1" -outform DER | sha256sum | cut -d' ' -f1; }
FPR=$(fpr "$T/gwcert.pem")
OTHER_FPR=$(fpr "$T/other.pem")
"$MGATE" keygen "$T/site.key" >/dev/null && "$MGATE" keygen "$T/gw.key" >/dev/null ||
    BAIL_OUT "mgate keygen failed"
PW='correct horse battery staple'
HASH=$(printf '%s\n' "$PW" | "$MGATE" passwd-hash) || BAIL_OUT "passwd-hash failed"
printf '%s\n' "$PW" >"$T/pw"
printf '%s\n' "not the $PW" >"$T/badpw"
chmod 600 "$T/pw" "$T/badpw"

GW_CONF=$T/gw.conf
SITE_CONF=$T/site.conf
write_gw_conf() { # PORT
	cat >"$GW_CONF" <<EOF
role = gateway
spool_directory = $T/gw
myhostname = gw.example.net
mydomain = example.net
local_name = gw
log_destination = stderr
private_key = $T/gw.key
# No delivery during the test: one queue run at start, the next in an hour;
# and MX lookups would go where nobody answers.
queue_run_interval = 1h
dns_resolver = 127.0.0.1:9
smtpd_listen = 127.0.0.1:$1
smtpd_tls_cert_file = $T/gwcert.pem
smtpd_tls_key_file = $T/gwcert.key.pem
smtpd_timeout = ${SMTPD_TIMEOUT}s
smtpd_max_sessions = 20

[peer ship]
transport = file
public_key = $T/site.key.pub
domains = ship.example.org
sender_domains = ship.example.org
smtp_password_hash = $HASH
EOF
}
# site_conf PORT [PEER KEY LINES...]
site_conf() {
	local port=$1
	shift
	{
		cat <<EOF
spool_directory = $T/site
myhostname = ship.example.org
mydomain = ship.example.org
local_name = ship
log_destination = stderr
private_key = $T/site.key
local_mailbox = $T/mail/%u/Maildir/
pickup_after_queue = no

[peer gw]
transport = smtp
host = 127.0.0.1
port = $port
public_key = $T/gw.key.pub
max_bundle_size = 64k
connect_timeout = 5s
io_timeout = ${IO_TIMEOUT}s
EOF
		if [ $# -gt 0 ]; then
			printf '%s\n' "$@"
		else
			printf '%s\n' "password_file = $T/pw" "tls_fingerprint = $FPR"
		fi
	} >"$SITE_CONF"
}
gw() { "$MGATE" -c "$GW_CONF" "$@"; }
site() { "$MGATE" -c "$SITE_CONF" "$@"; }

write_gw_conf 25
site_conf 25
gw init >/dev/null && site init >/dev/null || BAIL_OUT "mgate init failed"

DPID=
stop_daemon() {
	[ -n "$DPID" ] || return 0
	kill -TERM "$DPID" 2>/dev/null
	for _ in $(seq 100); do
		kill -0 "$DPID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$DPID" 2>/dev/null
	wait "$DPID" 2>/dev/null
	DPID=
}
on_exit stop_daemon
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for try in 1 2 3; do
	PORT=$(free_port)
	write_gw_conf "$PORT"
	"$MGATE" -c "$GW_CONF" daemon 2>>"$T/gw.log" &
	DPID=$!
	wait_for 10 port_open "$PORT" && break
	diag "the listener did not come up on $PORT (try $try): $(tail -n 3 "$T/gw.log")"
	stop_daemon
	PORT=
done
[ -n "$PORT" ] || BAIL_OUT "cannot start mgate daemon with its listener (see $T/gw.log)"

# The gateway's SMTP sessions: every "connect from" has its "disconnect from"
# once the session's process has finished (committed, acknowledged).
sessions_open() {
	local c d
	c=$(grep -c ': connect from ' "$T/gw.log")
	d=$(grep -c ': disconnect from ' "$T/gw.log")
	[ "$c" -gt "$d" ]
}
sessions_done() { ! sessions_open; }
wait_sessions() { wait_for "${1:-20}" sessions_done; }
# The port probe above made a session too.
wait_sessions 5
AUTHS() { grep -c 'authenticated as site ship' "$T/gw.log"; }

# ---------------------------------------------------------------------------
# The mail.

NQ=0
queue_one() { # FILE
	strip_from_line "$1" | site queue -i "cut$NQ@example.com" 2>/dev/null &&
	    NQ=$((NQ + 1))
}
mapfile -t EASY < <(cd "$CORPUS/easy_ham" && ls | LC_ALL=C sort)
EI=0
queue_easy() { # COUNT
	local i
	for ((i = 0; i < $1; i++)); do
		queue_one "$CORPUS/easy_ham/${EASY[EI % ${#EASY[@]}]}"
		EI=$((EI + 11))
	done
}
# First a small batch, for the refusals and one sync without cuts.
queue_easy $((NMSG / 5))
is "$NQ" $((NMSG / 5)) "$((NMSG / 5)) corpus messages queued at the site"
site pickup >/dev/null 2>&1
# A message with a random attachment (incompressible): a bundle of its own,
# of several 64 KiB chunks.
NBIG=0
queue_big() { # BYTES
	NBIG=$((NBIG + 1))
	{
		printf 'From: root@ship.example.org\nTo: big%d@example.com\n' "$NBIG"
		printf 'Subject: big %d\nMIME-Version: 1.0\n' "$NBIG"
		printf 'Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n'
		openssl rand -base64 "$1"
	} | site queue -i "big$NBIG@example.com" 2>/dev/null && NQ=$((NQ + 1))
}
site_states() {
	site list --json | jq -r '.[] | .id as $i | .recipients[] | "\($i) \(.state)"' | LC_ALL=C sort
}
SITE_BEFORE=$(site_states)

# ---------------------------------------------------------------------------
# Refusals: nothing may be sent.

refused() { # NAME REGEX: one sync that must be refused with nothing sent
	local a0
	a0=$(AUTHS)
	run timeout -s KILL "$SYNC_LIMIT" "$MGATE" -c "$SITE_CONF" sync
	is "$RUN_STATUS" 75 "$1: sync exits 75"
	like "$RUN_STDERR" "$2" "$1: says why" || true
	like "$RUN_STDERR" 'mail stays queued' "$1: says the mail stays queued"
	wait_sessions 10
	is "$(AUTHS)" "$a0" "$1: the gateway saw no successful AUTH"
	is "$(gw list --json | jq length)" 0 "$1: nothing reached the gateway's queue"
	is "$(ls "$T/gw/incoming" 2>/dev/null | grep -c .)" 0 "$1: no bundle, not even a partial one, at the gateway"
	is "$(site_states)" "$SITE_BEFORE" "$1: every message still queued at the site"
}
site_conf "$PORT" "password_file = $T/pw" "tls_fingerprint = $OTHER_FPR"
refused "pinned fingerprint of another certificate" '(fingerprint|certificate)'
site_conf "$PORT" "password_file = $T/pw" "tls_ca_file = $T/other.pem"
refused "CA file that did not sign the certificate" 'certificate'
site_conf "$PORT" "password_file = $T/badpw" "tls_fingerprint = $FPR"
refused "wrong password" '535'
ok "the gateway logged the failed login" grep -q 'authentication failed for .ship.' "$T/gw.log"
diag "$(grep -E 'TLS|authentication' "$T/gw.log" | tail -n 3)"

# ---------------------------------------------------------------------------
# The relay.

"$PYTHON3" "$TESTLIB/cutrelay.py" --target "$PORT" --port-file "$T/relay.port" \
    --plan "$T/relay.plan" --log "$T/relay.log" --seed "$SEED" 2>"$T/relay.err" &
RELAY=$!
on_exit "kill $RELAY 2>/dev/null || true"
wait_for 10 test -s "$T/relay.port" || BAIL_OUT "the relay did not start: $(cat "$T/relay.err")"
RELAY_PORT=$(cat "$T/relay.port")
site_conf "$RELAY_PORT"
: >>"$T/relay.log"
mkdir -p "$T/att"
ATT=0

relay_line() { # N: the relay's log line for its connection N
	wait_for 10 grep -q "^conn=$1 " "$T/relay.log" || { echo "conn=$1 missing"; return 1; }
	grep "^conn=$1 " "$T/relay.log"
}
field() { # LINE NAME
	local re="(^| )$2=([^ ]*)"
	[[ $1 =~ $re ]] && echo "${BASH_REMATCH[2]}"
}
CONN=0	# the relay's connections so far
# attempt PLAN [nowait]: one sync through the relay; results in $T/att/N.*
attempt() {
	local n t0 t1 rc
	ATT=$((ATT + 1))
	n=$ATT
	printf '%s\n' "$1" >"$T/relay.plan"
	t0=$(date +%s%N)
	for _ in 1 2 3; do
		rc=0
		timeout -s KILL "$SYNC_LIMIT" "$MGATE" -c "$SITE_CONF" sync \
		    >"$T/att/$n.out" 2>"$T/att/$n.err" || rc=$?
		# 126/127: the binary could not be run at all (a build
		# directory being relinked): no connection was made; again.
		[ "$rc" = 126 ] || [ "$rc" = 127 ] || break
		sleep 2
	done
	echo "$rc" >"$T/att/$n.rc"
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000)) >"$T/att/$n.ms"
	if [ "$rc" = 126 ] || [ "$rc" = 127 ]; then
		echo "conn=none (mgate could not be run)" >"$T/att/$n.relay"
	else
		CONN=$((CONN + 1))
		relay_line "$CONN" >"$T/att/$n.relay"
	fi
	rm -f "$T/relay.plan"
	if [ "${2:-}" != nowait ]; then
		wait_sessions 20 || diag "attempt $n: the gateway's session still runs after 20 s"
	fi
}
rand() { echo $(((RANDOM * 32768 + RANDOM) % $1)); }

attempt none
attempt none
L1=$(cat "$T/att/1.relay")
L2=$(cat "$T/att/2.relay")
is "$(cat "$T/att/1.rc")" 0 "the first sync through the relay, uncut, exits 0" ||
    diag "$(cat "$T/att/1.err")"
is "$(cat "$T/att/2.rc")" 0 "so does the second, with nothing left to send"
H0=$(field "$L2" c2s)
S0=$(field "$L2" s2c)
diag "a sync with nothing to send: $H0 bytes client->server, $S0 server->client (SMTP, TLS, AUTH, sync)"
like "$H0 $S0" '^[0-9]+ [0-9]+$' "measured the handshake bytes"
GOT1=$(gw list --json | jq length)
is "$GOT1" "$NQ" "the uncut sync delivered all $NQ messages to the gateway"

# cat_exec site|gw QID: `mgate cat', once more if the binary could not
# be executed at all (126/127: the build directory is being relinked).
cat_exec() {
	local rc=0
	"$1" cat "$2" || rc=$?
	if [ "$rc" = 126 ] || [ "$rc" = 127 ]; then
		sleep 2
		rc=0
		"$1" cat "$2" || rc=$?
	fi
	return "$rc"
}
MAP_CHECK() { # the invariants, after everything got through; PREFIX for names
	local map diffs
	map=$(gw list --json | jq -r '.[] | "\(.peer_id) \(.id)"' | LC_ALL=C sort)
	is "$(printf '%s\n' "$map" | awk '{print $1}' | uniq -d | grep -c .)" 0 \
	    "$1: no message is twice at the gateway (by peer_id)"
	is "$(printf '%s\n' "$map" | grep -c .)" "$NQ" "$1: the gateway holds all $NQ messages"
	is "$(printf '%s\n' "$map" | awk '{print $1}')" "$(site list --json | jq -r '.[].id' | LC_ALL=C sort)" \
	    "$1: the gateway's peer_ids are exactly the site's queue IDs"
	printf '%s\n' "$map" >"$T/map"
	local k pids=()
	for k in 0 1 2 3; do
		awk -v k=$k 'NR % 4 == k' "$T/map" | while read -r pid gid; do
			[ -n "$pid" ] || continue
			if ! cat_exec site "$pid" >"$T/c$k.site" 2>"$T/c$k.err" ||
			    ! cat_exec gw "$gid" >"$T/c$k.gw" 2>>"$T/c$k.err"; then
				echo "$pid/$gid: cat failed: $(tr '\n' ' ' <"$T/c$k.err")"
			elif [ ! -s "$T/c$k.site" ] || ! cmp -s "$T/c$k.site" "$T/c$k.gw"; then
				echo "$pid/$gid differs"
			fi
		done >"$T/diffs.$k" &
		pids+=($!)
	done
	wait "${pids[@]}"
	diffs=$(cat "$T"/diffs.?)
	is "$(printf '%s' "$diffs" | grep -c .)" 0 "$1: every message at the gateway is byte-identical to the site's" ||
	    diag "$(printf '%s\n' "$diffs" | head -n 5)"
	is "$(site_states | awk '$2 != "accepted"' | grep -c .)" 0 "$1: every site recipient is accepted"
	is "$(ls "$T/gw/incoming" | grep -c '\.part$')" 0 "$1: no .part file left in the gateway's incoming/"
	is "$(ls "$T/site/outgoing" | grep -c .)" 0 "$1: no bundle left in the site's outgoing/"
}
MAP_CHECK "uncut"

# Start over with fresh mail for the cuts: the gateway forgets (delete),
# the site forgets (delete), then the corpus again.
gw list --json | jq -r '.[].id' | xargs -r "$MGATE" -c "$GW_CONF" delete >/dev/null 2>&1
site list --json | jq -r '.[].id' | xargs -r "$MGATE" -c "$SITE_CONF" delete >/dev/null 2>&1
is "$(gw list --json | jq length) $(site list --json | jq length)" "0 0" "both queues emptied for the cut runs"
NQ=0
queue_easy $((NMSG - 5))
# A few large ones (base64 attachments): bundles of several 64 KiB chunks.
while read -r f; do queue_one "$CORPUS/hard_ham/$f"; done < <(cd "$CORPUS/hard_ham" && ls -S | head -n 2)
while read -r f; do queue_one "$CORPUS/spam/$f"; done < <(cd "$CORPUS/spam" && ls -S | head -n 3)
site pickup >/dev/null 2>&1
is "$NQ" "$NMSG" "$NMSG new messages queued for the cuts"

# ---------------------------------------------------------------------------
# Cut, cut, cut.

# cut_loop CUTS [nowait]: attempts with random cuts until CUTS cuts, then
# uncut ones until a sync exits 0 with nothing pending.
cut_loop() {
	local want=$1 how=${2:-} plan r line rc ms pending first=$((ATT + 1))
	ncut=0 topups=0 bad_rc=0 slow=0 sigdeaths=0 badjson=0
	while :; do
		if [ "$ncut" -lt "$want" ]; then
			# E: roughly the client->server bytes of what is pending
			# (compressed bundles), so that most cuts land inside it.
			E=$(jq '[.[] | select(any(.recipients[]; .state != "accepted")) | .size] | add // 0 | . * 3 / 10 | floor + 2000' \
			    "$T/att/$ATT.list" 2>/dev/null) || E=
			[[ $E =~ ^[0-9]+$ ]] || E=200000
			r=$(rand 100)
			if [ "$r" -lt 15 ]; then
				plan="c2s $(rand "$H0")"
			elif [ "$r" -lt 25 ]; then
				plan="s2c $(rand "$S0")"
			elif [ "$r" -lt 50 ]; then
				plan="ack $((H0 + $(rand "$E"))) 0"
			else
				plan="c2s $((H0 + $(rand "$E")))"
			fi
		else
			plan=none
		fi
		attempt "$plan" $how
		line=$(cat "$T/att/$ATT.relay")
		rc=$(cat "$T/att/$ATT.rc")
		ms=$(cat "$T/att/$ATT.ms")
		if [ "$ms" -ge $((SYNC_LIMIT * 1000 - 1000)) ]; then
			slow=$((slow + 1))
			diag "attempt $ATT ($plan) took $ms ms"
		fi
		# The relay says cut=1 for its own cuts, and also when one end
		# reset the connection itself (mgate's client closes with unread
		# bytes).  A cut that interrupted the sync makes it exit 75; one
		# that came after the sync's end may leave it 0.  Anything else
		# (a signal, another status) is wrong.
		case $rc in
		0) ;;
		75)
			if [ "$(field "$line" cut)" = 1 ]; then
				ncut=$((ncut + 1))
			else
				bad_rc=$((bad_rc + 1))
				diag "attempt $ATT ($plan): not cut, but sync exited 75: $(tail -n 2 "$T/att/$ATT.err")"
			fi
			;;
		*)
			[ "$(field "$line" cut)" = 1 ] && ncut=$((ncut + 1))
			bad_rc=$((bad_rc + 1))
			if [ "$rc" -gt 128 ]; then
				sigdeaths=$((sigdeaths + 1))
				[ "$sigdeaths" -gt 3 ] ||
				    diag "attempt $ATT ($plan; relay: $(sed 's/^conn=[0-9]* plan="[^"]*" //' "$T/att/$ATT.relay")): sync killed by signal $((rc - 128)); its last words: $(tail -n 1 "$T/att/$ATT.err")"
			else
				diag "attempt $ATT ($plan): sync exited $rc: $(tail -n 2 "$T/att/$ATT.err")"
			fi
			;;
		esac
		# The site's queue after the attempt (list --json must be JSON).
		site list --json >"$T/att/$ATT.list" 2>"$T/att/$ATT.list.err"
		if ! jq -e . "$T/att/$ATT.list" >/dev/null 2>&1; then
			badjson=$((badjson + 1))
			[ "$badjson" -gt 3 ] || diag "attempt $ATT: the site's list --json is not JSON: $(head -c 300 "$T/att/$ATT.list" | tr '\n' ' ') / stderr: $(head -c 300 "$T/att/$ATT.list.err" | tr '\n' ' ')"
		fi
		pending=$(jq -r '.[] | .recipients[] | select(.state != "accepted") | .state' "$T/att/$ATT.list" 2>/dev/null | grep -c .)
		jq -e . "$T/att/$ATT.list" >/dev/null 2>&1 || pending=unknown
		if [ "$rc" = 0 ] && [ "$pending" = 0 ]; then
			[ "$ncut" -lt "$want" ] || break
			# Everything got through before enough cuts: more mail.
			topups=$((topups + 1))
			queue_easy "$TOPUP"
			queue_big $((100000 + $(rand 150000)))
			site pickup >/dev/null 2>&1
			site list --json >"$T/att/$ATT.list" 2>/dev/null
		fi
		if [ "$ATT" -gt $((first + want * 4 + 50)) ]; then
			fail "sync never got through: $((ATT - first + 1)) attempts, $ncut cuts"
			break
		fi
	done
	LAST=$ATT
	diag "$((LAST - first + 1)) attempts, $ncut cuts, $topups top-ups of $((TOPUP + 1)) messages, $NQ messages in all"
	ok "at least $want cuts interrupted a sync ($ncut)" test "$ncut" -ge "$want"
	is "$badjson" 0 "the site's list --json was valid JSON after every attempt"
	is "$sigdeaths" 0 "no sync was killed by a signal (exit 141: SIGPIPE when the link drops under TLS)"
	is "$bad_rc" 0 "every sync exited 0 or 75, and 75 only when the link was cut"
	is "$slow" 0 "no sync hung (limit $SYNC_LIMIT s)"
	is "$(cat "$T/att/$LAST.rc")" 0 "the last sync, without a cut, exits 0"
}

FIRST_CUT=$((ATT + 1))
cut_loop "$CUTS"
wait_sessions 20
MAP_CHECK "after $CUTS cuts"
cat "$T/att/"*.err >"$T/all.err"
NB=$(grep -ch ': for gw, ' "$T/all.err" | awk '{s += $1} END {print s + 0}')
diag "$NB bundles packed; cut plans: $(sed -n 's/.*plan="\([a-z0-9]*\).*cut=1.*/\1/p' "$T/relay.log" | sort | uniq -c | tr '\n' ' ')"
ok "several bundles" test "$NB" -ge 3
ok "a transfer resumed mid-bundle (\"resuming at byte N\")" grep -q 'resuming at byte [1-9]' "$T/all.err"
ok "a cut between commit and ACK was recognised (\"already committed\")" \
    grep -q 'already committed' "$T/all.err"

# ---------------------------------------------------------------------------
# The same without waiting: the site reconnects at once, while the
# gateway's process of the cut session may still be reading, committing
# or acknowledging.

wait_sessions 20
gw list --json | jq -r '.[].id' | xargs -r "$MGATE" -c "$GW_CONF" delete >/dev/null 2>&1
site list --json | jq -r '.[].id' | xargs -r "$MGATE" -c "$SITE_CONF" delete >/dev/null 2>&1
NQ=0
queue_easy $((NMSG / 2))
site pickup >/dev/null 2>&1
cut_loop "$RACE_CUTS" nowait
wait_sessions 30
MAP_CHECK "after $RACE_CUTS cuts without waiting"

# ---------------------------------------------------------------------------
# A link that goes silent (no reset, as when a radio link fades): the site
# gives up after io_timeout; the gateway's session stays, blocked, until
# smtpd_timeout; meanwhile the site syncs again and resumes the bundle.

cat >"$T/freeze.py" <<'PY'
import select, socket, sys, time
target, limit, portfile, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
open(portfile + ".tmp", "w").write("%d\n" % ls.getsockname()[1])
__import__("os").rename(portfile + ".tmp", portfile)
c, _ = ls.accept()
s = socket.create_connection(("127.0.0.1", target))
n, frozen = 0, False
while not frozen:
    for x in select.select([c, s], [], [])[0]:
        d = x.recv(65536)
        if not d:
            frozen = True
            break
        if x is c:
            if n + len(d) >= limit:
                d, frozen = d[:limit - n], True
            n += len(d)
            s.sendall(d)
        else:
            c.sendall(d)
        if frozen:
            break
print("forwarded %d bytes client->server, then silence" % n, flush=True)
time.sleep(hold)	# both sockets stay open, nothing moves
PY
wait_sessions 20
gw list --json | jq -r '.[].id' | xargs -r "$MGATE" -c "$GW_CONF" delete >/dev/null 2>&1
site list --json | jq -r '.[].id' | xargs -r "$MGATE" -c "$SITE_CONF" delete >/dev/null 2>&1
NQ=0
queue_big 300000
site pickup >/dev/null 2>&1
"$PYTHON3" "$T/freeze.py" "$PORT" $((H0 + 150000)) "$T/freeze.port" $((SMTPD_TIMEOUT + IO_TIMEOUT + 20)) \
    >"$T/freeze.out" 2>&1 &
FREEZE=$!
on_exit "kill $FREEZE 2>/dev/null || true"
wait_for 10 test -s "$T/freeze.port" || BAIL_OUT "the freezing relay did not start"
IO_TIMEOUT=5 site_conf "$(cat "$T/freeze.port")"
t0=$(date +%s)
run timeout -s KILL 60 "$MGATE" -c "$SITE_CONF" sync
t1=$(date +%s)
is "$RUN_STATUS" 75 "silent link: sync exits 75" || diag "$RUN_STDERR"
ok "silent link: after io_timeout (5 s; took $((t1 - t0)) s)" test $((t1 - t0)) -ge 4 -a $((t1 - t0)) -le 15
ok "silent link: the gateway's session of it is still there, blocked" sessions_open
site_conf "$PORT"
run timeout -s KILL "$SYNC_LIMIT" "$MGATE" -c "$SITE_CONF" sync
is "$RUN_STATUS" 0 "a new sync while the old session still hangs at the gateway: exits 0" || diag "$RUN_STDERR"
like "$RUN_STDERR" 'resuming at byte [1-9][0-9]{4,}' "it resumed the bundle where the gateway's verified copy ended"
ok "the stale session ends after smtpd_timeout (${SMTPD_TIMEOUT}s)" wait_sessions $((SMTPD_TIMEOUT + 10))
diag "gateway: $(grep 'sync over SMTP with ship' "$T/gw.log" | tail -n 2 | tr '\n' ' ')"
MAP_CHECK "after a silent link"
run site sync
is "$RUN_STATUS" 0 "one more sync after the stale session ended: exits 0"
like "$RUN_STDOUT" 'up 0 messages' "and sends nothing again"
is "$(gw list --json | jq length)" 1 "the message is at the gateway once"
kill "$FREEZE" 2>/dev/null

# ---------------------------------------------------------------------------
# Verification by CA file instead of a pin; the gateway's log.

site_conf "$PORT" "password_file = $T/pw" "tls_ca_file = $T/gwcert.pem"
strip_from_line "$CORPUS/easy_ham/${EASY[0]}" | site queue -i ca-check@example.com 2>/dev/null
site pickup >/dev/null 2>&1
run site sync
is "$RUN_STATUS" 0 "tls_ca_file with the gateway's certificate (host 127.0.0.1, IP SAN): sync exits 0" ||
    diag "$RUN_STDERR"
like "$RUN_STDOUT" 'up 1 message' "and the message went up"

wait_sessions 20
stop_daemon
unlike "$(grep -iE 'assert|abort|segfault|sanitizer|double free' "$T/gw.log")" . "no crash in the gateway's log"
diag "gateway log: $(grep -c 'sync over SMTP with ship' "$T/gw.log") sync sessions ended, $(grep -c 'sync over SMTP with ship: received' "$T/gw.log") of them cleanly"

done_testing
