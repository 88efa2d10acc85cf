#!/usr/bin/env bash
# Regenerate reports/ from samples/ (the README's main command), then screenshot four of the
# reports in headless Chromium, 1280 px wide, into reports/screenshots/ (the README's
# pictures; tests/browser.rs takes and checks the same screenshots).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --locked -q -- analyze samples/ --out reports/
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome) || {
  echo "reports/refresh.sh: no chromium for the screenshots (apt-get install chromium)" >&2
  exit 2
}
mkdir -p reports/screenshots
for name in ws_duplicate he_curl_v6slow lb_three_stable_backends stale_reuse_curl; do
  profile=$(mktemp -d)
  "$browser" --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" --window-size=1280,2400 \
    --screenshot="reports/screenshots/$name.png" "file://$PWD/reports/$name/report.html" \
    >/dev/null 2>&1
  rm -rf "$profile"
  echo "reports/screenshots/$name.png"
done
