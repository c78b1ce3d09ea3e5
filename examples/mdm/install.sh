#!/bin/sh
# thoth install for macOS and Linux, run as root by Jamf, Intune (Linux) or by hand.
#
# 1. installs the binary at a stable path (/usr/local/bin/thoth: wrapped client
#    configs point there, so upgrades replace the file and nothing else);
# 2. places the managed settings file (DESIGN §6), root-owned and 0644, whose keys win
#    over every flag, variable and profile setting;
# 3. for every user with a home directory: wraps each MCP client config (as that user,
#    so files keep their owner) and registers the endpoint.
#
# Usage: install.sh THOTH_BINARY TENANT_ID [ENFORCEMENT_MODE]
# Environment: THOTH_ENROLLMENT_SOURCE (jamf|intune|manual), THOTH_API_KEY_FILE_SOURCE
# (a file holding the tenant's proxy API key, copied to each user's ~/.thoth, 0600).
set -eu

BINARY="${1:?usage: install.sh THOTH_BINARY TENANT_ID [MODE]}"
TENANT="${2:?usage: install.sh THOTH_BINARY TENANT_ID [MODE]}"
MODE="${3:-block}"
ENROLLMENT="${THOTH_ENROLLMENT_SOURCE:-manual}"

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root" >&2
  exit 1
fi

install -m 0755 "$BINARY" /usr/local/bin/thoth

case "$(uname -s)" in
  Darwin) MANAGED_DIR="/Library/Application Support/Thoth"; HOMES="/Users" ;;
  *)      MANAGED_DIR="/etc/thoth"; HOMES="/home" ;;
esac
mkdir -p "$MANAGED_DIR"
chmod 0755 "$MANAGED_DIR"
# Written to a temporary file and renamed: a proxy starting meanwhile never reads half.
cat > "$MANAGED_DIR/managed.json.tmp" <<JSON
{
  "tenant_id": "$TENANT",
  "environment": "prod",
  "enforcement_mode": "$MODE",
  "require_remote_enforcer": true,
  "require_non_root": true,
  "tls_verify": true
}
JSON
chown root:0 "$MANAGED_DIR/managed.json.tmp"
chmod 0644 "$MANAGED_DIR/managed.json.tmp"
mv "$MANAGED_DIR/managed.json.tmp" "$MANAGED_DIR/managed.json"

for home in "$HOMES"/*; do
  [ -d "$home" ] || continue
  user="$(basename "$home")"
  id "$user" >/dev/null 2>&1 || continue
  if [ -n "${THOTH_API_KEY_FILE_SOURCE:-}" ]; then
    install -d -m 0700 -o "$user" "$home/.thoth"
    install -m 0600 -o "$user" "$THOTH_API_KEY_FILE_SOURCE" "$home/.thoth/proxy_api_key.json"
  fi
  # As the user: files keep their owner, backups land in the user's ~/.thoth/backups.
  su - "$user" -c "/usr/local/bin/thoth wrap-config --all --tenant-id '$TENANT'" || \
    echo "install.sh: wrap-config failed for $user (see above)" >&2
  su - "$user" -c "THOTH_ENROLLMENT_SOURCE='$ENROLLMENT' /usr/local/bin/thoth register" || \
    echo "install.sh: registration failed for $user (thoth run retries on its own)" >&2
done

/usr/local/bin/thoth health --all-users || true
