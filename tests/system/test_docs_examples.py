"""Every shell and Python example of README.md and docs/*.md runs, with its output checked.

One test per page (tests/doc_runner.py says what runs and how output is matched). Each page
runs in a fresh home directory with no KACHERY_* setting but a free loopback node port and
a system config file of its own, so it sees what a new user sees and never touches a node
or config of the machine. docs/lab-setup.md needs real users and runs in
tests/system/test_lab_setup_doc.py instead.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import free_port
from doc_runner import blocks_of, run_page

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
OWN_TEST = {"lab-setup.md"}
BIN = Path(sys.executable).parent


def page_env(home: Path) -> Dict[str, str]:
    """A new user's environment: only the venv's commands, a home of its own."""
    return {
        "PATH": os.pathsep.join([str(BIN), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "USER": os.environ.get("USER", "root"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "PYTHONUNBUFFERED": "1",
        "KACHERY_DAEMON_PORT": str(free_port()),
        "KACHERY_GRPC_PORT": str(free_port()),
        "KACHERY_SYSTEM_CONFIG": str(home / "etc-kachery" / "config.toml"),
        "GRPC_ENABLE_FORK_SUPPORT": "false",
    }


@pytest.mark.parametrize("page", [p for p in PAGES if p.name not in OWN_TEST], ids=lambda p: p.name)
def test_the_examples_of_a_page_run(page: Path, tmp_path: Path, capsys) -> None:
    home, scratch = tmp_path / "home", tmp_path / "scratch"
    home.mkdir()
    scratch.mkdir()
    report = run_page(page, home, scratch, page_env(home), sys.executable)
    with capsys.disabled():
        print(f"\n{page.name}: {report.ran} blocks ran, {len(report.skipped)} not run")
        for reason in report.skipped:
            print(f"  not run: {reason}")
    assert report.ran + len(report.skipped) == sum(
        1 for b in blocks_of(page) if b.kind in ("console", "python")
    )


def _links(page: Path) -> List[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def _anchors(page: Path) -> List[str]:
    """GitHub's anchors of a page's headings."""
    found = []
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") and not line.startswith("#!"):
            title = line.lstrip("#").strip().lower()
            title = re.sub(r"[^\w\- ]", "", title.replace("`", ""))
            found.append(title.replace(" ", "-"))
    return found


ALL_PAGES = PAGES + [
    REPO / name
    for name in ("SECURITY.md", "ARCHITECTURE.md", "plugins.md", "examples/systemd/README.md")
]
TO_BE_MERGED = {"docs/storage.md", "docs/web-ui.md"}  # written on other branches


@pytest.mark.parametrize("page", ALL_PAGES, ids=lambda p: p.name)
def test_every_relative_link_of_a_page_leads_somewhere(page: Path) -> None:
    broken = []
    for link in _links(page):
        if re.match(r"^[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        relative = os.path.relpath(path, REPO)
        if relative in TO_BE_MERGED and not path.exists():
            continue
        if not path.exists():
            broken.append(f"{link} (no {relative})")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{link} (no heading #{anchor} in {relative})")
    assert not broken, f"{page.name}: broken links: {broken}"


def test_the_readme_is_short_and_gives_the_two_commands() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    assert "./scripts/demo.sh" in text and "./scripts/test.sh" in text
    assert "./scripts/test.sh" in (REPO / ".ci" / "run").read_text()
