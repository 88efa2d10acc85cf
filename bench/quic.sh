#!/usr/bin/env bash
# QUIC throughput: a UDP-heavy capture (QUIC connections of 100 datagrams, mostly 1,200-byte
# 1-RTT packets) against a TCP-only one with the same packet count (TCP connections of 100
# packets), analysed alternately N times with `--json /dev/null`; prints each run's wall
# time and peak RSS, then the medians and the QUIC/TCP ratio (the issue's target: within
# 20 %).
#
#   bash bench/quic.sh [CONNECTIONS=20000] [N=5]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-20000} N=${2:-5}
dir=bench-data/quic
mkdir -p "$dir"
cargo build --release --locked --workspace --bins -q
gen=target/release/gen_capture bin=target/release/racetrace
[ -f "$dir/quic-$CONNS.pcap" ] || "$gen" "$dir/quic-$CONNS.pcap" --quic "$CONNS"
[ -f "$dir/tcp-$CONNS.pcap" ] || "$gen" "$dir/tcp-$CONNS.pcap" --tcp-like-quic "$CONNS"
out=$(mktemp)
for i in $(seq "$N"); do
  for which in tcp quic; do
    /usr/bin/time -f "$which %e %M" "$bin" analyze "$dir/$which-$CONNS.pcap" --json /dev/null 2>&1 \
      | grep "^$which " | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import statistics, sys
runs = {"tcp": [], "quic": []}
for l in open(sys.argv[1]):
    w, t, m = l.split()
    runs[w].append((float(t), int(m)))
t = {w: statistics.median(x[0] for x in r) for w, r in runs.items()}
m = {w: max(x[1] for x in r) // 1024 for w, r in runs.items()}
print(f"tcp  median {t['tcp']:.2f} s, peak {m['tcp']} MiB")
print(f"quic median {t['quic']:.2f} s, peak {m['quic']} MiB")
print(f"quic/tcp {t['quic'] / t['tcp']:.3f}")
PY
rm -f "$out"
