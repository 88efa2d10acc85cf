#!/usr/bin/env bash
# Findings cost: a busy capture dense in findings (races, stale reuses) against one of the same
# generator and packet count with races and stale reuses turned off. Prints each one's packets,
# findings, best-of-3 `analyze --json /dev/null` time, the time per packet and their ratio, the
# detectors' times (`--stats`), and the warning lines on standard error.
#
#   bash bench/findings.sh [BYTES] [PROFILE]     (defaults: 600000000 and release)
#
# Data lands in bench-data/findings/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
BYTES=${1:-600000000}
PROFILE=${2:-release}
if [ "$PROFILE" = release ]; then
  cargo build --release --locked --workspace --bins
  BIN=${CARGO_TARGET_DIR:-target}/release
else
  cargo build --locked --workspace --bins
  BIN=${CARGO_TARGET_DIR:-target}/debug
fi
DIR=bench-data/findings
mkdir -p "$DIR"
# Small responses: many fetches (and so many findings) per byte.
SHAPE=(--response 600 --segment 600 --rate 200 --seed 41)
[ -s "$DIR/dense.pcap" ] || "$BIN/gen_capture" "$DIR/dense.pcap" --busy --bytes "$BYTES" "${SHAPE[@]}"
packets=$(python3 -c "
import struct,sys
f=open('$DIR/dense.pcap','rb'); f.read(24); n=0
while True:
    h=f.read(16)
    if len(h)<16: break
    f.seek(struct.unpack('<I',h[8:12])[0],1); n+=1
print(n)")
[ -s "$DIR/quiet.pcap" ] || "$BIN/gen_capture" "$DIR/quiet.pcap" --busy --packets "$packets" --no-races --no-stale "${SHAPE[@]}"

best() { # best of 3 wall-clock seconds
  local b=999999
  for _ in 1 2 3; do
    local s e
    s=$(date +%s.%N); "$@" > /dev/null 2>&1; e=$(date +%s.%N)
    b=$(echo "$e - $s" | bc -l | awk -v b="$b" '{print ($1 < b) ? $1 : b}')
  done
  echo "$b"
}

declare -A per
for kind in dense quiet; do
  f="$DIR/$kind.pcap"
  cat "$f" > /dev/null
  secs=$(best "$BIN/racetrace" analyze "$f" --json /dev/null)
  "$BIN/racetrace" analyze "$f" --json "$DIR/$kind.json" --stats 2> "$DIR/$kind.stderr" > /dev/null
  n=$(grep -o '[0-9]* packets' "$DIR/$kind.stderr" | head -1 | cut -d' ' -f1)
  warn=$(grep -c 'warning' "$DIR/$kind.stderr" || true)
  counts=$(python3 -c "import json;s=json.load(open('$DIR/$kind.json'))['summary'];print(s['connections'],s['races'],s['stale_reuses'],s['backends'])")
  per[$kind]=$(echo "$secs / $n * 1000000000" | bc -l)
  echo "$kind: $n packets; connections races stale backends: $counts; analyze ${secs} s (best of 3), $(printf '%.0f' "${per[$kind]}") ns/packet; $warn warning lines"
  grep 'detectors:' "$DIR/$kind.stderr" | sed 's/^racetrace: stats: /  /'
done
echo "dense/quiet time per packet: $(echo "${per[dense]} / ${per[quiet]}" | bc -l | xargs printf '%.2f')"
