#!/usr/bin/env bash
# install.sh DIR: puts the official MCP SDKs that the smuggling test's real servers run on
# into DIR (outside the repo): DIR/venv (Python, `mcp` per requirements.txt) and DIR/node
# (TypeScript SDK per package.json + package-lock.json). Everything is pinned so that each
# machine tests the same code; a stamp makes a second run with the same pins a no-op.
set -euo pipefail

dir="${1:?usage: install.sh DIR}"
here="$(cd "$(dirname "$0")" && pwd)"
start=$SECONDS

command -v node >/dev/null && command -v npm >/dev/null || {
    echo "install.sh: node and npm are needed (Node 20 or newer)" >&2; exit 1; }

# The stamp names every input: a change of pins, Python or Node reinstalls from clean.
want="$(cat "$here/requirements.txt" "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1) $(python3 -V) node-$(node -v)"
stamp="$dir/.installed"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "real servers: already installed in $dir ($want)"
    exit 0
fi

# Debian's python3 lacks ensurepip, which `python3 -m venv` needs, until python3-venv is in.
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt-get update -qq
    apt-get install -y -qq python3-venv >/dev/null
fi

mkdir -p "$dir"
rm -rf "$dir/venv" "$dir/node" "$stamp"

python3 -m venv "$dir/venv"
"$dir/venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$here/requirements.txt"

# npm ci installs exactly the lock; no package here needs an install script, so none runs.
mkdir -p "$dir/node"
cp "$here/package.json" "$here/package-lock.json" "$dir/node/"
(cd "$dir/node" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)

echo "$want" >"$stamp"
echo "real servers: installed in $dir in $((SECONDS - start))s"
