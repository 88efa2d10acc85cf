#!/usr/bin/env bash
# Paired benchmark of two racetrace binaries on one capture: runs them alternately N times
# (`analyze --json /dev/null --stats`) and prints, per run, the detectors' times, then the
# median of each detector per binary. Alternation cancels this machine's hour-to-hour drift.
#
#   bash bench/pair.sh OLD_BINARY NEW_BINARY CAPTURE [N=5]
set -euo pipefail
OLD=$1 NEW=$2 CAP=$3 N=${4:-5}
out=$(mktemp)
for i in $(seq "$N"); do
  for which in old new; do
    bin=$OLD; [ "$which" = new ] && bin=$NEW
    line=$("$bin" analyze "$CAP" --json /dev/null --stats 2>&1 | grep 'stats: detectors:')
    echo "$which $line" | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import re, statistics, sys
runs = {"old": {}, "new": {}}
for l in open(sys.argv[1]):
    which = l.split()[0]
    for name, t in re.findall(r"(\w+) ([0-9.]+) s", l):
        runs[which].setdefault(name, []).append(float(t))
print("| detector | old median s | new median s | new/old |")
print("|---|---|---|---|")
for name in runs["old"]:
    o, n = statistics.median(runs["old"][name]), statistics.median(runs["new"][name])
    print(f"| {name} | {o:.3f} | {n:.3f} | {n/o:.3f} |")
PY
rm -f "$out"
