#!/usr/bin/env bash
# The suite, in the virtual environment given (default .venv): lint, types, architecture
# contracts, the tests on SQLite, then the database tests again on PostgreSQL.
# scripts/test.sh (the locked environment) and scripts/test-latest.sh (the newest versions)
# install the environment and then run this; it installs nothing into it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}

# Browser tests drive Debian's Chromium (no browser download at test time).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing chromium for the browser tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# The deploy files' proxy (deploy/Caddyfile) runs in front of a server in tests/test_proxy.py.
if ! command -v caddy >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing caddy for the deploy proxy test"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq caddy >/dev/null \
    || echo "   apt-get could not install caddy: the proxy test will be skipped"
  # Debian's package starts a system service on port 80; the test runs its own
  command -v systemctl >/dev/null && systemctl disable --now caddy >/dev/null 2>&1 || true
fi

# The real-Moodle lane runs Moodle 5.1 on Debian's PHP 8.2 (the modules Moodle needs).
if [ "${MICROCRED_MOODLE_LANE:-1}" = 1 ] && ! command -v php >/dev/null \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing PHP for the real-Moodle lane"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    php8.2-cli php8.2-pgsql php8.2-xml php8.2-mbstring php8.2-curl php8.2-zip php8.2-gd \
    php8.2-intl php8.2-soap php8.2-opcache php8.2-readline php8.2-bcmath >/dev/null \
    || echo "   apt-get could not install PHP: the real-Moodle lane will be skipped"
fi

# The independent verifier (@digitalbazaar/vc, what the DCC verifier is built on) checks
# our credentials in tests/issuer/test_js_interop.py; npm packages come from the registry.
if command -v npm >/dev/null && [ ! -d bench/.work/node_modules/@digitalbazaar/vc ]; then
  echo "== installing the JS verifier for the interoperability test"
  mkdir -p bench/.work && cp bench/js/package.json bench/js/*.mjs bench/.work/
  (cd bench/.work && npm install --no-audit --no-fund --silent) \
    || echo "   npm install failed: the interoperability test will be skipped"
fi

export PATH="$PWD/$VENV/bin:$PATH"
# property and fuzz tests with a fixed seed (tests/conftest.py); plain `pytest` explores
export HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci}
echo "== ruff";           ruff check . && ruff format --check .
echo "== mypy";           mypy
echo "== import-linter";  lint-imports
echo "== pytest (SQLite)"
pytest -q -p no:cacheprovider --cov=service/assessment --cov-branch --cov-report=term-missing --cov-fail-under=100

if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "== pytest (PostgreSQL: database tests and PostgreSQL-only tests)"
  MICROCRED_TEST_DB=postgresql pytest -q -p no:cacheprovider -m "db or postgres"
else
  echo "== SKIPPED the PostgreSQL lane: no PostgreSQL on 127.0.0.1:5432 (CI has one)."
fi

# The real-Moodle lane (tests/moodle): a fresh Moodle 5.1 from ../shared/moodle/ beside the
# checkout (or MICROCRED_MOODLE_TARBALL), PHP 8.2 (installed above when missing and root),
# its own PostgreSQL database (dropped afterwards), microcred served beside it, Chromium
# between. It runs by default (CI has all of these); MICROCRED_MOODLE_LANE=0 turns it off.
# When something it needs is missing it is skipped, and this says what.
if [ "${MICROCRED_MOODLE_LANE:-1}" = 1 ]; then
  missing=$(python -c 'from tests.moodle import rig; print(rig.unavailable() or "")')
  if [ -z "$missing" ] && [ ! -x /usr/bin/chromium ]; then missing="no Chromium at /usr/bin/chromium"; fi
  if [ -n "$missing" ]; then
    echo "== SKIPPED the real-Moodle lane: $missing (CI has it)."
  else
    echo "== pytest (real Moodle: tests/moodle)"
    MICROCRED_MOODLE_LANE=1 pytest -q -p no:cacheprovider -rs -m moodle tests/moodle
  fi
else
  echo "== SKIPPED the real-Moodle lane: MICROCRED_MOODLE_LANE=0."
fi
