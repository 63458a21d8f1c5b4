#!/usr/bin/env bash
# Vendor the dashboard's JavaScript into the package (run when bumping package.json).
#
# The versions and integrity hashes are pinned by package.json / package-lock.json. npm runs
# in a temporary directory (no node_modules in the repo, no install scripts), and only the
# minified build plus its licence are copied into src/greenlm/server/static/vendor/, which
# is committed: the dashboard and the HTML reports never reach a CDN.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dest=src/greenlm/server/static/vendor
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp package.json "$tmp/"
if [ -f package-lock.json ]; then
  cp package-lock.json "$tmp/"
  (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
else
  (cd "$tmp" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
  cp "$tmp/package-lock.json" "$root/package-lock.json"
fi
mkdir -p "$dest"
pkg="$tmp/node_modules/chart.js"
if [ -f "$pkg/dist/chart.umd.min.js" ]; then src="$pkg/dist/chart.umd.min.js"; else src="$pkg/dist/chart.umd.js"; fi
cp "$src" "$dest/chart.umd.min.js"
cp "$pkg/LICENSE.md" "$dest/chart.js.LICENSE.md"
version=$(node -p "require('$pkg/package.json').version")
printf 'chart.js %s (MIT) from the npm registry, via scripts/vendor_js.sh\n' "$version" > "$dest/VERSIONS.txt"
echo "vendored chart.js $version into $dest"
