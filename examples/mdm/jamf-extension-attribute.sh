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
# Any key of `thoth health --json` works.
FIELD="Status"
THOTH="/usr/local/bin/thoth"

if [ ! -x "$THOTH" ]; then
  echo "<result>not installed</result>"
  exit 0
fi
# thoth prints <result>…</result>; its exit code (1 = fail) is not an error for Jamf.
"$THOTH" health --all-users --jamf "$FIELD" 2>/dev/null || true
