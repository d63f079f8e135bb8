"""Runs the examples of a Markdown page, so the docs cannot drift from what kachery does.

What runs:
- every ```console block: each `$ ` line is a command (a line ending in `\\` continues it,
  and a here-document's lines up to its end word belong to it); the lines after it, up to
  the next `$ `, are its expected output (stdout and stderr, in order). A line that is
  exactly `...` stands for any number of lines, and `...` inside a line for any text (for
  hashes, paths and ports that differ from run to run). A command may fail (exit status
  other than 0) only when its shown output has a line starting with `Error:`. A command
  ending in `&` runs in the background until the page is done; the runner waits for its
  first line of output (a node prints its address once it listens).
- every ```python block, as a script (its `assert`s are its checks).

Blocks of one page run in order, in one working directory and one shell state: a variable
set by one command (`$ URI=$(kachery-client store-file data.bin)`) and the current
directory carry over to the next. A block preceded by the line `<!-- not run: REASON -->`
is skipped and counted; `<!-- not run: REASON | stand-in: COMMAND -->` runs COMMAND in its
place (for a step on another machine whose effect later blocks need; it must succeed
silently). One preceded by `<!-- needs: MODULE ... -->` is skipped (and counted)
only when one of those Python modules cannot be imported here. Shell examples must be ```console blocks: a ```bash, ```sh or
```shell block is an error, as it would escape the checks.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

RUN_KINDS = ("console", "python")
FORBIDDEN_KINDS = ("bash", "sh", "shell", "zsh")
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(.+?)\s*-->\s*$")
NEEDS = re.compile(r"^<!--\s*needs:\s*(.+?)\s*-->\s*$")
FENCE = re.compile(r"^```(\S*)\s*$")
HEREDOC = re.compile(r"<<-?\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)['\"]?")
BACKGROUND = re.compile(r"(?<![&|])&\s*(#.*)?$")
COMMAND_TIMEOUT = 300.0
BACKGROUND_READY_TIMEOUT = 60.0

# Variables of bash itself, which must not be carried from one command to the next.
_SHELL_OWN = (
    r"BASH[A-Z_0-9]*|FUNCNAME|PIPESTATUS|SHLVL|PWD|OLDPWD|_|COLUMNS|LINES|HIST[A-Z]*|IFS|"
    r"PS[0-9]|RANDOM|SRANDOM|SECONDS|LINENO|EPOCH[A-Z]*|DIRSTACK|GROUPS|OPTIND|OPTERR|__rc|DOC_[A-Z]*"
)
_WRAPPER = """\
set +e
[ -f "$DOC_STATE" ] && source "$DOC_STATE"
cd "$(cat "$DOC_CWD")" || exit 99
source "$DOC_COMMAND"
__rc=$?
pwd > "$DOC_CWD"
declare -p | grep -Ev '^declare -[^ ]*r' | grep -Ev '^declare -[^ ]* (SHELL_OWN)(=|$)' \
    > "$DOC_STATE.new"
mv "$DOC_STATE.new" "$DOC_STATE"
exit $__rc
""".replace("SHELL_OWN", _SHELL_OWN)


class DocError(AssertionError):
    """An example whose output or exit status is not what the page shows."""


@dataclass
class Block:
    kind: str
    text: str
    line: int  # of the opening fence, 1-based
    skip_reason: Optional[str] = None
    needs: List[str] = field(default_factory=list)


@dataclass
class Command:
    text: str
    expected: List[str]
    line: int


@dataclass
class Report:
    ran: int = 0
    skipped: List[str] = field(default_factory=list)


def blocks_of(path: Path) -> List[Block]:
    """The fenced blocks of a page, with the reason given when one is not to be run."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: List[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        kind, start = opening.group(1).lower(), i
        i += 1
        body: List[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise DocError(f"{path}:{start + 1}: a code block is never closed")
        i += 1
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        reason, needs = NOT_RUN.match(before.strip()), NEEDS.match(before.strip())
        blocks.append(
            Block(
                kind,
                "\n".join(body) + "\n",
                start + 1,
                reason.group(1) if reason else None,
                needs.group(1).split() if needs else [],
            )
        )
    return blocks


def commands_of(block: Block, where: str) -> List[Command]:
    """The `$ ` commands of a console block, each with the output shown after it."""
    commands: List[Command] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            raise DocError(f"{where}:{block.line + 1 + i}: output before the first `$ ` command")
        text, number = line[2:], block.line + 1 + i
        i += 1
        while text.endswith("\\") and i < len(lines):
            text += "\n" + lines[i]
            i += 1
        heredoc = HEREDOC.search(text)
        if heredoc:
            while i < len(lines):
                text += "\n" + lines[i]
                i += 1
                if lines[i - 1].strip() == heredoc.group(1):
                    break
        expected: List[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        commands.append(Command(text, expected, number))
    return commands


def output_pattern(expected: List[str]) -> re.Pattern[str]:
    """A regex for the shown output: `...` alone is any lines, inside a line any text."""
    parts: List[str] = []
    for line in expected:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            pieces = [re.escape(p) for p in line.rstrip().split("...")]
            parts.append("[^\n]*?".join(pieces) + r"[ \t]*\n")
    return re.compile("".join(parts), re.DOTALL)


def normalized(output: str) -> str:
    lines = [line.rstrip() for line in output.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "".join(line + "\n" for line in lines)


class DocSession:
    """One page's working directory, shell state and background processes."""

    def __init__(self, page: Path, workdir: Path, scratch: Path, env: Dict[str, str]) -> None:
        self.page, self.workdir, self.scratch, self.env = page, workdir, scratch, dict(env)
        self.background: List[subprocess.Popen] = []
        self.logs: List[Path] = []
        self.cwd_file = scratch / "cwd"
        self.cwd_file.write_text(str(workdir))
        self.state = scratch / "state.sh"
        self.wrapper = scratch / "wrapper.sh"
        self.wrapper.write_text(_WRAPPER)
        self.count = 0

    def _shell_env(self, command_file: Path) -> Dict[str, str]:
        env = dict(self.env)
        env.update(
            DOC_STATE=str(self.state), DOC_CWD=str(self.cwd_file), DOC_COMMAND=str(command_file)
        )
        return env

    def _command_file(self, text: str) -> Path:
        self.count += 1
        path = self.scratch / f"command-{self.count}.sh"
        path.write_text(text + "\n")
        return path

    def run_command(self, command: Command) -> None:
        where = f"{self.page.name}:{command.line}"
        if BACKGROUND.search(command.text):
            self._start_background(command, where)
            return
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", str(self.wrapper)],
            env=self._shell_env(self._command_file(command.text)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=COMMAND_TIMEOUT,
            cwd=str(self.workdir),
        )
        actual = normalized(done.stdout.decode("utf-8", "replace"))
        shown = "\n".join(command.expected)
        if not output_pattern([line for line in command.expected if line.strip()]).fullmatch(
            actual
        ):
            raise DocError(
                f"{where}: `{command.text}` printed\n{actual}\nbut the page shows\n{shown}"
            )
        shows_error = any(line.startswith("Error:") for line in command.expected)
        if done.returncode != 0 and not shows_error:
            raise DocError(f"{where}: `{command.text}` exited {done.returncode}\n{actual}")
        if done.returncode == 0 and shows_error:
            raise DocError(f"{where}: `{command.text}` shows an error but exited 0\n{actual}")

    def _start_background(self, command: Command, where: str) -> None:
        if command.expected:
            raise DocError(f"{where}: a background command shows no output")
        text = BACKGROUND.sub("", command.text)
        log = self.scratch / f"background-{len(self.logs) + 1}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["bash", "--noprofile", "--norc", str(self.wrapper)],
                env=self._shell_env(self._command_file(f"exec {text}")),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(self.workdir),
                start_new_session=True,
            )
        self.background.append(proc)
        deadline = time.monotonic() + BACKGROUND_READY_TIMEOUT
        while not log.read_bytes().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise DocError(f"{where}: `{text}` printed nothing (exit {proc.poll()})")
            time.sleep(0.1)
        if proc.poll() is not None:
            raise DocError(f"{where}: `{text}` ended: {log.read_text(errors='replace')}")

    def exported_env(self) -> Dict[str, str]:
        """The environment with the variables the page's commands exported."""
        path = self._command_file("env -0")
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", str(self.wrapper)],
            env=self._shell_env(path),
            capture_output=True,
            timeout=60,
            cwd=str(self.workdir),
        )
        pairs = (item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
        env = {key: value for key, value in pairs if not key.startswith("DOC_")}
        env.pop("PWD", None)
        return env

    def run_python(self, block: Block, python: str) -> None:
        self.count += 1
        script = self.scratch / f"example-{self.count}.py"
        script.write_text(block.text)
        cwd = self.cwd_file.read_text().strip()
        done = subprocess.run(
            [python, str(script)],
            env=self.exported_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            cwd=cwd,
        )
        if done.returncode:
            raise DocError(
                f"{self.page.name}:{block.line}: the Python example failed "
                f"(exit {done.returncode}):\n{done.stderr.decode(errors='replace')[-3000:]}"
            )

    def close(self) -> List[str]:
        """Stops every background process (its whole process group); their logs."""
        for proc in self.background:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
        for proc in self.background:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            _signal_group(proc.pid, signal.SIGKILL)  # anything its group still holds
        return [log.read_text(errors="replace") for log in self.logs]


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _missing_modules(names: List[str], python: str) -> List[str]:
    return [
        name
        for name in names
        if subprocess.run([python, "-c", f"import {name}"], capture_output=True).returncode
    ]


def run_page(page: Path, workdir: Path, scratch: Path, env: Dict[str, str], python: str) -> Report:
    """Runs every example of `page` in order; raises DocError at the first that fails."""
    report = Report()
    session = DocSession(page, workdir, scratch, env)
    try:
        for block in blocks_of(page):
            where = f"{page.name}:{block.line}"
            if block.kind in FORBIDDEN_KINDS:
                raise DocError(f"{where}: a ```{block.kind} block; write it as ```console")
            if block.kind not in RUN_KINDS:
                continue
            if block.skip_reason is not None:
                reason, _, stand_in = block.skip_reason.partition(" | stand-in: ")
                report.skipped.append(f"{where}: {reason}")
                if stand_in:
                    session.run_command(Command(stand_in, [], block.line))
                continue
            missing = _missing_modules(block.needs, python)
            if missing:
                report.skipped.append(f"{where}: needs {', '.join(missing)}, not installed")
                continue
            if block.kind == "python":
                session.run_python(block, python)
            else:
                for command in commands_of(block, str(page)):
                    session.run_command(command)
            report.ran += 1
    except DocError as error:
        logs = "\n".join(session.close())
        raise DocError(f"{error}\n--- background output ---\n{logs}") from None
    session.close()
    return report
