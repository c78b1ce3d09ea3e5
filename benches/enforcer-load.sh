#!/usr/bin/env bash
# Load on `thoth enforcer serve` with wrk (64 connections, one wrk thread so the server
# keeps the cores): decisions/s and the latency distribution. Needs a release build:
#   cargo build --release && bash benches/enforcer-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
home="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$home"' EXIT
printf bench-key > "$home/key" && chmod 600 "$home/key"
cat > "$home/enforce.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["x-api-key"] = "bench-key"
wrk.body = '{"agent_id":"bench","tenant_id":"local","user_id":"u","tool_name":"read_file","tool_args":{"path":"/srv/data/file.txt","limit":4000},"session_id":"s","session_tool_calls":["read_file"],"enforcement_mode":"block","environment":"dev"}'
LUA
HOME="$home" THOTH_ENV=dev THOTH_APPROVER_KEY=bench-approver THOTH_LOG=warn \
    target/release/thoth enforcer serve --policy examples/policies/read-only.cedar \
    --listen 127.0.0.1:18787 --api-key-file "$home/key" &
server=$!
sleep 1
wrk -t1 -c64 -d"${SECONDS_OF_LOAD:-10}s" --latency -s "$home/enforce.lua" http://127.0.0.1:18787/v1/enforce
