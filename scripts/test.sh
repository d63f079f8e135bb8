#!/usr/bin/env bash
# Sets up everything the tests need and runs them: ruff, mypy and pytest on the default
# python3, then pytest again on Python 3.8 (the oldest supported version) when it is
# installed. CI (.ci/run) runs exactly this script. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# Bytecode caches on, whatever the caller's environment says: the suite starts thousands of
# Python processes (nodes, CLIs, proxies), and without the caches each of them compiles
# every kachery module it imports again, about 0.07 CPU-s a start on this machine.
unset PYTHONDONTWRITEBYTECODE

setup_venv() {  # setup_venv DIR PYTHON
    local dir="$1" python="$2"
    if [ ! -x "$dir/bin/pytest" ] || ! "$dir/bin/python" -c 'import kachery_client' 2>/dev/null; then
        "$python" -m venv "$dir"
        "$dir/bin/python" -m pip install --quiet --upgrade pip
    fi
    # A venv made before the distribution was renamed holds it as kachery-client, which
    # provides the same kachery_client package: remove it, or the two would overlap.
    if "$dir/bin/python" -m pip show --quiet kachery-client >/dev/null 2>&1; then
        "$dir/bin/python" -m pip uninstall --quiet --yes kachery-client
    fi
    # Always (re)install: cheap when nothing changed, and picks up new dependencies.
    "$dir/bin/python" -m pip install --quiet -e ".[test]"
    # Compiled once here, not by the first test processes all at once.
    "$dir/bin/python" -m compileall -q kachery_core kachery_client kachery_cli \
        kachery_transports kachery_daemon >/dev/null
}

# Test processes at once (pytest-xdist; a test file stays on one worker, so its module
# fixtures are made once). Most tests wait on node processes they started, so more workers
# than the 2 cores keeps both busy. KACHERY_TEST_WORKERS=0 runs in one process; pytest
# arguments given to this script come after and may override -n.
WORKERS="${KACHERY_TEST_WORKERS:-4}"

# Processes of this checkout's test runs: nodes (`python .../kachery-daemon start`) and weed.
processes_of_this_checkout() {
    local here
    here="$(printf '%s' "$PWD" | sed 's/[].[^$*+?(){}|\\]/\\&/g')"
    pgrep -f -- "$here/\.venv[0-9]*/bin/(kachery-daemon|weed) " | sort || true
}

# run_pytest VENV ARGS...: pytest must pass and run tests (exit 5, "no tests collected", is a
# failure too), and must leave no node or weed process behind (the suite's own safety net
# kills and reports leaks; this catches one that escaped it, e.g. after pytest crashed).
run_pytest() {
    local venv="$1" before after leftovers rc=0
    shift
    before="$(processes_of_this_checkout)"
    local started=$SECONDS
    "$venv/bin/pytest" -q -n "$WORKERS" --dist loadfile "$@" || rc=$?
    echo "   ($venv: pytest took $((SECONDS - started)) s; $SECONDS s since the start)"
    after="$(processes_of_this_checkout)"
    leftovers="$(comm -13 <(echo "$before") <(echo "$after") | grep . || true)"
    if [ -n "$leftovers" ]; then
        echo "Error: pytest left processes running (killing them):" >&2
        ps -o pid=,args= -p "$(echo $leftovers | tr " " ,)" >&2 || true
        kill $leftovers 2>/dev/null || true
        sleep 2
        kill -KILL $leftovers 2>/dev/null || true
        [ "$rc" -ne 0 ] || rc=1
    fi
    if [ "$rc" -eq 5 ]; then
        echo "Error: pytest collected no tests" >&2
    fi
    return "$rc"
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

# The web page tests drive Debian's headless Chromium (tests/daemon/browser_fixtures.py).
# As root with apt-get and no chromium yet, install it; if that fails, those tests skip and
# say why.
install_chromium() {
    if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        return 0
    fi
    echo "== installing chromium and chromium-driver for the browser tests"
    local install="DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver"
    # a fresh machine may have no package lists yet: update them once and try again
    sh -c "$install" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && sh -c "$install" >/dev/null 2>&1; } \
        || echo "   (could not install them: the browser tests will skip)"
}

install_chromium
echo "== setting up .venv ($(python3 --version))"
setup_venv .venv python3
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest ($(.venv/bin/python --version))"
run_pytest .venv "$@"

if python38="$(find_python38)"; then
    echo "== setting up .venv38 ($("$python38" --version))"
    setup_venv .venv38 "$python38"
    echo "== pytest ($(.venv38/bin/python --version))"
    run_pytest .venv38 "$@"
elif [ "${CI:-}" = "true" ]; then
    echo "Error: Python 3.8 not found; CI must run the suite on the oldest supported version" >&2
    exit 1
else
    echo "== Python 3.8 not found: skipped the 3.8 run (CI runs it)"
fi
