#!/usr/bin/env bash
# Canary for upstream releases: the newest versions that pyproject.toml's caps allow, no lock.
# Smoke-tests a user's `pip install .`, then installs the test extra into a fresh .venv-latest
# and runs the same suite as scripts/test.sh. Failing here while scripts/test.sh passes means
# an upstream release within the caps broke something: fix the code or tighten the cap, then
# `bash scripts/lock.sh --upgrade`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/smoke.sh --latest

VENV=.venv-latest
rm -rf "$VENV"
"${PYTHON:-python3}" -m venv "$VENV"
echo "== installing the newest allowed versions into $VENV (no lock)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade --upgrade-strategy eager -e ".[test]"
"$VENV/bin/python" -m pip list --disable-pip-version-check --format=freeze \
  | grep -iE '^(sqlalchemy|uvicorn|pylti1p3|pyld|python-jose|fastapi|starlette|pydantic|sqlmodel|httpx)=' \
  | sed 's/^/   /'

exec bash scripts/suite.sh "$VENV"
