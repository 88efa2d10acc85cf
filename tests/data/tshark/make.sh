#!/usr/bin/env bash
# Regenerates the tshark reference the captures test compares racetrace with:
# one line per TCP packet of each tests/data/captures capture (Wireshark's own dissection).
# Run from the repository root: bash tests/data/tshark/make.sh   (needs tshark)
set -euo pipefail
for f in tests/data/captures/*.pcap; do
  name=$(basename "$f" .pcap)
  tshark -r "$f" -Y tcp -T fields -E separator=, -E header=y \
    -e frame.number -e frame.time_epoch -e tcp.stream -e ip.src -e ipv6.src -e tcp.srcport \
    -e ip.dst -e ipv6.dst -e tcp.dstport -e tcp.flags.syn -e tcp.flags.ack -e tcp.flags.fin \
    -e tcp.flags.reset -e tcp.len > "tests/data/tshark/$name.csv" 2>/dev/null
done
tshark --version 2>/dev/null | head -1 > tests/data/tshark/VERSION
