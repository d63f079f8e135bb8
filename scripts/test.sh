#!/usr/bin/env bash
# Sets up everything the tests need and runs them: ruff, mypy and pytest on the default
# python3, then pytest again on Python 3.8 (the oldest supported version) when it is
# installed. CI (.ci/run) runs exactly this script. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

setup_venv() {  # setup_venv DIR PYTHON
    local dir="$1" python="$2"
    if [ ! -x "$dir/bin/pytest" ] || ! "$dir/bin/python" -c 'import kachery_client' 2>/dev/null; then
        "$python" -m venv "$dir"
        "$dir/bin/python" -m pip install --quiet --upgrade pip
    fi
    # Always (re)install: cheap when nothing changed, and picks up new dependencies.
    "$dir/bin/python" -m pip install --quiet -e ".[test]"
}

find_python38() {
    local candidate
    for candidate in python3.8 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.8*/bin/python3.8; do
        if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 8))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

echo "== setting up .venv ($(python3 --version))"
setup_venv .venv python3
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest ($(.venv/bin/python --version))"
.venv/bin/pytest -q "$@"

if python38="$(find_python38)"; then
    echo "== setting up .venv38 ($("$python38" --version))"
    setup_venv .venv38 "$python38"
    echo "== pytest ($(.venv38/bin/python --version))"
    .venv38/bin/pytest -q "$@"
elif [ "${CI:-}" = "true" ]; then
    echo "Error: Python 3.8 not found; CI must run the suite on the oldest supported version" >&2
    exit 1
else
    echo "== Python 3.8 not found: skipped the 3.8 run (CI runs it)"
fi
