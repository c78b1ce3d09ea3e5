#!/bin/sh
# Jamf Pro extension attribute: thoth's health on this Mac.
#
# Jamf runs extension attributes as root during inventory. `thoth health --all-users`
# reads every user's ~/.thoth and MCP client files and reports the worst status.
# Create one extension attribute per field you want to report on (Data Type "String",
# or "Date" for LastHeartbeatUtc, which prints as YYYY-MM-DD hh:mm:ss), changing FIELD:
#   Status             pass | warn | fail        (smart group: Status is fail)
#   ServersUnwrapped   stdio servers running ungoverned
#   LastHeartbeatUtc   the last GovAPI heartbeat
#   Registered         true | false
# Any key of `thoth health --json` works. Instead of thoth's answer it prints
# "not installed", or "untrusted binary" when thoth, or a directory above it, could have
# been replaced by a user other than root (this script will not run such a file as root).
# For tests: THOTH_BIN replaces /usr/local/bin/thoth.
FIELD="Status"
THOTH="${THOTH_BIN:-/usr/local/bin/thoth}"
unset THOTH_BIN

# Whether only root can have put $1 there: a file, no link, and it and every directory
# above it are root's and writable by no one else (a root group is fine, and so is a
# sticky shared directory such as /tmp). Same test as install.sh's.
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

if [ ! -x "$THOTH" ]; then
  echo "<result>not installed</result>"
  exit 0
fi
# A relative path is no stable place either.
if [ "${THOTH#/}" = "$THOTH" ] || ! root_only "$THOTH"; then
  echo "<result>untrusted binary</result>"
  exit 0
fi
# thoth prints <result>…</result>; its exit code (1 = fail) is not an error for Jamf.
"$THOTH" health --all-users --jamf "$FIELD" < /dev/null 2>/dev/null || true
