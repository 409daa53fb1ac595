#!/usr/bin/env bash
# Installs microcred the way a user does, in a fresh virtual environment without the test
# extra, then starts the demo and launches as a learner over HTTP (scripts/smoke.py).
#
#   bash scripts/smoke.sh            the README's run command: from the lock (requirements/runtime.txt)
#   bash scripts/smoke.sh --latest   `pip install .` with no lock: the newest versions pyproject allows
#
# scripts/test.sh runs the first form before anything else, so a runtime dependency that is
# missing from pyproject.toml or the lock fails CI even when the test extra would bring it.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=$(mktemp -d "${TMPDIR:-/tmp}/microcred-smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
VENV=$WORK/venv
LOG=$WORK/install.log

if [ "${1:-}" = --latest ]; then
  HOW="pip install . (no lock)"
  INSTALL="python3 -m venv $VENV && $VENV/bin/pip install --upgrade --upgrade-strategy eager ."
else
  # The README's first command as written, less its last step (`microcred demo`, which
  # smoke.py starts on free ports), with the environment in $WORK instead of .venv.
  README_CMD=$(grep -m1 '^python3 -m venv .venv && ' README.md || true)
  case $README_CMD in
    *' && .venv/bin/microcred demo') ;;
    *) echo "smoke: FAILED: README.md has no run command of the form" \
            "'python3 -m venv .venv && ... && .venv/bin/microcred demo' (found: '$README_CMD')." \
            "Keep the README's first command on one line in that form: CI runs it." >&2
       exit 1 ;;
  esac
  INSTALL=${README_CMD% && .venv/bin/microcred demo}
  INSTALL=${INSTALL//.venv/$VENV}
  HOW="the README's run command"
fi

echo "== smoke: installing as a user would ($HOW) into a fresh virtual environment"
start=$SECONDS
if ! (export PIP_DISABLE_PIP_VERSION_CHECK=1; eval "$INSTALL") >"$LOG" 2>&1; then
  tail -n 30 "$LOG" | sed 's/^/    /'
  echo "smoke: FAILED: the install failed (its last lines are above): $INSTALL" >&2
  echo "what to do: if pip reports a hash or version conflict, refresh the lock:" \
       "bash scripts/lock.sh, and commit requirements/*.txt." >&2
  exit 1
fi
echo "   installed in $((SECONDS - start)) s"
if ! "$VENV/bin/pip" check >"$LOG" 2>&1; then
  sed 's/^/    /' "$LOG"
  echo "smoke: FAILED: the installed packages do not satisfy each other's requirements (above)." >&2
  echo "what to do: bash scripts/lock.sh, and commit requirements/*.txt." >&2
  exit 1
fi
"$VENV/bin/python" scripts/smoke.py --microcred "$VENV/bin/microcred"
