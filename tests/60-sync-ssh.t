#!/usr/bin/env bash
# `mgate sync' over SSH against a real OpenSSH sshd on loopback
# (tests/lib/sshd-setup.sh): the site logs in with its Ed25519 key, whose
# authorized_keys line forces `mgate serve --peer ship' at the gateway.
#
#   (a) the first 300 messages of the corpus easy_ham (sorted by name,
#       mbox From line stripped), one sync: exit 0; every message at the
#       gateway exactly once (mapped by peer_id) and byte-identical to the
#       site's `mgate cat'; every site recipient "accepted"; a second sync
#       moves nothing and changes nothing on either side;
#   (b) the summary line says "up 300 messages";
#   (c) refusals: changed host key, unknown host (empty known_hosts, an
#       entry for 127.0.0.1 without the port, an entry for another port),
#       wrong user key; each exits 75 with a clear message, nothing
#       arrives at the gateway, sshd accepted no login (host-key cases),
#       the mail stays queued.  A different command through the forced-
#       command key (OpenSSH's client, strict host-key checking) gets
#       the sync protocol's hello or an error from mgate serve, never
#       the output of the command asked for;
#   (d) a sync while another holds the peer's lock: 75, "another sync";
#       with --wait it waits for the lock and then moves the mail;
#   (e) nothing listening on the gateway's port: 75, quickly, "cannot
#       connect".
#
# Environment: MGATE_SYNC_NMSG (messages in (a), default 300).
set -uo pipefail
. "$(dirname "$0")/lib/testlib.sh"
. "$(dirname "$0")/lib/sshd-setup.sh"

need_root "starts an OpenSSH sshd with its own host key and authorized_keys"
need_mgate
need_cmd jq cmp ssh ssh-keygen flock
CORPUS=$(corpus_dir) || skip_all "no corpus"
NMSG=${MGATE_SYNC_NMSG:-300}

sshd_gateway_setup

# ---------------------------------------------------------------------------
# Helpers.

site() { "$MGATE" -c "$SITE_CONF" "$@"; }
gw() { "$MGATE" -c "$GW_CONF" "$@"; }
sj() { sync_list_json "$SITE_CONF"; }	# `list --json', checked
gj() { sync_list_json "$GW_CONF"; }

gw_map() { sync_gw_map; }
site_states() { sync_site_states; }
gw_count() { gj | jq length; }
accepted_logins() { grep -c 'Accepted publickey' "$T/sshd.log" || true; }

# queue_corpus FILE... : queue each (From line stripped) to a recipient.
queue_file() { # FILE RCPT
	strip_from_line "$1" | site queue -i "$2" 2>/dev/null
}

# State of the recipients of site message QID (space separated).
site_state_of() { # QID
	sj | jq -r --arg q "$1" \
	    '.[] | select(.id == $q) | [.recipients[].state] | join(" ")'
}

# ---------------------------------------------------------------------------
# (a) 300 corpus messages, one sync.

mapfile -t FILES < <(cd "$CORPUS/easy_ham" && ls | LC_ALL=C sort | head -n "$NMSG")
nq=0
for f in "${FILES[@]}"; do
	queue_file "$CORPUS/easy_ham/$f" "rcpt$nq@example.com" && nq=$((nq + 1))
done
is "$nq" "$NMSG" "queued the first $NMSG easy_ham messages at the site"
# pickup_after_queue = no: sync picks them up itself.
site pickup >/dev/null 2>&1
mapfile -t SITE_IDS < <(sj | jq -r '.[].id' | LC_ALL=C sort)
is "${#SITE_IDS[@]}" "$NMSG" "the site lists $NMSG messages"

t0=$(date +%s%N)
run site sync
t1=$(date +%s%N)
is "$RUN_STATUS" 0 "sync exits 0" || diag "$RUN_STDERR"
diag "sync of $NMSG messages: $(( (t1 - t0) / 1000000 )) ms"
SUMMARY=$RUN_STDOUT
diag "summary: $SUMMARY"

# (b) the summary line.
like "$SUMMARY" "^sync gw: up $NMSG messages in [0-9]+ bundles? \([0-9]+ bytes" \
    "(b) the summary line says up $NMSG messages"
like "$SUMMARY" "wire [0-9]+ out, [0-9]+ in" "(b) the summary line gives wire bytes"
is "$(printf '%s\n' "$SUMMARY" | wc -l)" 1 "(b) one summary line on stdout"

MAP=$(gw_map)
is "$(printf '%s\n' "$MAP" | grep -c .)" "$NMSG" "the gateway holds $NMSG messages"
is "$(printf '%s\n' "$MAP" | awk '{print $1}' | uniq -d | grep -c .)" 0 \
    "no site message appears twice at the gateway (by peer_id)"
is "$(printf '%s\n' "$MAP" | awk '{print $1}')" "$(printf '%s\n' "${SITE_IDS[@]}")" \
    "the gateway's peer_ids are exactly the site's queue IDs"
is "$(gj | jq -r '[.[].peer] | unique | join(",")')" ship \
    "every message at the gateway came from peer ship"

# Byte-identical: the gateway's copy against the site's `cat'.
DIFFS=$(sync_compare_all 4)
is "$(printf '%s' "$DIFFS" | grep -c .)" 0 "every message at the gateway is byte-identical to the site's cat" ||
    diag "$(printf '%s\n' "$DIFFS" | head -n 5)"

# And the content is the corpus file (the site adds its own headers on
# top: the original must be the tail of what cat prints).
f0=$(strip_from_line "$CORPUS/easy_ham/${FILES[0]}" | tail -c 2000 | md5sum)
any=0
for id in "${SITE_IDS[@]}"; do
	if [ "$(site cat "$id" | tail -c 2000 | md5sum)" = "$f0" ]; then any=1; break; fi
done
is "$any" 1 "the first corpus message's text is at the site and went up intact"

STATES=$(site_states)
is "$(printf '%s\n' "$STATES" | awk '$2 != "accepted"' | grep -c .)" 0 \
    "every site recipient is accepted"
is "$(printf '%s\n' "$STATES" | grep -c ' accepted$')" "$NMSG" \
    "$NMSG recipients accepted"
is "$(ls "$T/site/outgoing" | grep -c .)" 0 "no bundle file left in the site's outgoing/"
is "$(ls "$T/gw/incoming" | grep -c .)" 0 "no partial bundle left in the gateway's incoming/"

# A second sync moves nothing and changes nothing.
gj >"$T/gw.before"
sj >"$T/site.before"
run site sync
is "$RUN_STATUS" 0 "a second sync exits 0"
like "$RUN_STDOUT" "^sync gw: up 0 messages in 0 bundles \(0 bytes" \
    "the second sync moves nothing up"
like "$RUN_STDOUT" "down 0 messages and 0 status records" \
    "the second sync moves nothing down"
gj >"$T/gw.after"
sj >"$T/site.after"
ok "the gateway's queue is unchanged by the second sync" cmp "$T/gw.before" "$T/gw.after"
ok "the site's queue is unchanged by the second sync" cmp "$T/site.before" "$T/site.after"

# ---------------------------------------------------------------------------
# (c) Refusals.  One fresh message waits at the site through all of them.

queue_file "$CORPUS/easy_ham/${FILES[1]}" refusal@example.com
site pickup >/dev/null 2>&1
RID=$(sj | jq -r '.[] | select(.recipients[0].address == "refusal@example.com") | .id')
like "$RID" '^[0-9A-Z]{16}$' "a message queued for the refusal tests"
cp "$T/known_hosts" "$T/known_hosts.good"

# refused NAME EXIT REGEX LOGIN(yes|no): run sync, check it.
refused() {
	local name=$1 want=$2 re=$3 login=$4 before_n before_l t0 t1
	before_n=$(gw_count)
	before_l=$(accepted_logins)
	t0=$(date +%s)
	run site sync
	t1=$(date +%s)
	is "$RUN_STATUS" "$want" "$name: sync exits $want" || diag "$RUN_STDERR"
	like "$RUN_STDERR" "$re" "$name: the message says so"
	like "$RUN_STDERR" "mail stays queued" "$name: the message says the mail stays queued"
	is "$(gw_count)" "$before_n" "$name: nothing arrived at the gateway"
	is "$(site_state_of "$RID")" queued "$name: the mail stays queued at the site"
	is "$(ls "$T/site/outgoing" | grep -c .)" 0 "$name: nothing was packed"
	if [ "$login" = no ]; then
		is "$(accepted_logins)" "$before_l" "$name: sshd saw no login"
	fi
	[ $((t1 - t0)) -lt 8 ] || fail "$name: took $((t1 - t0)) s"
	diag "$name: $(printf '%s\n' "$RUN_STDERR" | grep -v '^mgate/sync: [0-9A-Z]\{16\}: from=' | head -n 2)"
}

# Changed host key: known_hosts holds another Ed25519 key for the host.
ssh-keygen -q -t ed25519 -N '' -f "$T/other_host"
printf '[127.0.0.1]:%s %s\n' "$SSHD_PORT" "$(cut -d' ' -f1,2 "$T/other_host.pub")" >"$T/known_hosts"
refused "changed host key" 75 "HOST KEY CHANGED" no
like "$RUN_STDERR" "SHA256:[A-Za-z0-9+/]{43}" "changed host key: the offered fingerprint is shown"
hostfp=$(ssh-keygen -l -E sha256 -f "$T/host_ed25519.pub" | awk '{print $2}')
like "$RUN_STDERR" "${hostfp//+/\\+}" "changed host key: it is the gateway's real key's fingerprint"

# The right key but also a changed one of another type: still refused?
# (Only an exact match proceeds.)  An ECDSA line alone for the host:
ssh-keygen -q -t ecdsa -b 256 -N '' -f "$T/other_ecdsa"
printf '[127.0.0.1]:%s %s\n' "$SSHD_PORT" "$(cut -d' ' -f1,2 "$T/other_ecdsa.pub")" >"$T/known_hosts"
refused "known_hosts with only an ECDSA key the server does not have" 75 \
    "[Hh]andshake failed|HOST KEY|unknown host|no host key" no

# Unknown host: empty known_hosts.
: >"$T/known_hosts"
refused "unknown host (empty known_hosts)" 75 "unknown host|no host key for \[127\.0\.0\.1\]:$SSHD_PORT" no
like "$RUN_STDERR" "ssh-keyscan -p $SSHD_PORT" "unknown host: says how to trust the key"

# Strictness: an entry for 127.0.0.1 without the port is for port 22.
printf '127.0.0.1 %s\n' "$(cut -d' ' -f1,2 "$T/host_ed25519.pub")" >"$T/known_hosts"
refused "unknown host (only a 127.0.0.1 entry, no port)" 75 "unknown host|no host key for \[127\.0\.0\.1\]:$SSHD_PORT" no

# An entry for the right key on another port.
printf '[127.0.0.1]:%s %s\n' "$((SSHD_PORT == 65535 ? 1 : SSHD_PORT + 1))" \
    "$(cut -d' ' -f1,2 "$T/host_ed25519.pub")" >"$T/known_hosts"
refused "unknown host (the key, but for another port)" 75 "unknown host|no host key for \[127\.0\.0\.1\]:$SSHD_PORT" no

# A wildcard pattern is not an exact entry either.
printf '[127.0.0.*]:%s %s\n' "$SSHD_PORT" "$(cut -d' ' -f1,2 "$T/host_ed25519.pub")" >"$T/known_hosts"
refused "unknown host (a wildcard pattern)" 75 "unknown host|no host key" no

cp "$T/known_hosts.good" "$T/known_hosts"

# Wrong user key: an identity that is not in authorized_keys.
ssh-keygen -q -t ed25519 -N '' -f "$T/stranger_ed25519"
cp "$SITE_CONF" "$T/site.conf.good"
sed -i "s|^identity_file = .*|identity_file = $T/stranger_ed25519|" "$SITE_CONF"
refused "wrong user key" 75 "refused" no
like "$RUN_STDERR" "login as root with $T/stranger_ed25519 refused" "wrong user key: names the user and the key"
cp "$T/site.conf.good" "$SITE_CONF"

# A different command through the forced-command key, with OpenSSH's
# own client and strict host-key checking.
SSH=(ssh -F /dev/null -i "$T/id_ed25519" -p "$SSHD_PORT"
    -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes
    -o UserKnownHostsFile="$T/known_hosts" -o GlobalKnownHostsFile=/dev/null
    -o ConnectTimeout=5 root@127.0.0.1)
PASSWD_LINE=$(head -n 1 /etc/passwd)

before_n=$(gw_count)
rc=0
timeout 20 "${SSH[@]}" 'cat /etc/passwd' </dev/null >"$T/cmd.out" 2>"$T/cmd.err" || rc=$?
is "$rc" 75 "another command via the key: mgate serve ran instead and exited 75"
is "$(grep -cF -- "$PASSWD_LINE" "$T/cmd.out" "$T/cmd.err" | awk -F: '{s += $2} END {print s}')" 0 \
    "another command via the key: no /etc/passwd content came back"
is "$(stat -c %s "$T/cmd.out")" 0 "another command via the key: nothing on stdout (serve waits for the client's hello)"
like "$(cat "$T/cmd.err")" "mgate/serve: .*(hello|end of stream)" \
    "another command via the key: an error from mgate serve on stderr"
diag "serve said: $(head -c 300 "$T/cmd.err")"

# The same with a hello frame on stdin: serve answers with its own hello.
printf 'H\x00\x00\x00\x16v\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x01n\x00\x00\x00\x04ship' >"$T/hello"
rc=0
timeout 20 "${SSH[@]}" 'cat /etc/passwd' <"$T/hello" >"$T/cmd.out" 2>"$T/cmd.err" || rc=$?
# Its hello: 'v' (8 bytes) and 'n' "gw": 13 + 7 = 20 (0x14) bytes.
is "$(head -c 5 "$T/cmd.out" | od -An -tx1 | tr -d ' \n')" "4800000014" \
    "another command via the key, speaking sync: the reply is a hello frame"
is "$(tail -c +6 "$T/cmd.out" | head -c 13 | od -An -tx1 | tr -d ' \n')" \
    "76000000080000000000000001" "the hello frame carries sync version 1"
is "$(grep -cF -- "$PASSWD_LINE" "$T/cmd.out" "$T/cmd.err" | awk -F: '{s += $2} END {print s}')" 0 \
    "another command, speaking sync: no /etc/passwd content"

# A subsystem request (sftp, configured in sshd_config) does not get
# around the forced command either.
rc=0
timeout 20 "${SSH[@]/root@127.0.0.1/-s}" root@127.0.0.1 sftp </dev/null >"$T/cmd.out" 2>"$T/cmd.err" || rc=$?
is "$rc" 75 "an sftp subsystem request runs mgate serve instead"
is "$(grep -cF -- "$PASSWD_LINE" "$T/cmd.out" | awk '{s += $1} END {print s}')" 0 "sftp: no file content"
is "$(gw_count)" "$before_n" "other commands through the key: nothing arrived at the gateway"
is "$(site_state_of "$RID")" queued "other commands through the key: the site's mail stays queued"

# And the refused mail goes through once the key is right again.
run site sync
is "$RUN_STATUS" 0 "after the refusals a sync exits 0"
like "$RUN_STDOUT" "up 1 message in 1 bundle" "it moves the one waiting message"
is "$(site_state_of "$RID")" accepted "the refusal test's message is accepted"
is "$(gw_map | awk -v r="$RID" '$1 == r' | grep -c .)" 1 "it is at the gateway once"

# ---------------------------------------------------------------------------
# (d) The per-peer sync lock.

queue_file "$CORPUS/easy_ham/${FILES[2]}" lock@example.com
site pickup >/dev/null 2>&1
LID=$(sj | jq -r '.[] | select(.recipients[0].address == "lock@example.com") | .id')
LOCK=$T/site/sync-gw.lock
ok "the lock file is there after a sync" test -f "$LOCK"
flock -x "$LOCK" sleep 3 &
HOLDER=$!
on_exit "kill $HOLDER 2>/dev/null || true"
wait_for 5 bash -c "! flock -n -x $(printf %q "$LOCK") true" || diag "the lock holder did not take the lock"
run site sync
is "$RUN_STATUS" 75 "(d) sync while another holds the lock: exit 75"
like "$RUN_STDERR" "another sync with gw is running" "(d) it says another sync is running"
like "$RUN_STDERR" "--wait" "(d) and mentions --wait"
is "$(site_state_of "$LID")" queued "(d) the mail stays queued"
t0=$(date +%s%N)
run site sync --wait
t1=$(date +%s%N)
is "$RUN_STATUS" 0 "(d) sync --wait exits 0"
waited=$(( (t1 - t0) / 1000000 ))
diag "sync --wait took $waited ms (the lock was held for 3 s)"
[ "$waited" -ge 1500 ] && pass "(d) sync --wait waited for the lock" || fail "(d) sync --wait waited for the lock ($waited ms)"
like "$RUN_STDOUT" "up 1 message" "(d) then moved the mail"
is "$(site_state_of "$LID")" accepted "(d) the message is accepted"
wait "$HOLDER" 2>/dev/null

# A real sync holding the lock: one stuck connecting to a silent server.
SILENT_PORT=$(free_port)
"$PYTHON3" -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(5)
c = []
while True:
    c.append(s.accept()[0])
' "$SILENT_PORT" &
SILENT=$!
on_exit "kill $SILENT 2>/dev/null || true"
wait_for 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$SILENT_PORT"
cp "$SITE_CONF" "$T/site.conf.silent"
sed -i "s|^port = .*|port = $SILENT_PORT|" "$T/site.conf.silent"
printf '[127.0.0.1]:%s %s\n' "$SILENT_PORT" "$(cut -d' ' -f1,2 "$T/host_ed25519.pub")" >>"$T/known_hosts"
"$MGATE" -c "$T/site.conf.silent" sync >"$T/silent.out" 2>"$T/silent.err" &
STUCK=$!
sleep 1
run site sync
is "$RUN_STATUS" 75 "(d) sync while a real sync is stuck connecting: exit 75"
like "$RUN_STDERR" "another sync" "(d) it says another sync is running"
rc=0
wait "$STUCK" || rc=$?
is "$rc" 75 "(d) the stuck sync gives up with 75 (connect_timeout)"
like "$(cat "$T/silent.err")" "[Hh]andshake|timed? ?out|Timeout" "(d) and says why"
diag "stuck sync: $(head -c 300 "$T/silent.err")"
kill "$SILENT" 2>/dev/null
cp "$T/known_hosts.good" "$T/known_hosts"

# ---------------------------------------------------------------------------
# (e) Nothing listening.

queue_file "$CORPUS/easy_ham/${FILES[3]}" unreach@example.com
site pickup >/dev/null 2>&1
UID_=$(sj | jq -r '.[] | select(.recipients[0].address == "unreach@example.com") | .id')
DEAD_PORT=$(free_port)
cp "$SITE_CONF" "$T/site.conf.good"
sshd_site_port "$DEAD_PORT"
before_n=$(gw_count)
t0=$(date +%s%N)
run site sync
t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
is "$RUN_STATUS" 75 "(e) gateway unreachable: exit 75"
like "$RUN_STDERR" "cannot connect to 127\.0\.0\.1 port $DEAD_PORT" "(e) it says it cannot connect, and where"
like "$RUN_STDERR" "mail stays queued" "(e) and that the mail stays queued"
[ "$ms" -lt 3000 ] && pass "(e) it fails quickly ($ms ms)" || fail "(e) it fails quickly ($ms ms)"
is "$(site_state_of "$UID_")" queued "(e) the mail stays queued"
is "$(gw_count)" "$before_n" "(e) nothing arrived"
cp "$T/site.conf.good" "$SITE_CONF"
cp "$T/known_hosts.good" "$T/known_hosts"
run site sync
is "$RUN_STATUS" 0 "(e) with the gateway back, sync exits 0"
is "$(site_state_of "$UID_")" accepted "(e) and the message is accepted"

# Final invariants over everything this script sent.
MAP=$(gw_map)
is "$(printf '%s\n' "$MAP" | awk '{print $1}' | uniq -d | grep -c .)" 0 "in the end no message is twice at the gateway"
is "$(printf '%s\n' "$MAP" | grep -c .)" "$((NMSG + 3))" "in the end the gateway holds every message sent"
is "$(site_states | awk '$2 != "accepted"' | grep -c .)" 0 "in the end every site recipient is accepted"

is "$(sync_json_errors)" 0 "mgate list --json always printed JSON (see $T/json-error.*)"

done_testing
