#!/usr/bin/env bash
# The MDM scripts (examples/mdm) against users who planted links and FIFOs in their homes.
#
# install.sh and jamf-extension-attribute.sh run as root. A user owns everything inside
# their home, so every path there may be a symlink to a root file or directory, or a FIFO
# that blocks whoever opens it. This test creates throwaway users (removed on exit, even
# on failure), plants those traps as each user, runs the scripts as root against a stub
# thoth (no Rust build needed: it logs its uid, HOME and argv), and checks that root
# changed nothing outside the homes, created nothing root-owned inside them, never
# stalled, and ran the user-side steps with the user's uid; and that a home with no
# traps still gets its ~/.thoth (the user's, 0700) and API key (the user's, 0600).
#
# Linux only; run as root: `sudo bash tests/mdm/planted_links.sh`. MDM_DIR replaces the
# scripts' directory (default examples/mdm), MDM_SH the shell running them (default sh),
# and MDM_PATH their PATH (to try install.sh's fallbacks: without /usr/sbin there is no
# runuser). Ends with `mdm: N passed, M failed`, and exits non-zero when M > 0.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
MDM_DIR=${MDM_DIR:-$here/../../examples/mdm}
MDM_SH=${MDM_SH:-sh}
MDM_PATH=${MDM_PATH:-$PATH}
if [ "$(id -u)" -ne 0 ]; then
  echo "planted_links.sh: run as root (it creates and removes users)" >&2
  exit 2
fi
for tool in useradd userdel runuser setsid timeout mkfifo stat find; do
  command -v "$tool" >/dev/null || { echo "planted_links.sh: needs $tool" >&2; exit 2; }
done

T=""
USERS=()
SIDS=()
cleanup() {
  local rc=$? u pid
  set +e
  # A script stuck on a FIFO leaves processes behind (root's and the user's): they go first.
  for pid in "${SIDS[@]}"; do
    for pid in $(ps -o pid= -s "$pid" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  done
  for u in "${USERS[@]}"; do
    for pid in $(ps -o pid= -u "$u" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    sleep 0.2
    userdel -r "$u" >/dev/null 2>&1 || userdel -f "$u" >/dev/null 2>&1
  done
  if [ -n "$T" ]; then rm -rf -- "$T"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

T=$(mktemp -d /tmp/thoth-mdm.XXXXXX)
chmod 0755 "$T"
tag="$$$(printf '%04x' $((RANDOM)))"

passed=0
failed=0
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
    echo "  ok    $what"
  else
    failed=$((failed + 1))
    echo "  FAIL  $what"
  fi
}

# --- fixtures -------------------------------------------------------------------------
# Root's side: the stub (install.sh's THOTH_BINARY), the stand-in for /usr/local/bin, a
# root file for links to aim at, the API key source (root-only), and the stub's log.
mkdir -m 0755 "$T/src" "$T/bin" "$T/victim" "$T/log" "$T/etc"
mkdir -m 0700 "$T/secret"
LOG="$T/log/stub.log"
SIDLOG="$T/log/sid.log"
: >"$LOG"
: >"$SIDLOG"
chmod 0666 "$LOG" "$SIDLOG"
cat >"$T/src/thoth" <<STUB
#!/bin/sh
# Stub thoth: records who ran it and how.
printf 'uid=%s home=%s enroll=%s argv=%s\n' "\$(id -u)" "\${HOME:-}" \\
  "\${THOTH_ENROLLMENT_SOURCE:-}" "\$*" >>"$LOG"
echo "uid=\$(id -u) sid=\$(ps -o sid= -p \$\$ | tr -d ' ')" >>"$SIDLOG"
case "\$1" in
  # Like the real one (one process), wrap-config reads the user's client files (a FIFO
  # blocks it).
  wrap-config) if [ -e "\$HOME/.claude.json" ]; then exec cat "\$HOME/.claude.json" >/dev/null; fi ;;
  health) case " \$* " in *" --jamf "*) echo "<result>stub</result>" ;; *) echo "thoth health: pass" ;; esac ;;
esac
exit 0
STUB
chmod 0755 "$T/src/thoth"
install -m 0755 "$T/src/thoth" "$T/bin/thoth"
printf 'root secret\n' >"$T/victim/file"
chmod 0644 "$T/victim/file"
printf '{"api_key":"k-%s"}\n' "$tag" >"$T/secret/key.json"
chmod 0600 "$T/secret/key.json"
KEY="$T/secret/key.json"

# mkuser NAME SCENARIO: a user whose home is $T/homes-SCENARIO/NAME (the only home there).
mkuser() {
  mkdir -p -m 0755 "$T/homes-$2"
  USERS+=("$1")
  useradd -m -d "$T/homes-$2/$1" -s /bin/sh -U "$1"
}
# as USER COMMAND...: the user plants their own traps.
as() { local u=$1; shift; (cd / && runuser -u "$u" -- "$@"); }
uid_of() { id -u "$1"; }
gid_of() { id -g "$1"; }
# lstat: never follows a link.
meta() { stat -c '%u:%g:%a:%F' -- "$1"; }
same() { [ "$1" = "$2" ]; }
home_of() { getent passwd "$1" | cut -d: -f6; }
# Nothing in the home (links not followed) is owned by uid 0 or group 0.
no_root_files() {
  local found
  found=$(find "$1" -xdev \( -uid 0 -o -gid 0 \) -print)
  [ -z "$found" ] || { printf '        root-owned: %s\n' $found; return 1; }
}
log_has() { grep -Eq -- "$1" "$LOG"; }
# install.sh never runs thoth as root: thoth reads the homes.
root_never_ran() { ! log_has '^uid=0 '; }
not_hung() { [ "$1" -ne 124 ] && [ "$1" -ne 137 ]; }
is_key() { # is_key PATH USER: the key's bytes, in a regular file of the user's, 0600
  [ -f "$1" ] && [ ! -L "$1" ] && cmp -s "$1" "$KEY" &&
    same "$(meta "$1")" "$(uid_of "$2"):$(gid_of "$2"):600:regular file"
}

# run SCRIPT ENV...: the script as root, in a session of its own, killed after 20 s; its
# output goes to a file, not a pipe, so a process left on a FIFO cannot hold us. Whatever
# is left in that session, or of the scenario's user, is killed afterwards.
run() {
  local script=$1 pid p
  shift
  : >"$LOG"
  : >"$SIDLOG"
  set +e
  (cd / && exec setsid -w timeout -k 5 20 env PATH="$MDM_PATH" "$@" "$MDM_SH" "$MDM_DIR/$script" "${args[@]}") \
    >"$T/out" 2>&1 </dev/null &
  pid=$!
  run_sid=$pid
  SIDS+=("$pid")
  wait "$pid"
  rc=$?
  set -e
  echo "  $script exit $rc"
  sed 's/^/  | /' "$T/out"
  if [ -s "$T/out" ] && [ -n "$(tail -c 1 "$T/out")" ]; then echo; fi
  # Zombies are not counted: reaping orphans is init's job (not every container's PID 1 does it).
  left=$( (ps -o pid=,stat= -s "$pid"; ps -o pid=,stat= -u "$u") 2>/dev/null | awk '$2 !~ /^Z/ {print $1}') || true
  if [ -n "$left" ]; then
    ps -o pid=,user=,args= -p "$(echo $left | tr ' ' ,)" | sed 's/^/  left: /' || true
  fi
  for p in $left; do
    kill -KILL "$p" 2>/dev/null || true
  done
}
# run_install SCENARIO [THOTH_BIN]: install.sh over $T/homes-SCENARIO.
run_install() {
  args=("$T/src/thoth" acme block)
  run install.sh THOTH_BIN="${2:-$T/bin/thoth}" \
    THOTH_MANAGED_SETTINGS_FILE="$T/etc/managed.json" \
    THOTH_TEST_HOMES_DIR="$T/homes-$1" \
    THOTH_ENROLLMENT_SOURCE=jamf THOTH_API_KEY_FILE_SOURCE="$KEY" \
    THOTH_INSTALL_USER_TIMEOUT=3
}
# run_jamf SCENARIO THOTH_BIN: the extension attribute over $T/homes-SCENARIO.
run_jamf() {
  args=()
  run jamf-extension-attribute.sh THOTH_BIN="$2" THOTH_TEST_HOMES_DIR="$T/homes-$1"
}

bin_before=$(meta "$T/bin"; meta "$T/bin/thoth"; ls -A "$T/bin"; cksum <"$T/bin/thoth")
victim_before=$(meta "$T/victim/file"; cksum <"$T/victim/file")
bin_unchanged() { same "$(meta "$T/bin"; meta "$T/bin/thoth"; ls -A "$T/bin"; cksum <"$T/bin/thoth")" "$bin_before"; }
victim_unchanged() { same "$(meta "$T/victim/file"; cksum <"$T/victim/file")" "$victim_before"; }

# --- legit: no traps ------------------------------------------------------------------
echo "install.sh, a home with no traps"
u="tmdm${tag}a"
mkuser "$u" legit
h=$(home_of "$u")
run_install legit
check "exits 0 in time" same "$rc" 0
check "~/.thoth is the user's directory, 0700" \
  same "$(meta "$h/.thoth")" "$(uid_of "$u"):$(gid_of "$u"):700:directory"
check "~/.thoth/proxy_api_key.json is the key, the user's, 0600" is_key "$h/.thoth/proxy_api_key.json" "$u"
check "no root-owned file in the home" no_root_files "$h"
check "the key is not printed" eval '! grep -q "k-$tag" "$T/out"'
check "wrap-config ran as the user, in their HOME" \
  log_has "^uid=$(uid_of "$u") home=$h enroll=[^ ]* argv=wrap-config --all --tenant-id acme$"
check "register ran as the user, enrollment jamf" \
  log_has "^uid=$(uid_of "$u") home=$h enroll=jamf argv=register$"
check "health ran as the user" log_has "^uid=$(uid_of "$u") home=$h enroll= argv=health$"
check "root never ran thoth" root_never_ran
check "the user's steps ran in a session of their own (no terminal of root's)" \
  eval 'grep -q . "$SIDLOG" && ! grep -q "sid=$run_sid\$" "$SIDLOG"'
check "managed.json is root's, 0644, with the tenant" \
  eval 'same "$(meta "$T/etc/managed.json")" "0:0:644:regular file" && grep -q "\"tenant_id\": \"acme\"" "$T/etc/managed.json"'
check "the stub landed at THOTH_BIN, root's, 0755" bin_unchanged

# --- ~/.thoth -> the directory holding thoth -----------------------------------------
echo "install.sh, ~/.thoth -> the directory holding thoth (stands in for /usr/local/bin)"
u="tmdm${tag}b"
mkuser "$u" link
h=$(home_of "$u")
as "$u" ln -s "$T/bin" "$h/.thoth"
run_install link
check "finishes in time" not_hung "$rc"
check "the directory and thoth keep root's owner and mode, nothing added" bin_unchanged
check "no root-owned file in the home" no_root_files "$h"
check "wrap-config and register still ran as the user" eval \
  'log_has "^uid=$(uid_of "$u") .*argv=wrap-config" && log_has "^uid=$(uid_of "$u") .*argv=register$"'
check "root never ran thoth" root_never_ran

# --- ~/.thoth/proxy_api_key.json -> a root file --------------------------------------
echo "install.sh, ~/.thoth/proxy_api_key.json -> a root file"
u="tmdm${tag}c"
mkuser "$u" keylink
h=$(home_of "$u")
as "$u" mkdir -m 0700 "$h/.thoth"
as "$u" ln -s "$T/victim/file" "$h/.thoth/proxy_api_key.json"
run_install keylink
check "finishes in time" not_hung "$rc"
check "the root file keeps its bytes, owner and mode" victim_unchanged
check "the link is replaced by the user's key, 0600" is_key "$h/.thoth/proxy_api_key.json" "$u"
check "the root file's bytes are not printed" eval '! grep -q "root secret" "$T/out"'
check "no root-owned file in the home" no_root_files "$h"

# --- FIFOs where something reads or writes -------------------------------------------
echo "install.sh, FIFOs at ~/.profile, ~/.bash_profile, ~/.claude.json and the key's path"
u="tmdm${tag}d"
mkuser "$u" fifo
h=$(home_of "$u")
as "$u" rm -f "$h/.profile" "$h/.bash_profile"
as "$u" mkfifo "$h/.profile" "$h/.bash_profile" "$h/.claude.json"
as "$u" mkdir -m 0700 "$h/.thoth"
as "$u" mkfifo "$h/.thoth/proxy_api_key.json"
run_install fifo
check "finishes in time (a stuck user step is stopped)" not_hung "$rc"
check "nothing is left running, root's or the user's" same "$left" ""
check "register still ran as the user after wrap-config got stuck" \
  log_has "^uid=$(uid_of "$u") home=$h enroll=jamf argv=register$"
check "the key replaced the FIFO, the user's, 0600" is_key "$h/.thoth/proxy_api_key.json" "$u"
check "no root-owned file in the home" no_root_files "$h"

# --- Jamf extension attribute ---------------------------------------------------------
# The script itself opens nothing in the homes; `thoth health --all-users` reads them as
# root (the stub does not: how the binary reads them is not this test's subject).
echo "jamf-extension-attribute.sh, ~/.thoth -> the directory holding thoth"
u="tmdm${tag}e"
mkuser "$u" jamf
h=$(home_of "$u")
as "$u" ln -s "$T/bin" "$h/.thoth"
as "$u" mkfifo "$h/.claude.json"
run_jamf jamf "$T/bin/thoth"
check "finishes in time, exit 0" same "$rc" 0
check "prints thoth's one <result> line" same "$(cat "$T/out")" "<result>stub</result>"
check "ran health --all-users --jamf Status as root" log_has '^uid=0 .*argv=health --all-users --jamf Status$'
check "the directory and thoth keep root's owner and mode" bin_unchanged
check "no root-owned file in the home" no_root_files "$h"

# What an older install.sh left behind after the ~/.thoth link: the user owns the
# directory holding thoth, so thoth is whatever the user put there.
echo "a thoth directory owned by a user (what the old install.sh left after the link)"
u="tmdm${tag}f"
mkuser "$u" userbin
mkdir -m 0755 "$T/userbin"
install -m 0755 "$T/src/thoth" "$T/userbin/thoth"
chown "$u" "$T/userbin" "$T/userbin/thoth"
run_jamf userbin "$T/userbin/thoth"
check "the extension attribute does not run it as root" eval '! log_has "^uid=0 "'
check "it reports one <result> line" eval 'grep -Eq "^<result>[^<]*</result>$" "$T/out" && [ "$(wc -l <"$T/out")" -eq 1 ]'
run_install userbin "$T/userbin/thoth"
check "install.sh does not run it as root either" root_never_ran

echo "mdm: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
