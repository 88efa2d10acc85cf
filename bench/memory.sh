#!/usr/bin/env bash
# Bounded memory (issue 26): the whole process's peak RSS (GNU time) and wall time on the
# captures that used to grow without bound, with the memory limit and without it (the
# in-memory path), each with `--json FILE` and with `--out DIR` (every output), and whether
# the two JSON reports are the same (they differ only in `summary.evicted_early` when the
# limit made the connection table evict).
#
#   bash bench/memory.sh [KIND=N …]    (default: flood=5000000 short=10000000 busy=35000)
#   RACETRACE_BIN_DIR=DIR bash bench/memory.sh …   (use the binaries in DIR, no build)
#   LIMIT=512M bash bench/memory.sh …              (the limit to test; default 1G)
#
# Kinds: flood=N SYNs none answered from distinct sources (gen_capture --flood), short=N
# short connections (gen_capture --short), busy=N fetches of the busy-capture generator
# (gen_capture --busy --fetches N). Data lands in bench-data/memory/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${LIMIT:-1G}
if [ -n "${RACETRACE_BIN_DIR:-}" ]; then
  BIN=$RACETRACE_BIN_DIR
else
  cargo build --release --locked --workspace --bins
  BIN=${CARGO_TARGET_DIR:-target}/release
fi
[ -x /usr/bin/time ] || { echo "install GNU time (apt-get install time)" >&2; exit 2; }
DIR=bench-data/memory
mkdir -p "$DIR"
[ $# -gt 0 ] || set -- flood=5000000 short=10000000 busy=35000

# One run: prints "peak_MiB wall_s" and keeps the stats lines in $DIR/last.txt.
run() {
  /usr/bin/time -v "$BIN/racetrace" analyze "$@" --stats -q 2> "$DIR/last.txt" > /dev/null || {
    cat "$DIR/last.txt" >&2
    exit 1
  }
  awk -F': ' '/Maximum resident/ {r = $2 / 1024}
    /Elapsed/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]}
    END {printf "%.0f %.2f\n", r, s}' "$DIR/last.txt"
}

echo "| capture | connections | path | output | peak RSS MiB | wall s |"
echo "|---|---|---|---|---|---|"
for spec in "$@"; do
  kind=${spec%%=*} n=${spec#*=}
  f=$DIR/$kind-$n.pcap
  if [ ! -s "$f" ]; then
    case $kind in
      flood) "$BIN/gen_capture" "$f" --flood "$n" >&2 ;;
      short) "$BIN/gen_capture" "$f" --short "$n" >&2 ;;
      busy) "$BIN/gen_capture" "$f" --busy --fetches "$n" >&2 ;;
      *) echo "unknown kind $kind" >&2; exit 2 ;;
    esac
  fi
  cat "$f" > /dev/null # into the page cache
  for path in "limit $LIMIT" "in memory"; do
    if [ "$path" = "in memory" ]; then lim=(--memory-limit none); else lim=(--memory-limit "$LIMIT"); fi
    tag=${path// /-}
    read -r rss wall < <(run "$f" "${lim[@]}" --json "$DIR/$kind-$n.$tag.json")
    conns=$(sed -n 's/.* \([0-9]*\) connections, peak.*/\1/p' "$DIR/last.txt" | head -1)
    echo "| $kind $n | $conns | $path | --json FILE | $rss | $wall |"
    grep 'each detector' "$DIR/last.txt" | sed 's/^racetrace: stats: /    /' >&2 || true
    rm -rf "$DIR/out"
    read -r rss wall < <(run "$f" "${lim[@]}" --out "$DIR/out")
    echo "| $kind $n | $conns | $path | --out DIR | $rss | $wall |"
  done
  # The same report either way, but for the count of connections the full table evicted.
  python3 - "$DIR/$kind-$n.limit-$LIMIT.json" "$DIR/$kind-$n.in-memory.json" <<'PY' >&2
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for d in (a, b):
    d['summary'].pop('evicted_early', None)
    d['warnings'] = [w for w in d['warnings'] if w['kind'] != 'table_full']
print(sys.argv[1], 'same report as in memory' if a == b else 'REPORTS DIFFER')
PY
done
