#!/usr/bin/env bash
# Scaling benchmark: grows each kind of finding x10 and x100 on the busy-capture generator
# (gen_capture --busy) and prints, per step, the connections, the findings, the detectors'
# time (`--stats`) and the whole analysis, with the ratio to the step before. Near-linear
# means at most x12 per x10.
#
#   bash bench/scale.sh [BASE_FETCHES] [PROFILE]      (defaults: 2000 and release)
#   RACETRACE_BIN_DIR=DIR bash bench/scale.sh …       (use the binaries in DIR, no build)
#
# Kinds grown (the others held at the base):
#   fetches  - races and stale reuses with them (base fetches x1, x10, x100);
#   services - 30, 300, 3000 services;
#   clients  - 100, 1000, 10000 clients;
#   backends - 2, 20, 200 physical backends behind the services.
# Data lands in bench-data/scale/ (ignored by git). Also scores each capture against its truth.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:-2000}
PROFILE=${2:-release}
if [ -n "${RACETRACE_BIN_DIR:-}" ]; then
  BIN=$RACETRACE_BIN_DIR   # binaries built already (racetrace, gen_capture)
elif [ "$PROFILE" = release ]; then
  cargo build --release --locked --workspace --bins
  BIN=${CARGO_TARGET_DIR:-target}/release
else
  cargo build --locked --workspace --bins
  BIN=${CARGO_TARGET_DIR:-target}/debug
fi
DIR=bench-data/scale
mkdir -p "$DIR"

# One step: generate, analyse with --stats, score. Prints one table row.
step() {
  local kind=$1 value=$2; shift 2
  local f="$DIR/$kind-$value.pcap"
  [ -s "$f" ] || "$BIN/gen_capture" "$f" --busy "$@" 2> "$f.gen"
  local s e stats
  s=$(date +%s.%N)
  stats=$("$BIN/racetrace" analyze "$f" --json "$DIR/$kind-$value.json" --stats 2>&1 >/dev/null | grep 'stats:' || true)
  e=$(date +%s.%N)
  local total detect conns races stale backends
  total=$(echo "$e - $s" | bc -l)
  detect=$(echo "$stats" | sed -n 's/.*detect \([0-9.]*\) s,.*/\1/p' | head -1)
  conns=$(echo "$stats" | sed -n 's/.* \([0-9]*\) connections, peak.*/\1/p' | head -1)
  races=$(python3 -c "import json;d=json.load(open('$DIR/$kind-$value.json'));s=d['summary'];print(s['races'],s['stale_reuses'],s['backends'],len(d['services']))")
  printf '| %s | %s | %s | %s | %s | %s |\n' "$kind" "$value" "$conns" "$races" "$detect" "$(printf '%.3f' "$total")"
}

echo "| kind | value | connections | races stale backends services | detect s | analyze s |"
echo "|---|---|---|---|---|---|"
for m in 1 10 100; do step fetches $((BASE * m)) --fetches $((BASE * m)) --seed 11; done
for v in 30 300 3000; do step services $v --fetches $((BASE * 10)) --services $v --seed 12; done
for v in 100 1000 10000; do step clients $v --fetches $((BASE * 10)) --clients $v --seed 13; done
for v in 2 20 200; do step backends $v --fetches $((BASE * 10)) --backends $v --services 3000 --seed 14; done
