#!/usr/bin/env bash
# Sets up everything the tests need and runs them: ruff, mypy and pytest on the default
# python3, and pytest on Python 3.8 (the oldest supported version) when it is installed.
# The two pytest runs go at the same time (most tests wait on processes they started, so
# one run alone leaves the cores partly idle); each writes to its own log, shown when it
# ends. CI (.ci/run) runs exactly this script. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

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
}

# Test processes at once per pytest run (pytest-xdist; a test file stays on one worker, so
# its module fixtures are made once). Most tests wait on node processes they started, so the
# two runs' 3 workers each keep 2 cores busy. KACHERY_TEST_WORKERS=0 runs each in one
# process; pytest arguments given to this script come after and may override -n.
WORKERS="${KACHERY_TEST_WORKERS:-3}"

# Processes of this checkout's test runs in venv $1: nodes (`python .../kachery-daemon
# start`) and weed. Per venv: the other Python's run, going at the same time, has its own.
processes_of_this_checkout() {
    local here
    here="$(printf '%s' "$PWD/$1" | sed 's/[].[^$*+?(){}|\\]/\\&/g')"
    pgrep -f -- "$here/bin/(kachery-daemon|weed) " | sort || true
}

# run_pytest VENV ARGS...: pytest must pass and run tests (exit 5, "no tests collected", is a
# failure too), and must leave no node or weed process behind (the suite's own safety net
# kills and reports leaks; this catches one that escaped it, e.g. after pytest crashed).
# pytest goes in the background so that a SIGTERM (from stop_runs below) can be passed on:
# pytest then tears its fixtures down. Ctrl-C reaches pytest by itself. A command started
# with & in a script ignores SIGINT, and so would every process it starts; SIGINT goes back
# to its default first, or the tests that press Ctrl-C on a CLI would see it ignored.
run_pytest() {
    local venv="$1" before after leftovers rc=0
    shift
    before="$(processes_of_this_checkout "$venv")"
    "$venv/bin/python" -c "$SIGINT_BACK" "$venv/bin/pytest" -q -n "$WORKERS" --dist loadfile "$@" &
    pytest_pid=$!
    trap 'kill -TERM "$pytest_pid" 2>/dev/null || true' TERM
    trap ':' INT
    while :; do  # a trapped signal ends `wait` early: wait again until pytest has ended
        wait "$pytest_pid" && rc=0 || rc=$?
        kill -0 "$pytest_pid" 2>/dev/null || break
    done
    trap 'exit 143' TERM
    trap 'interrupted=1; exit 130' INT
    after="$(processes_of_this_checkout "$venv")"
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

SIGINT_BACK='import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])'

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

# Jobs in the background: in_background NAME COMMAND... runs COMMAND with its output in
# $logs/NAME.log; finish NAME waits for it, shows the log and returns its status.
logs="$(mktemp -d "${TMPDIR:-/tmp}/kachery-test-logs.XXXXXX")"
declare -A job_pid=()
in_background() {
    local name="$1"
    shift
    "$@" >"$logs/$name.log" 2>&1 &
    job_pid[$name]=$!
}
finish() {
    local rc=0
    wait "${job_pid[$1]}" || rc=$?
    unset "job_pid[$1]"
    cat "$logs/$1.log"
    return "$rc"
}
# On Ctrl-C, a kill or an early exit: stop the jobs still running (after Ctrl-C, which each
# pytest got too, only wait for them), let each pytest tear down what it started, and show
# what they wrote.
interrupted=""
stop_runs() {
    local name
    for name in "${!job_pid[@]}"; do
        if [ -z "$interrupted" ] || [ "$name" = setup38 ]; then
            kill -TERM "${job_pid[$name]}" 2>/dev/null || true
        fi
    done
    for name in "${!job_pid[@]}"; do
        echo "== stopped $name:"
        finish "$name" || true
    done
}
trap 'stop_runs; rm -rf "$logs"' EXIT
trap 'exit 143' TERM
trap 'interrupted=1; exit 130' INT

install_chromium
echo "== setting up .venv ($(python3 --version))"
setup_venv .venv python3
# The 3.8 venv is made while ruff and mypy run (not beside the .venv install: both
# `pip install -e .` write the checkout's egg-info).
if python38="$(find_python38)"; then
    echo "== setting up .venv38 ($("$python38" --version)) in the background"
    in_background setup38 setup_venv .venv38 "$python38"
elif [ "${CI:-}" = "true" ]; then
    echo "Error: Python 3.8 not found; CI must run the suite on the oldest supported version" >&2
    exit 1
fi
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
if [ -z "$python38" ]; then
    echo "== Python 3.8 not found: skipped the 3.8 run (CI runs it)"
    echo "== pytest ($(.venv/bin/python --version))"
    run_pytest .venv "$@"
    exit 0
fi
if ! finish setup38; then
    echo "Error: setting up .venv38 failed (its output is above)" >&2
    exit 1
fi
# Both runs at once, each with its own port slices (tests/ports.py): 3.8's workers start 10
# slices up. Each log is shown when its run ends, the first to end first.
vmain="$(.venv/bin/python --version)" v38="$(.venv38/bin/python --version)"
echo "== pytest ($vmain) and pytest ($v38) at the same time (logs, while they run: $logs)"
KACHERY_TEST_FIRST_SLICE=0 in_background pytest run_pytest .venv "$@"
KACHERY_TEST_FIRST_SLICE=10 in_background pytest38 run_pytest .venv38 "$@"
failed=""
while [ "${#job_pid[@]}" -gt 0 ]; do
    for name in "${!job_pid[@]}"; do
        if ! kill -0 "${job_pid[$name]}" 2>/dev/null; then
            label="$vmain"
            [ "$name" = pytest38 ] && label="$v38"
            echo "== pytest ($label) ended:"
            finish "$name" || failed="$failed $label"
        fi
    done
    [ "${#job_pid[@]}" -eq 0 ] || sleep 1
done
if [ -n "$failed" ]; then
    echo "Error: pytest failed on$failed (its output is above)" >&2
    exit 1
fi
