#!/usr/bin/env bash
# GET /peers throughput with 1,000 registered peers, per server binary:
# wrk (HTTP/1.1) plain, with Accept-Encoding: gzip and revalidating with
# If-None-Match, and h2load (HTTP/2); with the server's CPU time per 1,000
# requests (from /proc/PID/stat), which a shared machine disturbs less than
# requests per second.
#
#   benches/peers_load.sh /work/baseline-bin/signaling-server target/release/signaling-server
#
# Needs wrk, h2load (Debian: apt-get install wrk nghttp2-client), curl and
# python3. Each server listens on 127.0.0.1 only; every run is bounded by
# DURATION (default 10s).
set -euo pipefail
PEERS=${PEERS:-1000}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
for tool in wrk h2load curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
# utime + stime of a process, in clock ticks (100 per second on Linux).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
for bin in "$@"; do
  log=$(mktemp)
  "$bin" --listen 127.0.0.1:0 --udp-listen off 2>"$log" &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  addr=""
  for _ in $(seq 1 100); do
    addr=$(grep -o 'local_addr=[0-9.:]*' "$log" | head -1 | cut -d= -f2 || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "$bin did not start" >&2; exit 1; }
  python3 - "$addr" "$PEERS" <<'PY'
import sys, uuid, requests
addr, n = sys.argv[1], int(sys.argv[2])
s = requests.Session()
for i in range(n):
    r = s.post(f"http://{addr}/register",
               json={"peer_id": str(uuid.uuid4()), "username": f"peer{i}", "port": 1024 + i})
    r.raise_for_status()
PY
  size=$(curl -s "http://$addr/peers" | wc -c)
  gz=$(curl -s -H 'Accept-Encoding: gzip' "http://$addr/peers" | wc -c)
  echo "== $bin: $PEERS peers, /peers body $size bytes ($gz with gzip if served)"
  etag=$(curl -si "http://$addr/peers" | grep -i '^etag:' | cut -d' ' -f2 | tr -d '\r' || true)
  run_wrk() { # label, extra wrk args...
    local label=$1; shift
    local before after out reqs
    before=$(cpu_ticks "$pid")
    out=$(wrk -t2 -c"$CONNS" -d"$DURATION" "$@" "http://$addr/peers")
    after=$(cpu_ticks "$pid")
    reqs=$(echo "$out" | grep -oE '^ *[0-9]+ requests' | grep -oE '[0-9]+')
    echo "-- wrk -t2 -c$CONNS -d$DURATION $label"
    echo "$out" | grep -E 'Requests/sec|Transfer/sec|Latency|Non-2xx'
    echo "   server CPU: $(( (after - before) * 10 * 1000 / (reqs > 0 ? reqs : 1) )) ms per 1000 requests"
  }
  run_wrk "(plain)"
  run_wrk "(Accept-Encoding: gzip)" -H 'Accept-Encoding: gzip'
  [ -n "$etag" ] && run_wrk "(If-None-Match: $etag)" -H "If-None-Match: $etag"
  echo "-- h2load -t2 -c$CONNS -m10 -D${DURATION%s} http://$addr/peers"
  h2load -t2 -c"$CONNS" -m10 -D"${DURATION%s}" "http://$addr/peers" | grep -E 'finished in|requests:|status codes'
  kill $pid; wait $pid 2>/dev/null || true
  trap - EXIT
  rm -f "$log"
done
