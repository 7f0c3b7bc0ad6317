#!/usr/bin/env bash
# `mgate daemon' started as root gives up root: it binds the listener on a
# port below 1024 and reads a root-only TLS key, then runs as daemon_user
# (here nobody) for good.
#
#   - a spool owned by root: refused at start (EX_NOPERM) with the chown
#     to run; no such user, and root itself: EX_CONFIG
#   - the spool chowned to nobody: the daemon and its listener run with
#     every uid and gid of nobody; a privileged port answers; STARTTLS
#     works with the key file only root can read; inbound mail is stored
#     in the spool, and every file in the spool still belongs to nobody
#   - started as nobody with daemon_user = nobody: runs (--once)
set -uo pipefail
. "$(dirname "$0")/lib/testlib.sh"

need_root "starts the daemon as root and checks that it becomes nobody"
need_mgate
need_cmd openssl swaks setpriv jq
mgate_setup
id nobody >/dev/null 2>&1 || skip_all "no user nobody"
NOBODY_UID=$(id -u nobody)
NOBODY_GID=$(id -g nobody)
# nobody must reach the spool (and the binary) through $T.
chmod 0755 "$T"

openssl req -x509 -newkey ed25519 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" \
    -days 30 -subj /CN=gw.example.net \
    -addext "subjectAltName=DNS:gw.example.net,IP:127.0.0.1" 2>/dev/null ||
    BAIL_OUT "openssl req failed"
chmod 0600 "$T/key.pem"
"$MGATE" keygen "$T/gw.key" >/dev/null && "$MGATE" keygen "$T/site.key" >/dev/null ||
    BAIL_OUT "mgate keygen failed"

# A free privileged port: only root may bind it.
low_port() {
	local p
	for p in $(shuf -i 700-1000 -n 60); do
		"$PYTHON3" -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$p" 2>/dev/null && { echo "$p"; return 0; }
	done
	return 1
}

write_conf() { # PORT USER
	cat >"$T/gw.conf" <<EOF
role = gateway
spool_directory = $T/gw
myhostname = gw.example.net
mydomain = example.net
local_name = gw
log_destination = stderr
private_key = $T/gw.key
dns_resolver = 127.0.0.1:9
smtpd_listen = 127.0.0.1:$1
smtpd_tls_cert_file = $T/cert.pem
smtpd_tls_key_file = $T/key.pem
queue_run_interval = 2s
${2:+daemon_user = $2}

[peer ship]
transport = file
public_key = $T/site.key.pub
domains = ship.example.org
EOF
}
gw() { "$MGATE" -c "$T/gw.conf" "$@"; }
as_nobody() { setpriv --reuid nobody --regid nogroup --init-groups -- "$@"; }

PORT=$(low_port) || BAIL_OUT "no free port in 700-1000"
write_conf "$PORT" nobody
gw init >/dev/null || BAIL_OUT "mgate init failed"

# ---------------------------------------------------------------------------
# Refusals.

run timeout 20 "$MGATE" -c "$T/gw.conf" daemon
is "$RUN_STATUS" 77 "a spool owned by root, daemon_user nobody: EX_NOPERM"
like "$RUN_STDERR" "spool $T/gw is owned by uid 0, not by daemon_user nobody .*chown -R nobody $T/gw" \
    "the message names the owner, the user and the chown to run"

write_conf "$PORT" no-such-user-mgate
run timeout 20 "$MGATE" -c "$T/gw.conf" daemon
is "$RUN_STATUS" 78 "an unknown daemon_user: EX_CONFIG"
like "$RUN_STDERR" "daemon_user no-such-user-mgate: no such user" "the message names the user"

write_conf "$PORT" root
run timeout 20 "$MGATE" -c "$T/gw.conf" daemon
is "$RUN_STATUS" 78 "daemon_user root: EX_CONFIG"
like "$RUN_STDERR" "daemon_user root is root" "the message says why"

# ---------------------------------------------------------------------------
# The drop.

chown -R nobody:nogroup "$T/gw"
write_conf "$PORT" nobody
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
"$MGATE" -c "$T/gw.conf" daemon 2>"$T/daemon.log" &
DPID=$!
on_exit "kill $DPID 2>/dev/null || true"
wait_for 10 port_open "$PORT" || BAIL_OUT "the listener did not come up on $PORT: $(cat "$T/daemon.log")"

ids() { # PID: "uids / gids / groups" from /proc
	awk '/^Uid:/ {u = $2 " " $3 " " $4 " " $5}
	     /^Gid:/ {g = $2 " " $3 " " $4 " " $5}
	     /^Groups:/ {$1 = ""; gr = $0}
	     END {print u " /" " " g " /" gr}' "/proc/$1/status"
}
WANT="$NOBODY_UID $NOBODY_UID $NOBODY_UID $NOBODY_UID / $NOBODY_GID $NOBODY_GID $NOBODY_GID $NOBODY_GID / $(id -G nobody)"
is "$(ids "$DPID" | tr -s ' ')" "$(echo "$WANT" | tr -s ' ')" "the daemon runs as nobody: real, effective, saved and fs ids, and nobody's groups only"
KIDS=$(pgrep -P "$DPID")
ok "the listener runs in a child process" test -n "$KIDS"
allnobody=1
for k in $KIDS; do
	[ "$(ids "$k" | tr -s ' ')" = "$(echo "$WANT" | tr -s ' ')" ] || { allnobody=0; diag "pid $k: $(ids "$k")"; }
done
is "$allnobody" 1 "its children run as nobody too"
like "$(ss -ltnp "sport = :$PORT" 2>/dev/null)" "mgate" "port $PORT (below 1024) is the daemon's"

run swaks --server "127.0.0.1:$PORT" --tls --tls-verify --tls-ca-path "$T/cert.pem" \
    --ehlo client.example.com --from someone@example.com --to alice@ship.example.org \
    --header "Subject: privdrop" --body "after the drop"
is "$RUN_STATUS" 0 "STARTTLS with the root-only key, and inbound mail accepted (swaks)"
like "$RUN_STDOUT" "<~  250 2\.0\.0 .*queued" "250 after DATA"
J=$(as_nobody "$MGATE" -c "$T/gw.conf" list --json 2>/dev/null)
is "$(printf '%s' "$J" | jq -r '[.[] | .recipients[].address] | join(",")')" "alice@ship.example.org" \
    "the message is in the gateway's spool"
is "$(find "$T/gw" ! -user nobody | head -n 5)" "" "every file in the spool belongs to nobody"

kill -TERM "$DPID"
for _ in $(seq 100); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
ok "SIGTERM stops it" bash -c "! kill -0 $DPID 2>/dev/null"
wait "$DPID"
is "$?" 0 "exit status 0"
unlike "$(cat "$T/daemon.log")" "running as root" "no warning about root"

# ---------------------------------------------------------------------------
# Started as the user itself, no listener: no switch needed.

sed -i '/^smtpd_/d' "$T/gw.conf"
run as_nobody timeout 30 "$MGATE" -c "$T/gw.conf" daemon --once
is "$RUN_STATUS" 0 "started as nobody with daemon_user = nobody: runs" || diag "$RUN_STDERR"

# Without daemon_user, a daemon started as root says so.
sed -i '/^daemon_user/d' "$T/gw.conf"
cp -a "$T/gw" "$T/gw-root" && chown -R root:root "$T/gw-root"
sed -i "s|^spool_directory = .*|spool_directory = $T/gw-root|" "$T/gw.conf"
run timeout 30 "$MGATE" -c "$T/gw.conf" daemon --once
is "$RUN_STATUS" 0 "without daemon_user a root daemon runs"
like "$RUN_STDERR" "running as root: set daemon_user" "and warns that it runs as root"

done_testing
