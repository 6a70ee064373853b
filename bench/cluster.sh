#!/usr/bin/env bash
# Reach through one replica vs through two (A -> B) in the same run: a throwaway PostgreSQL, two
# release replicas, alice exposing iperf3 and an echo on replica A, bob reaching them at A and at B.
# Needs root (PostgreSQL runs as the postgres user), iperf3 and PostgreSQL's server binaries.
#   cargo build --release && sudo bench/cluster.sh
set -euo pipefail
# The extra hop between replicas is what is measured: agents relay (the direct path would skip the
# hub altogether, whichever replica holds whom).
export PCONNECT_NO_DIRECT=1
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
D=$(mktemp -d /tmp/cbench.XXXX); chown postgres $D
free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
su postgres -c "$PGBIN/initdb -D $D/pg -A trust -U postgres -N >/dev/null"
PGPORT=$(free)
su postgres -c "$PGBIN/postgres -D $D/pg -p $PGPORT -k $D/pg -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" > $D/pg.log 2>&1 &
for i in $(seq 100); do $PGBIN/pg_isready -h 127.0.0.1 -p $PGPORT >/dev/null 2>&1 && break; sleep 0.1; done
psql -h 127.0.0.1 -p $PGPORT -U postgres -c "CREATE DATABASE pconnect" >/dev/null
URL="postgres://postgres@127.0.0.1:$PGPORT/pconnect"
for r in a b; do
  $BIN/pconnect-hub serve --data $D/$r --store $URL --listen 127.0.0.1:0 --http 127.0.0.1:0 --peer-listen 127.0.0.1:0 > $D/$r.out 2> $D/$r.err &
  for i in $(seq 100); do grep -q "Hub ready" $D/$r.out 2>/dev/null && break; sleep 0.1; done
done
FP=$(grep Fingerprint: $D/a.out | awk '{print $NF}')
A=$(grep Agents: $D/a.out | awk '{print $NF}'); B=$(grep Agents: $D/b.out | awk '{print $NF}')
IPORT=$(free); iperf3 -s -B 127.0.0.1 -p $IPORT -D --logfile $D/iperf.log
EPORT=$(free)
python3 - $EPORT <<'PY' &
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(65536)
        if not d: break
        c.sendall(d)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
login() { local who=$1 hub=$2; local tok=$($BIN/pconnect-hub member add $who --store $URL | tail -1); PCONNECT_HOME=$D/$who $BIN/connect login --hub $hub --token $tok --fingerprint $FP >/dev/null; }
login alice $A; login bob1 $A; login bob2 $B
PCONNECT_HOME=$D/alice $BIN/connect expose 127.0.0.1:$IPORT --name perf > $D/e1.out 2>&1 &
PCONNECT_HOME=$D/alice $BIN/connect expose 127.0.0.1:$EPORT --name echo > $D/e2.out 2>&1 &
sleep 2
for b in bob1 bob2; do
  P=$(free); E=$(free)
  PCONNECT_HOME=$D/$b $BIN/connect reach perf --port $P > $D/$b.perf 2>&1 &
  PCONNECT_HOME=$D/$b $BIN/connect reach echo --port $E > $D/$b.echo 2>&1 &
  eval "${b}_P=$P; ${b}_E=$E"
done
sleep 2
lat() {
python3 - $1 <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg = b"x" * 1024; t = []
for i in range(3000):
    a = time.perf_counter(); s.sendall(msg); got = 0
    while got < len(msg): got += len(s.recv(65536))
    if i >= 300: t.append(time.perf_counter() - a)
t.sort(); print("p50 %.0f us  p99 %.0f us" % (t[len(t)//2]*1e6, t[int(len(t)*0.99)]*1e6))
PY
}
conns() {
python3 - $1 <<'PY'
import socket, sys, time
end = time.time() + 3; n = 0
while time.time() < end:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.sendall(b"ping"); s.recv(16); s.close(); n += 1
print("%d conns/s (1 client)" % (n / 3))
PY
}
for round in 1 2; do
  for b in bob1 bob2; do
    P=$(eval echo \$${b}_P); E=$(eval echo \$${b}_E)
    label=$([ $b = bob1 ] && echo "one replica" || echo "two replicas (B -> A)")
    echo "== round $round, $label"
    iperf3 -c 127.0.0.1 -p $P -t 4 -l 128K 2>&1 | grep receiver | awk '{print $7, $8}'
    lat $E
    conns $E
  done
done
kill $(jobs -p) 2>/dev/null || true
pkill -f "pconnect-hub serve --data $D" || true
pkill -f "iperf3 -s -B 127.0.0.1 -p $IPORT" || true
su postgres -c "$PGBIN/pg_ctl -D $D/pg stop -m fast" >/dev/null 2>&1 || true
