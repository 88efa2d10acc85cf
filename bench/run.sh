#!/usr/bin/env bash
# Benchmark: racetrace `analyze --json` against a bare pcap-parser record walk over the same
# generated classic pcaps (in page cache), with peak memory: ~1 GB of fetches with full-size
# responses and ~600 MB of mostly small packets; then the tracker's memory on a stream of
# short connections. Figures go to the README. The run stops if the analysis read fewer or more
# records than the walk.
#
#   bash bench/run.sh [SIZE_BYTES] [SHORT_CONNECTIONS]     (defaults: 1e9 and 10e6)
#
# Last, if valgrind is installed: instruction counts of the walk and of analyze on a 20 MB
# capture (one thread), a figure that does not move with the machine's load.
#
# Needs GNU time (/usr/bin/time -v) for peak RSS; the data lands in bench-data/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-1000000000}
SHORT=${2:-10000000}
mkdir -p bench-data
cargo build --release --locked --workspace --bins
BIN=${CARGO_TARGET_DIR:-target}/release
[ -x /usr/bin/time ] || { echo "install GNU time (apt-get install time)" >&2; exit 2; }

best() { # best of 3 wall-clock seconds of a command
  local b=999999
  for _ in 1 2 3; do
    local s e
    s=$(date +%s.%N); "$@" > /dev/null 2>&1; e=$(date +%s.%N)
    b=$(echo "$e - $s" | bc -l | awk -v b="$b" '{print ($1 < b) ? $1 : b}')
  done
  echo "$b"
}

# Walk, analyze --json and peak RSS of one capture, side by side.
measure() {
  local f=$1
  cat "$f" > /dev/null   # into the page cache
  local bytes walk analyze rss
  bytes=$(stat -c %s "$f")
  walk=$(best "$BIN/walk" "$f")
  analyze=$(best "$BIN/racetrace" analyze "$f" --json /dev/null)
  /usr/bin/time -v "$BIN/racetrace" analyze "$f" --json /dev/null --stats 2> bench-data/time.txt
  rss=$(awk -F: '/Maximum resident/ {print $2/1024}' bench-data/time.txt)
  # The analysis must have read every record the walk read, or the ratio measures nothing.
  local walked analysed
  walked=$("$BIN/walk" "$f" | awk '{print $1}')
  analysed=$(grep -o '[0-9]* packets,' bench-data/time.txt | head -1 | awk '{print $1}')
  if [ "$walked" != "$analysed" ]; then
    echo "$f: the walk read $walked records, analyze $analysed" >&2
    exit 1
  fi
  echo "== $f ($bytes bytes, $walked records: walk and analyze agree)"
  grep 'stats:' bench-data/time.txt
  awk -v b="$bytes" -v w="$walk" -v a="$analyze" -v r="$rss" 'BEGIN {
    printf "record walk      %6.2f s  %7.1f MB/s\n", w, b/w/1e6;
    printf "analyze --json   %6.2f s  %7.1f MB/s  = %.1f%% of the walk, %.0fx tshark (3.5 MB/s); peak RSS %.0f MiB\n", a, b/a/1e6, 100*w/a, b/a/1e6/3.5, r }'
}

# ~1 GB of Happy Eyeballs fetches with full-size responses.
BIG=bench-data/he_${SIZE}.pcap
[ -f "$BIG" ] || "$BIN/gen_capture" "$BIG" --bytes "$SIZE"
measure "$BIG"
# ~600 MB of mostly small packets (the issue's reference shape: 600 MB, ~5 M packets).
SMALLPK=bench-data/small_600000000.pcap
[ -f "$SMALLPK" ] || "$BIN/gen_capture" "$SMALLPK" --bytes 600000000 --segment 120
measure "$SMALLPK"

# tshark in the same run (when installed), as the issue measured it: field extraction of the
# SYN and TSval columns over a 60 MB slice of the small-packet file (the whole file would take
# minutes), against racetrace on the same slice.
if command -v tshark > /dev/null; then
  SLICE=bench-data/slice_60mb.pcap
  python3 - "$SMALLPK" "$SLICE" <<'PY'
import struct, sys
with open(sys.argv[1], 'rb') as f, open(sys.argv[2], 'wb') as g:
    g.write(f.read(24)); n = 24
    while n < 60_000_000:
        h = f.read(16)
        if len(h) < 16: break
        caplen = struct.unpack('<I', h[8:12])[0]
        g.write(h); g.write(f.read(caplen)); n += 16 + caplen
PY
  bytes=$(stat -c %s "$SLICE")
  /usr/bin/time -v tshark -n -r "$SLICE" -T fields -e frame.time_epoch -e tcp.flags.syn \
    -e tcp.options.timestamp.tsval > /dev/null 2> bench-data/time.txt
  ts=$(awk -F': ' '/Elapsed/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' bench-data/time.txt)
  tsrss=$(awk -F: '/Maximum resident/ {print $2/1024}' bench-data/time.txt)
  sl=$(best "$BIN/racetrace" analyze "$SLICE" --json /dev/null)
  awk -v b="$bytes" -v t="$ts" -v r="$tsrss" -v a="$sl" 'BEGIN {
    printf "tshark fields    %6.2f s  %7.1f MB/s  (60 MB slice, peak RSS %.0f MiB); racetrace on the slice %.2f s = %.0fx tshark\n", t, b/t/1e6, r, a, t/a }'
fi

SMALL=bench-data/short_${SHORT}.pcap
[ -f "$SMALL" ] || "$BIN/gen_capture" "$SMALL" --short "$SHORT"
for n in $(python3 -c "print(' '.join(str(int($SHORT*f)) for f in (0.1, 0.25, 0.5, 1.0)))"); do
  part=bench-data/short_part.pcap
  # The first n connections (8 packets each), cut by record count.
  python3 - "$SMALL" "$part" "$n" <<'PY'
import struct, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3]) * 8
with open(src, 'rb') as f, open(dst, 'wb') as g:
    g.write(f.read(24))
    for _ in range(n):
        h = f.read(16)
        if len(h) < 16: break
        caplen = struct.unpack('<I', h[8:12])[0]
        g.write(h); g.write(f.read(caplen))
PY
  /usr/bin/time -v "$BIN/racetrace" analyze "$part" --json /dev/null --stats 2> bench-data/time.txt
  rss=$(awk -F: '/Maximum resident/ {print $2/1024}' bench-data/time.txt)
  echo "short connections: $n  peak RSS ${rss} MiB  $(grep -o 'in .*' bench-data/time.txt | head -1)"
  rm -f "$part"
done

# Instruction counts (valgrind's callgrind, one thread): repeatable whatever else the machine is
# doing, unlike wall-clock times. A 20 MB slice of the small-packet shape.
if command -v valgrind > /dev/null; then
  CG=bench-data/small_20000000.pcap
  [ -f "$CG" ] || "$BIN/gen_capture" "$CG" --bytes 20000000 --segment 120 >&2
  count() { RAYON_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null | awk '/Collected/ {print $4}'; }
  packets=$("$BIN/walk" "$CG" | awk '{print $1}')
  w=$(count "$BIN/walk" "$CG")
  a=$(count "$BIN/racetrace" analyze "$CG" --json /dev/null)
  awk -v p="$packets" -v w="$w" -v a="$a" 'BEGIN {
    printf "instructions on %d packets: walk %.1f M (%.0f per packet), analyze --json %.1f M (%.0f per packet)\n", p, w/1e6, w/p, a/1e6, a/p }'
fi
