#!/usr/bin/env bash
# Root-run administration over a user's files (wrap-config, health, status) with the
# real thoth binary: a throwaway user plants links, FIFOs and lock links in their home,
# and root's commands must neither follow them, nor hang, nor create files there, nor
# print a root-only file. Needs root and useradd; run by .ci/run.
#   tests/root/as_user.sh [THOTH_BINARY]   (default target/debug/thoth)
set -euo pipefail
thoth="$(realpath "${1:-target/debug/thoth}")"
[[ $EUID -eq 0 ]] || { echo "as_user.sh: must run as root" >&2; exit 1; }
[[ -x $thoth ]] || { echo "as_user.sh: no thoth binary at $thoth" >&2; exit 1; }

user="tasu$$"
work="$(mktemp -d /tmp/thoth-as-user.XXXXXX)"
chmod 0755 "$work"
# The user may not reach the build tree: root and the user run a copy (root-owned, 0755).
install -m 0755 "$thoth" "$work/thoth"
thoth="$work/thoth"
home="$work/home/$user"
mkdir -p "$work/home"
pass=0 fail=0
cleanup() { userdel -r "$user" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
useradd -m -d "$home" -s /bin/sh "$user"
as_user() { runuser -u "$user" -- "$@"; }
check() { if eval "$2"; then echo "ok    $1"; pass=$((pass + 1)); else echo "FAIL  $1"; fail=$((fail + 1)); fi; }
root_files_in_home() { find "$home" -uid 0 -print | head -n 5; }
export THOTH_ENV=dev THOTH_USER_WORK_TIMEOUT_MS=2000 THOTH_LOG=info
export PATH="$(dirname "$thoth"):$PATH"

secret="$work/root-only.json"
printf '{"mcpServers":{"s":{"command":"echo","args":["SECRET-KEY-123"]}}}\n' > "$secret"
chmod 0600 "$secret"
before="$(sha256sum "$secret")"

# 1. wrap-config as root on a user's client file that is a link to a root-only file.
as_user mkdir -p "$home/.cursor"
as_user ln -s "$secret" "$home/.cursor/mcp.json"
out="$(timeout 30 "$thoth" wrap-config --client cursor "$home/.cursor/mcp.json" 2>&1 || true)"
check "wrap-config does not rewrite a root-only file through the user's link" '[[ "$(sha256sum "$secret")" == "$before" ]]'
check "wrap-config does not print the root-only file" '[[ $out != *SECRET-KEY-123* ]]'
check "wrap-config creates no root-owned file in the home" '[[ -z "$(root_files_in_home)" ]]'

# 2. The user's own file is wrapped, as the user.
as_user rm "$home/.cursor/mcp.json"
as_user sh -c "printf '{\"mcpServers\":{\"s\":{\"command\":\"echo\",\"args\":[\"hi\"]}}}\n' > '$home/.cursor/mcp.json'"
timeout 30 "$thoth" wrap-config --client cursor "$home/.cursor/mcp.json" >/dev/null 2>&1 || true
check "the user's own file is wrapped" 'grep -q "\"run\"" "$home/.cursor/mcp.json"'
check "it still belongs to the user" '[[ "$(stat -c %U "$home/.cursor/mcp.json")" == "$user" ]]'
check "no root-owned file in the home after wrapping" '[[ -z "$(root_files_in_home)" ]]'

# 3. health as root: a FIFO at state.json, a lock linked into /etc, a schema linked to
#    the root-only file.
as_user mkdir -p "$home/.thoth"
as_user mkfifo "$home/.thoth/state.json"
as_user ln -s "/etc/thoth-as-user-$$" "$home/.thoth/state.lock"
as_user ln -s "$secret" "$home/.thoth/policy.cedarschema"
started=$SECONDS
out="$(HOME=/root timeout 60 "$thoth" health --user "$user" --json 2>&1 || true)"
check "health --user ends at the deadline despite a FIFO" '(( SECONDS - started < 20 ))'
check "health --user creates nothing through the lock link" '[[ ! -e /etc/thoth-as-user-$$ ]]'
check "health --user does not print the root-only file" '[[ $out != *SECRET-KEY-123* ]]'
check "health --user creates no root-owned file in the home" '[[ -z "$(root_files_in_home)" ]]'
check "health --user reports the profile it could not read" '[[ $out == *"did not end within"* || $out == *fail* ]]'

# 4. status as root with the user's HOME runs as the user.
as_user rm -f "$home/.thoth/state.json"
out="$(HOME="$home" timeout 30 "$thoth" status 2>&1 || true)"
check "status with the user's HOME creates no root-owned file there" '[[ -z "$(root_files_in_home)" ]]'
check "status with the user's HOME does not print the root-only file" '[[ $out != *SECRET-KEY-123* ]]'

# 5. (security review) wrap-config as root through a user's link to a root-owned
#    *directory*: foreign_owner lstat()s only the last component, so
#    ~/.cursor -> $work/rootdir makes ~/.cursor/mcp.json look root's, and root edits it.
rootdir="$work/rootdir"
mkdir -p "$rootdir"
printf '{"mcpServers":{"s":{"command":"echo","args":["ROOT-DIR-FILE"]}}}\n' > "$rootdir/mcp.json"
rootbefore="$(sha256sum "$rootdir/mcp.json")"
as_user rm -rf "$home/.cursor"
as_user ln -s "$rootdir" "$home/.cursor"
timeout 30 "$thoth" wrap-config --client cursor "$home/.cursor/mcp.json" >/dev/null 2>&1 || true
check "wrap-config does not edit a root-owned file through the user's directory link" '[[ "$(sha256sum "$rootdir/mcp.json")" == "$rootbefore" ]]'

# 6. A root-owned, world-writable folder under /home (as macOS's /Users/Shared) is no
#    one's home: --all-users must not read what a user planted in it, as root.
shared="/home/tshared$$"
mkdir -m 1777 "$shared"
trap 'cleanup; rm -rf "$shared"; rm -f "/etc/thoth-shared-$$"' EXIT
as_user mkdir -p "$shared/.thoth"
as_user mkfifo "$shared/.thoth/state.json"
as_user ln -s "/etc/thoth-shared-$$" "$shared/.thoth/state.lock"
started=$SECONDS
HOME=/root timeout 60 "$thoth" health --all-users --json >/dev/null 2>&1 || true
check "health --all-users skips a root-owned shared folder (no hang)" '(( SECONDS - started < 30 ))'
check "health --all-users creates nothing through its lock link" '[[ ! -e /etc/thoth-shared-$$ ]]'

# 7. Relative paths given to root mean what they meant to root: the user's part runs
#    in root's current directory (here one the user can enter).
as_user rm -f "$home/.cursor"
as_user mkdir -p "$home/.cursor"
as_user sh -c "printf '{\"mcpServers\":{\"s\":{\"command\":\"echo\"}}}\n' > '$home/.cursor/mcp.json'"
mkdir -p "$work/cwd"
printf 'permit (principal, action, resource);\n' > "$work/cwd/rel.cedar"
chmod 0755 "$work/cwd"; chmod 0644 "$work/cwd/rel.cedar"
out="$(cd "$work/cwd" && timeout 30 "$thoth" wrap-config --client cursor --dry-run --policy rel.cedar "$home/.cursor/mcp.json" 2>&1 || true)"
check "wrap-config as root reads a relative --policy from root's directory" '[[ $out == *"$work/cwd/rel.cedar"* && $out != *"cannot read policy"* ]]'

# 8. health as root over a user whose wrapped entry names a FIFO as its policy: the
#    check ends (bounded), and says which entry.
as_user mkfifo "$home/fifo.cedar"
timeout 30 "$thoth" wrap-config --client cursor --force --policy "$home/fifo.cedar" "$home/.cursor/mcp.json" >/dev/null 2>&1 || true
started=$SECONDS
out="$(HOME=/root timeout 60 "$thoth" health --user "$user" --json 2>&1 || true)"
check "health --user ends despite an entry's FIFO policy" '(( SECONDS - started < 20 ))'
check "health --user names the entry whose policy is not a file" '[[ $out == *"fifo.cedar"* && $out == *"not a regular file"* ]]'

echo "root-admin: $pass passed, $fail failed"
(( fail == 0 ))
