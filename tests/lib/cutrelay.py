#!/usr/bin/python3
"""cutrelay.py - a TCP relay that cuts connections, for tests/61-sync-cuts.t.

    cutrelay.py --target PORT --port-file FILE --plan FILE --log FILE
                [--seed N] [--rate BYTES-PER-SECOND]
    cutrelay.py count LOG -- COMMAND [ARGS...]

Listens on a free port on 127.0.0.1 (written to --port-file once it
listens) and forwards every connection to 127.0.0.1:TARGET.  How a
connection is cut is decided when it is accepted:

  * if the --plan file exists and holds a line, that line (and the file
    is removed, so that one plan serves one connection);
  * otherwise from a random generator seeded with --seed (a random byte
    count below 200000 in a random direction).

Plan lines:
  none            forward everything, never cut
  c2s N           forward exactly N bytes client->server, then cut
  s2c N           forward exactly N bytes server->client, then cut
  ack MIN IDLE    once at least MIN bytes went client->server and the
                  client then sent nothing for IDLE ms (it waits for an
                  answer: after END and FIN, before the ACK), cut at the
                  next bytes from the server, without forwarding them

A cut closes both sockets with SO_LINGER 0: each end gets a TCP reset,
as on a link that drops.  Bytes the relay read beyond the cut point are
thrown away.

One log line per connection, when it ends:
  conn=K plan="..." c2s=BYTES s2c=BYTES cut=0|1 secs=S
c2s and s2c count bytes forwarded (delivered to the other end).

`count' mode runs COMMAND with its standard input fed through this
process, which counts the bytes, and appends one line to LOG when
COMMAND ends:
  pid=PID in=BYTES status=EXIT-STATUS|signal=NAME
Standard output and error are COMMAND's own (inherited).  Put in front
of `mgate serve' in the forced command, it tells how many bytes sshd
actually delivered to mgate (sshd drops what it buffered when the
connection is reset), and how serve ended.  If the --limit-file exists
when the session starts and holds a number N, only the first N bytes
reach COMMAND, then its input ends: a cut at an exact byte as COMMAND
sees it (the log line then says "limit=N").
"""

import argparse
import fcntl
import os
import random
import select
import socket
import struct
import sys
import threading
import time

LINGER0 = struct.pack("ii", 1, 0)
PIECE = 4096	# bytes per read when the rate is limited
TIOCOUTQ = 0x5411	# Linux: bytes in the send queue, not yet acked


def drain(sock, limit=0.5):
    """Wait until what we forwarded reached the peer's kernel (acked), so
    that the byte counts are bytes delivered, not bytes a reset threw away
    from our own send queue."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            n = struct.unpack("i", fcntl.ioctl(sock.fileno(), TIOCOUTQ,
                                               b"\0\0\0\0"))[0]
        except OSError:
            return
        if n == 0:
            return
        time.sleep(0.001)


def reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def sendall(sock, data):
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def relay(conn_id, client, target_port, plan, log, log_lock, rate):
    t0 = time.monotonic()
    sent_at = t0	# the link is busy until then (rate limit)
    words = plan.split()
    mode = words[0] if words else "none"
    try:
        server = socket.create_connection(("127.0.0.1", target_port), timeout=10)
        server.settimeout(None)
    except OSError:
        reset(client)
        with log_lock:
            log.write('conn=%d plan="%s" c2s=0 s2c=0 cut=1 secs=0 '
                      'error=connect\n' % (conn_id, plan))
            log.flush()
        return
    for s in (client, server):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    limit = {"c2s": None, "s2c": None}
    if mode in ("c2s", "s2c"):
        limit[mode] = int(words[1])
    ack_min = int(words[1]) if mode == "ack" else 0
    ack_idle = int(words[2]) / 1000.0 if mode == "ack" else 0
    count = {"c2s": 0, "s2c": 0}
    last_c2s = time.monotonic()
    open_dirs = {"c2s": True, "s2c": True}
    cut = False

    # A zero limit cuts before anything moves.
    for d in ("c2s", "s2c"):
        if limit[d] == 0:
            cut = True
    while not cut and (open_dirs["c2s"] or open_dirs["s2c"]):
        rl = []
        if open_dirs["c2s"]:
            rl.append(client)
        if open_dirs["s2c"]:
            rl.append(server)
        try:
            r, _, _ = select.select(rl, [], [], 0.005)
        except (OSError, ValueError):
            break
        for s in r:
            d = "c2s" if s is client else "s2c"
            dst = server if s is client else client
            try:
                data = s.recv(PIECE if rate else 65536)
            except OSError:
                data = b""
                cut = True	# a reset from one end: pass it on
            if not data:
                open_dirs[d] = False
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                continue
            if d == "s2c" and mode == "ack" and count["c2s"] >= ack_min \
                    and time.monotonic() - last_c2s >= ack_idle:
                cut = True
                break
            if limit[d] is not None and count[d] + len(data) >= limit[d]:
                data = data[:limit[d] - count[d]]
                cut = True
            if data and rate:
                # A link of `rate' bytes/s: this piece leaves when the
                # previous ones have.
                sent_at = max(sent_at, time.monotonic()) + len(data) / rate
                wait = sent_at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            if data:
                if not sendall(dst, data):
                    cut = True
                count[d] += len(data)
            if d == "c2s":
                last_c2s = time.monotonic()
            if cut:
                break
    if cut:
        drain(server)
        drain(client)
        reset(client)
        reset(server)
    else:
        client.close()
        server.close()
    with log_lock:
        log.write('conn=%d plan="%s" c2s=%d s2c=%d cut=%d secs=%.3f\n' %
                  (conn_id, plan, count["c2s"], count["s2c"], int(cut),
                   time.monotonic() - t0))
        log.flush()


def count_main(argv):
    import signal
    import subprocess
    limit = None
    if len(argv) >= 3 and argv[1] == "--limit-file":
        try:
            with open(argv[2]) as f:
                limit = int(f.read().strip())
        except (FileNotFoundError, ValueError):
            pass
        argv = argv[:1] + argv[3:]
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: cutrelay.py count LOG [--limit-file FILE] -- "
                 "COMMAND [ARGS...]")
    logf, cmd = argv[0], argv[2:]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE)  # SIGPIPE restored
    n = 0
    while limit is None or n < limit:
        try:
            data = os.read(0, 65536)
        except OSError:
            break
        if not data:
            break
        if limit is not None and n + len(data) > limit:
            data = data[:limit - n]
        try:
            p.stdin.write(data)
            p.stdin.flush()
        except (BrokenPipeError, OSError):
            break
        n += len(data)
    try:
        p.stdin.close()
    except OSError:
        pass
    rc = p.wait()
    how = ("status=%d" % rc if rc >= 0 else
           "signal=%s" % signal.Signals(-rc).name)
    with open(logf, "a") as f:
        f.write("pid=%d in=%d %s%s\n" % (p.pid, n, how, "" if limit is None
                                           else " limit=%d" % limit))
    return rc if rc >= 0 else 128 - rc


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "count":
        return count_main(sys.argv[2:])
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", type=int, required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--plan")
    ap.add_argument("--log", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=int, default=0,
                    help="bytes per second in each direction (0: no limit)")
    a = ap.parse_args()

    rng = random.Random(a.seed)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % ls.getsockname()[1])
    os.rename(tmp, a.port_file)
    log = open(a.log, "a")
    log_lock = threading.Lock()
    conn_id = 0
    while True:
        client, _ = ls.accept()
        conn_id += 1
        plan = ""
        if a.plan:
            try:
                with open(a.plan) as f:
                    plan = f.readline().strip()
                os.unlink(a.plan)
            except FileNotFoundError:
                plan = ""
        if not plan:
            plan = "%s %d" % (rng.choice(["c2s", "s2c"]),
                              rng.randrange(200000))
        threading.Thread(target=relay, daemon=True,
                         args=(conn_id, client, a.target, plan, log,
                               log_lock, a.rate)).start()


if __name__ == "__main__":
    sys.exit(main())
