#!/bin/sh
# thoth install for macOS and Linux, run as root by Jamf, Intune (Linux) or by hand.
#
# 1. installs the binary at a stable path (/usr/local/bin/thoth: wrapped client
#    configs point there, so upgrades replace the file and nothing else);
# 2. places the managed settings file (docs/architecture.md §6), root-owned and 0644, whose keys win
#    over every flag, variable and profile setting;
# 3. for every user with a home directory: places the API key, wraps each MCP client
#    config, registers the endpoint and prints `thoth health`, all as that user (so
#    files keep their owner).
#
# Usage: install.sh THOTH_BINARY TENANT_ID [ENFORCEMENT_MODE]
# Environment: THOTH_ENROLLMENT_SOURCE (jamf|intune|manual), THOTH_API_KEY_FILE_SOURCE
# (a file holding the tenant's proxy API key, copied to each user's ~/.thoth, 0600).
# For tests (tests/mdm/planted_links.sh): THOTH_BIN replaces /usr/local/bin/thoth,
# THOTH_MANAGED_SETTINGS_FILE the managed file's path, THOTH_TEST_HOMES_DIR the
# directory of homes (/Users, /home) and THOTH_INSTALL_USER_TIMEOUT the 300 seconds
# after which a user's step is stopped.
#
# Everything in a home belongs to its user, who may have made any path there a link
# to a root file or directory, or a FIFO. So root never touches a path inside a home,
# nor runs thoth (which reads them): every step there runs as the user (runuser on
# Linux, sudo on macOS, else su), with a clean environment, no terminal of root's and a
# time limit. Exit 1 when a user's key could not be placed; wrap-config and register
# failures are reported and skipped.
set -eu

BINARY="${1:?usage: install.sh THOTH_BINARY TENANT_ID [MODE]}"
TENANT="${2:?usage: install.sh THOTH_BINARY TENANT_ID [MODE]}"
MODE="${3:-block}"
ENROLLMENT="${THOTH_ENROLLMENT_SOURCE:-manual}"
THOTH="${THOTH_BIN:-/usr/local/bin/thoth}"
STEP_LIMIT="${THOTH_INSTALL_USER_TIMEOUT:-300}"
KEY_SOURCE="${THOTH_API_KEY_FILE_SOURCE:-}"
# Script settings, not thoth's: thoth would warn about unknown THOTH_* names.
unset THOTH_BIN THOTH_INSTALL_USER_TIMEOUT

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root" >&2
  exit 1
fi
case "$THOTH" in
  /*) ;;
  *) echo "install.sh: THOTH_BIN must be an absolute path" >&2; exit 1 ;;
esac
case "$STEP_LIMIT" in
  '' | *[!0-9]*) echo "install.sh: THOTH_INSTALL_USER_TIMEOUT must be a number of seconds" >&2; exit 1 ;;
esac
if [ -n "$KEY_SOURCE" ] && { [ ! -f "$KEY_SOURCE" ] || [ ! -r "$KEY_SOURCE" ]; }; then
  echo "install.sh: THOTH_API_KEY_FILE_SOURCE $KEY_SOURCE: not a readable file" >&2
  exit 1
fi

# Whether only root can have put $1 there: a file, no link, and it and every directory
# above it are root's and writable by no one else (a root group is fine, and so is a
# sticky shared directory such as /tmp). If not, whoever can write there decides what
# every user runs, and jamf-extension-attribute.sh (same test) will not run it as root.
root_only() {
  [ -f "$1" ] && [ ! -L "$1" ] || return 1
  [ -n "$(find "$1" -prune -user 0 \( -group 0 -o ! -perm -020 \) ! -perm -002 -print 2>/dev/null)" ] || return 1
  dir="$(cd -P "$(dirname "$1")" && pwd -P)" || return 1
  while :; do
    [ -n "$(find "$dir" -prune -user 0 \( -group 0 -o ! -perm -020 -o -perm -1000 \) \
      \( ! -perm -002 -o -perm -1000 \) -print 2>/dev/null)" ] || return 1
    [ "$dir" != / ] || return 0
    dir="$(dirname "$dir")"
  done
}

install -m 0755 "$BINARY" "$THOTH"
if ! root_only "$THOTH"; then
  echo "install.sh: $THOTH or a directory above it is writable by a user other than root:" \
    "every user runs what that user puts there, and jamf-extension-attribute.sh will not" \
    "run it (install to a directory only root can write)" >&2
fi

case "$(uname -s)" in
  Darwin) MANAGED_FILE="/Library/Application Support/Thoth/managed.json"; HOMES="/Users" ;;
  *)      MANAGED_FILE="/etc/thoth/managed.json"; HOMES="/home" ;;
esac
MANAGED_FILE="${THOTH_MANAGED_SETTINGS_FILE:-$MANAGED_FILE}"
HOMES="${THOTH_TEST_HOMES_DIR:-$HOMES}"
MANAGED_DIR="$(dirname "$MANAGED_FILE")"
mkdir -p "$MANAGED_DIR"
chmod 0755 "$MANAGED_DIR"
# Written to a temporary file and renamed: a proxy starting meanwhile never reads half.
cat > "$MANAGED_FILE.tmp" <<JSON
{
  "tenant_id": "$TENANT",
  "environment": "prod",
  "enforcement_mode": "$MODE",
  "require_remote_enforcer": true,
  "require_non_root": true,
  "tls_verify": true
}
JSON
chown root:0 "$MANAGED_FILE.tmp"
chmod 0644 "$MANAGED_FILE.tmp"
mv "$MANAGED_FILE.tmp" "$MANAGED_FILE"

# How root becomes a user: runuser (Linux), sudo (macOS), else su.
if command -v runuser >/dev/null 2>&1; then
  SWITCH=runuser
elif command -v sudo >/dev/null 2>&1; then
  SWITCH=sudo
else
  SWITCH=su
fi
# detach COMMAND...: exec COMMAND in a session of its own (setsid on Linux, perl on
# macOS), so that the user's processes have no terminal of root's to push keystrokes
# into, and the step is one process group that its time limit can stop.
if command -v setsid >/dev/null 2>&1 && setsid -w true 2>/dev/null; then
  detach() { exec setsid -w "$@"; }
elif [ -x /usr/bin/perl ]; then
  detach() { exec /usr/bin/perl -MPOSIX -e 'POSIX::setsid(); exec { $ARGV[0] } @ARGV; exit 127' -- "$@"; }
else
  detach() { exec "$@"; }
fi
# Run as the user (HOME is theirs, from the account database): a clean environment, as
# `su -` gave, but without a login shell, so none of the user's startup files run.
AS_USER='u=$1; p=$2; shift 2
[ -n "${HOME:-}" ] || exit 1
cd "$HOME" 2>/dev/null || cd /
exec env -i HOME="$HOME" USER="$u" LOGNAME="$u" SHELL=/bin/sh PATH="$p" "$@"'
USER_PATH="$(dirname "$THOTH"):/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"

# user_step INPUT USER COMMAND...: COMMAND as USER with INPUT (opened by root) as its
# stdin, stopped after STEP_LIMIT seconds (a FIFO in the home must not stall the install).
user_step() {
  input=$1; u=$2; shift 2
  set -- /bin/sh -c "$AS_USER" sh "$u" "$USER_PATH" "$@"
  case "$SWITCH" in
    runuser) detach runuser -u "$u" -- "$@" < "$input" & ;;
    sudo)    detach sudo -n -H -u "$u" -- "$@" < "$input" & ;;
    *)       detach su -s /bin/sh -c 'exec "$0" "$@"' -- "$u" "$@" < "$input" & ;;
  esac
  step=$!
  (
    # Quiet (the shell reports the naps it kills), but for the one message on fd 3.
    exec 3>&2 2>/dev/null
    trap 'kill "$nap"; wait "$nap"; exit 0' TERM
    sleep "$STEP_LIMIT" 3>&- & nap=$!
    wait "$nap"
    echo "install.sh: a step for $u ran over $STEP_LIMIT s; stopping it" >&3
    # A detached step leads its own process group.
    kill -s TERM -- "-$step" || kill -s TERM "$step"
    sleep 5 3>&- & nap=$!
    wait "$nap"
    kill -s KILL -- "-$step" || kill -s KILL "$step"
  ) < /dev/null > /dev/null &
  watchdog=$!
  status=0
  wait "$step" || status=$?
  kill "$watchdog" 2>/dev/null || true
  wait "$watchdog" 2>/dev/null || true
  return "$status"
}

# As the user: ~/.thoth (0700) and, written to a fresh file and renamed over the old
# one (a link or FIFO there is replaced, never followed), the key read from stdin.
PLACE_KEY='umask 077
dir="$HOME/.thoth"
mkdir -p "$dir" && chmod 0700 "$dir" || exit 1
key="$dir/proxy_api_key.json"
if [ -d "$key" ]; then echo "$key: a directory" >&2; exit 1; fi
tmp=$(mktemp "$dir/.proxy_api_key.json.XXXXXX") || exit 1
if cat > "$tmp" && mv -f "$tmp" "$key"; then exit 0; fi
rm -f "$tmp"
exit 1'

failed=0
for home in "$HOMES"/*; do
  [ -d "$home" ] || continue
  user="$(basename "$home")"
  uid="$(id -u "$user" 2>/dev/null)" || continue
  # A home named after root is not a user's: nothing here runs as root.
  [ "$uid" -ne 0 ] || continue
  if [ -n "$KEY_SOURCE" ]; then
    if ! user_step "$KEY_SOURCE" "$user" /bin/sh -c "$PLACE_KEY"; then
      echo "install.sh: could not place the API key for $user (see above)" >&2
      failed=1
    fi
  fi
  # Backups land in the user's ~/.thoth/backups.
  user_step /dev/null "$user" "$THOTH" wrap-config --all --tenant-id "$TENANT" || \
    echo "install.sh: wrap-config failed for $user (see above)" >&2
  user_step /dev/null "$user" THOTH_ENROLLMENT_SOURCE="$ENROLLMENT" "$THOTH" register || \
    echo "install.sh: registration failed for $user (thoth run retries on its own)" >&2
  # The user's verdict, read as the user (`health --all-users` would read it as root).
  echo "install.sh: $user:"
  user_step /dev/null "$user" "$THOTH" health || true
done
exit "$failed"
