#!/usr/bin/env bash
# Fails, naming file and line, when a file of the repository refers to something outside it that another machine
# would not have: the folder `shared` beside the checkout (a relative path climbing out of the repository into it),
# or an absolute path under the home directories (root's, those under /home and /Users) or the work directory
# (/work) of the machine it was written on.
#
# What it reads: every git-tracked file (the working-tree content), or, outside a git checkout, every file but
# build outputs and installed dependencies. Skipped: lock files (Cargo.lock, package-lock.json: generated, and they
# name registry URLs only) and binary files. This script is checked like any other file: its patterns are put
# together from pieces so that it does not match them itself.
#
# Not flagged: paths under /tmp. Every Unix machine has /tmp, so such a path is not tied to one machine; the tests
# create their own temporary directories (std::env::temp_dir, mktemp) and remove them, and the fixed /tmp paths in
# the repository are strings fed to parsers in unit tests. System paths such as /usr/bin/chromium are not flagged
# either: they name what a Debian package installs, on any machine.
#
# Usage: tests/self_contained.sh        (run by tests/run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

# A path starts at the beginning of a line or after a character that cannot be part of a longer path or URL
# (so a URL such as https://example.com/home/ is not taken for a home directory).
up='\.\./'
roots='work|root|home|Users'
pattern="(${up}shared)|((^|[^A-Za-z0-9_.~/-])/(${roots})/)"

# Prints file:line:text for every offending line of the files named on stdin (NUL-separated); 0 when none.
scan() {
  local hits=0 file
  while IFS= read -r -d '' file; do
    case "$file" in
      *Cargo.lock | *package-lock.json) continue ;;
    esac
    [ -f "$file" ] || continue
    # -I: binary files have no lines to cite.
    if grep -nIHE -e "$pattern" -- "$file"; then
      hits=$((hits + 1))
    fi
  done
  return $((hits > 0))
}

# The check itself must be able to fail: a planted reference is found, and a harmless line is not.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'see ../%s/data\n' shared >"$probe/bad1"
printf 'path = "/%s/someone/x"\n' home >"$probe/bad2"
printf 'https://example.com/%s/ and /tmp/k.sock and /usr/bin/chromium\n' home >"$probe/good"
for planted in bad1 bad2; do
  if printf '%s\0' "$probe/$planted" | scan >/dev/null; then
    echo "self_contained.sh is broken: it did not flag $planted" >&2
    exit 2
  fi
done
if ! printf '%s\0' "$probe/good" | scan >/dev/null; then
  echo "self_contained.sh is broken: it flagged a harmless line" >&2
  exit 2
fi

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  list() { git ls-files -z; }
else
  list() {
    find . \( -name target -o -name node_modules -o -name .venv -o -name .git \) -prune -o -type f -print0 |
      sed -z 's|^\./||'
  }
fi
if ! list | scan; then
  echo "the lines above refer to files outside the repository or to paths of one machine;" \
    "the repository must work from a clone anywhere (see tests/self_contained.sh)" >&2
  exit 1
fi
echo "self-contained: no references outside the repository"
