"""examples/systemd/kachery-daemon.service: a unit systemd accepts, with the service user,
the auth group, a restart policy and the hardening docs/lab-setup.md promises, and the
same node command line the page starts by hand."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Dict

import pytest
from conftest import command

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "examples" / "systemd" / "kachery-daemon.service"


def _service() -> Dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return dict(parser["Service"])


def test_the_unit_has_the_service_user_group_restart_policy_and_hardening() -> None:
    service = _service()
    assert service["User"] == "kachery" and service["Group"] == "kachery-users"
    assert service["Restart"] == "on-failure"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "read-only",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service.get(key) == value, key
    argv = shlex.split(service["ExecStart"])
    assert argv[:2] == ["/usr/local/bin/kachery-daemon", "start"]
    storage = argv[argv.index("--storage-dir") + 1]
    assert service["ReadWritePaths"].split() == [storage]
    assert argv[argv.index("--auth-group") + 1] == service["Group"]


def test_the_lab_setup_page_starts_the_node_as_the_unit_does() -> None:
    argv = shlex.split(_service()["ExecStart"])
    by_hand = f"runuser -u kachery -- kachery-daemon {' '.join(argv[1:])} &"
    assert by_hand in (REPO / "docs" / "lab-setup.md").read_text()


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """systemd-analyze verify, with ExecStart pointing at this checkout's kachery-daemon
    (the unit names /usr/local/bin/kachery-daemon, where the lab installs it)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the keys are checked above)")
    unit = tmp_path / UNIT.name
    unit.write_text(
        UNIT.read_text().replace("/usr/local/bin/kachery-daemon", command("kachery-daemon"))
    )
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
