#!/usr/bin/env bash
# Vendor the dashboard's JavaScript (Chart.js, Swagger UI) into the package (run when bumping package.json).
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
chart_version=$(node -p "require('$pkg/package.json').version")

# Swagger UI for /api/docs: the bundle, its stylesheet, the licence, notice and the licences of
# what the bundle contains. The source-map comment is dropped (the map is not shipped).
sw="$tmp/node_modules/swagger-ui-dist"
mkdir -p "$dest/swagger-ui"
sed '/^\/\/# sourceMappingURL=/d' "$sw/swagger-ui-bundle.js" > "$dest/swagger-ui/swagger-ui-bundle.js"
sed '/sourceMappingURL=/d' "$sw/swagger-ui.css" > "$dest/swagger-ui/swagger-ui.css"
cp "$sw/LICENSE" "$dest/swagger-ui/LICENSE"
cp "$sw/NOTICE" "$dest/swagger-ui/NOTICE"
cp "$sw/swagger-ui-bundle.js.LICENSE.txt" "$dest/swagger-ui/swagger-ui-bundle.js.LICENSE.txt"
swagger_version=$(node -p "require('$sw/package.json').version")

{
  printf 'chart.js %s (MIT) from the npm registry, via scripts/vendor_js.sh\n' "$chart_version"
  printf 'swagger-ui-dist %s (Apache-2.0) from the npm registry, via scripts/vendor_js.sh (swagger-ui/)\n' "$swagger_version"
} > "$dest/VERSIONS.txt"
echo "vendored chart.js $chart_version and swagger-ui-dist $swagger_version into $dest"
