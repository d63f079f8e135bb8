"""The doc-test runner itself: a page whose shown output is wrong fails, and what it starts
is stopped, so tests/system/test_docs_examples.py passing means the pages are true."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from doc_runner import DocError, run_page


def _run(tmp_path: Path, text: str):
    page = tmp_path / "page.md"
    page.write_text(text)
    work, scratch = tmp_path / "work", tmp_path / "scratch"
    work.mkdir(exist_ok=True)
    scratch.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "LANG": "C.UTF-8"}
    return run_page(page, work, scratch, env, sys.executable)


def test_shown_output_is_compared_with_wildcards_and_variables_carry_over(tmp_path) -> None:
    report = _run(
        tmp_path,
        '```console\n$ X=$(echo hello-123)\n$ echo "$X"; echo two\nhello-...\n...\n'
        "$ mkdir sub && cd sub\n```\n\n```console\n$ pwd\n.../work/sub\n"
        "$ export Y=7\n```\n\n```python\nimport os\nassert os.environ['Y'] == '7'\n"
        "assert os.getcwd().endswith('sub')\n```\n",
    )
    assert report.ran == 3 and report.skipped == []


@pytest.mark.parametrize(
    "block, complaint",
    [
        ("```console\n$ echo hello\nhullo\n```\n", "but the page shows"),
        ("```console\n$ false\n```\n", "exited 1"),
        ("```console\n$ echo 'Error: x'\nError: x\n```\n", "shows an error but exited 0"),
        ("```python\nassert 1 == 2\n```\n", "the Python example failed"),
        ("```bash\necho hi\n```\n", "write it as ```console"),
        ("```console\nhello\n```\n", "output before the first"),
    ],
)
def test_a_page_that_is_not_true_fails(tmp_path, block: str, complaint: str) -> None:
    with pytest.raises(DocError, match=complaint):
        _run(tmp_path, block)


def test_blocks_not_run_are_counted_and_background_processes_stopped(tmp_path) -> None:
    pid_file = tmp_path / "work" / "pid"
    report = _run(
        tmp_path,
        "<!-- not run: a second machine -->\n```console\n$ ssh elsewhere\n```\n\n"
        "<!-- not run: elsewhere | stand-in: touch made-here -->\n```console\n$ scp a b\n```\n\n"
        f"```console\n$ sh -c 'echo $$ > {pid_file}; echo ready; exec sleep 600' &\n"
        "$ test -f made-here && echo yes\nyes\n```\n",
    )
    assert report.ran == 1
    assert [r.split(": ", 1)[1] for r in report.skipped] == ["a second machine", "elsewhere"]
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
