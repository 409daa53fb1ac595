#!/usr/bin/env bash
# Installs what the suite needs and runs all of it. First a smoke test of the README's run
# command as a user would run it (fresh environment, no test extra: a missing runtime
# dependency fails here), then .venv from the test lock, then the suite (scripts/suite.sh):
# lint, types, architecture contracts, the tests on SQLite, the database tests on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/smoke.sh

PY=${PYTHON:-python3}
echo "== installing the test environment (.venv) from requirements/test.txt"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements/test.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .

exec bash scripts/suite.sh .venv
