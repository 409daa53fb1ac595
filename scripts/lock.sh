#!/usr/bin/env bash
# Refreshes the locks from pyproject.toml: requirements/runtime.txt (what the README's run
# command and deploy/Dockerfile install) and requirements/test.txt (runtime + the `test`
# extra, what scripts/test.sh installs). Exact versions with hashes, resolved for
# CPython 3.11 on Linux x86_64 (CI's and the Docker image's target).
#
#   bash scripts/lock.sh             keep the pins that still fit pyproject.toml, add what is new
#   bash scripts/lock.sh --upgrade   move every pin to the newest version pyproject.toml allows
#
# Any other argument is passed to `uv pip compile` (e.g. --upgrade-package sqlalchemy).
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
TOOLS=.venv-lock
if [ ! -x "$TOOLS/bin/uv" ] || [ "$("$TOOLS/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  echo "== installing uv $UV_VERSION into $TOOLS"
  "${PYTHON:-python3}" -m venv "$TOOLS"
  "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
fi

compile() {
  "$TOOLS/bin/uv" pip compile pyproject.toml --quiet --generate-hashes \
    --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
    --custom-compile-command "bash scripts/lock.sh" "$@"
}
mkdir -p requirements
# Runtime and test tools are resolved together first, then the runtime lock takes its pins
# from that resolution: both environments run the same libraries, and a test tool that needs
# another version of a runtime package moves both locks instead of failing.
echo "== requirements/test.txt"
compile --extra test -o requirements/test.txt "$@"
echo "== requirements/runtime.txt"
compile -c requirements/test.txt -o requirements/runtime.txt "$@"
echo "Locks written; commit requirements/*.txt with the pyproject.toml change."
