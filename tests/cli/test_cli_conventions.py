"""The conventions of command-line tools, checked on real `kachery-client` processes:
Ctrl-C exits 130 and leaves no partial file; every `--help` ends with examples, and the
group's help shows each command's whole first line; `completion SHELL` prints a script the
shell accepts, and the completion protocol it installs lists the commands."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from conftest import command, write_random_file
from proxies import proxy_launcher

STALL_PROXY = str(Path(__file__).parent.parent / "stall_proxy.py")


def _files_below(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def _wait_for(condition, proc: subprocess.Popen, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.02)


def _interrupt(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    """Ctrl-C as a terminal sends it: SIGINT to the process; then its result."""
    try:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _assert_interrupted(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 130, done
    assert done.stderr.decode().splitlines() == ["Error: interrupted"], done
    assert done.stdout == b"", done


def test_ctrl_c_during_a_store_exits_130_and_leaves_no_partial_file(
    kenv: Dict[str, str], tmp_path: Path
) -> None:
    storage = Path(kenv["KACHERY_STORAGE_DIR"])
    proc = subprocess.Popen(
        [command("kachery-client"), "store-file", "-"],
        env=kenv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(os.urandom(3 << 20))  # part of the stream; the rest never comes
    proc.stdin.flush()
    _wait_for(lambda: _files_below(storage) != [], proc, "started staging the stream")
    assert any(name.startswith("tmp/") for name in _files_below(storage))  # mid-store
    done = _interrupt(proc)
    proc.stdin.close()
    _assert_interrupted(done)
    assert _files_below(storage) == []  # neither the staging file nor an object


@pytest.fixture
def start_proxy() -> Iterator:
    with proxy_launcher(STALL_PROXY) as start:
        yield start


def test_ctrl_c_during_a_load_exits_130_and_leaves_no_partial_file(
    cli, kenv: Dict[str, str], node, start_proxy, tmp_path: Path
) -> None:
    data = write_random_file(tmp_path / "recording.bin", 5 << 20)
    stored = cli("store-file", str(data))
    assert stored.returncode == 0, stored
    uri = stored.stdout.strip()
    stalled = tmp_path / "stalled"
    port = start_proxy(node.port, uri.split("/")[2], stalled)
    token = cli(
        "token", "create", "--label", "laptop", "--scope", "read",
        "--storage-dir", str(node.storage_dir), program="kachery-daemon",
    )  # fmt: skip
    assert token.returncode == 0, token
    cache, out = tmp_path / "laptop-cache", tmp_path / "out"
    out.mkdir()
    env = dict(
        kenv,
        KACHERY_BACKEND="remote",
        KACHERY_DAEMON_HOST="127.0.0.1",
        KACHERY_DAEMON_PORT=str(port),
        KACHERY_STORAGE_DIR=str(cache),
        KACHERY_AUTH_TOKEN=token.stdout.strip(),
    )
    proc = subprocess.Popen(
        [command("kachery-client"), "load-file", uri, "--dest", str(out / "copy.bin")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _wait_for(stalled.exists, proc, "got half of the download")
    assert any(name.startswith("tmp/") for name in _files_below(cache))  # half written
    _assert_interrupted(_interrupt(proc))
    assert _files_below(cache) == []  # neither the half download nor an object
    assert _files_below(out) == []


def _commands_section(help_text: str) -> List[str]:
    lines = help_text.split("\nCommands:\n", 1)[1].splitlines()
    return [line for line in lines if line.strip()]


def _command_names(cli) -> List[str]:
    shown = cli("--help")
    assert shown.returncode == 0, shown
    return [line.split()[0] for line in _commands_section(shown.stdout) if line[2:3] != " "]


def test_the_group_help_shows_every_command_s_whole_first_line(cli) -> None:
    shown = cli("--help")
    assert shown.returncode == 0, shown
    section = _commands_section(shown.stdout)
    assert not [line for line in section if "..." in line], shown.stdout
    text = " ".join(" ".join(section).split())
    assert (
        "Store a copy of each PATH (- for stdin) and print its URI, one per line, in order." in text
    )
    assert {"store-file", "load-file", "completion", "verify"} <= set(_command_names(cli))


def test_every_command_help_ends_with_examples(cli) -> None:
    names = _command_names(cli)
    assert len(names) >= 13, names
    for name in names:
        shown = cli(name, "--help")
        assert shown.returncode == 0, (name, shown)
        tail = shown.stdout.rstrip().split("\n\n")[-1].splitlines()
        assert tail[0].strip() in ("Example:", "Examples:"), (name, shown.stdout)
        assert 2 <= len(tail) <= 3, (name, tail)
        assert all(
            line.strip().startswith(("kachery-client ", "KACHERY_", "echo ")) for line in tail[1:]
        ), tail
        assert name in " ".join(tail[1:]), (name, tail)
    alias = cli("--help", program="kachery-store")  # the short commands too
    assert "kachery-client store-file data.bin" in alias.stdout, alias


def test_completion_prints_a_script_bash_accepts(cli, tmp_path: Path) -> None:
    for shell in ("bash", "zsh", "fish"):
        printed = cli("completion", shell)
        assert printed.returncode == 0, printed
        assert "_KACHERY_CLIENT_COMPLETE" in printed.stdout, (shell, printed)
    script = tmp_path / "kachery-client.bash"
    script.write_text(cli("completion", "bash").stdout)
    bash = shutil.which("bash")
    assert bash, "bash is needed to check the script"
    checked = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stderr == "", checked
    wrong = cli("completion", "tcsh")
    assert wrong.returncode == 2 and "tcsh" in wrong.stderr, wrong


def test_the_completion_protocol_lists_commands_and_options(cli, kenv: Dict[str, str]) -> None:
    """What the installed script asks the program, by the same environment variables."""

    def complete(words: str, cword: int) -> List[str]:
        env = dict(
            kenv, _KACHERY_CLIENT_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(cword)
        )
        done = cli(env=env)
        assert done.returncode == 0, done
        return done.stdout.splitlines()

    commands = complete("kachery-client ", 1)
    for name in ("plain,store-file", "plain,load-file", "plain,completion", "plain,info"):
        assert name in commands, commands
    assert complete("kachery-client lo", 1) == ["plain,load-file"]
    assert "plain,--dest" in complete("kachery-client load-file URI --d", 3)
    assert complete("kachery-client completion ", 2) == ["plain,bash", "plain,zsh", "plain,fish"]
