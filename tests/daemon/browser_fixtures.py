"""Headless Chromium (Debian's `chromium` and `chromium-driver`) driven by selenium for the
web page tests in a real browser (test_ui_browser.py).

The test starts chromedriver itself, in a new session, and ends it and every browser
process it started (found by the test's own `--user-data-dir`) even when the test fails.
Without selenium, chromium or chromedriver the tests skip, saying which is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest
from conftest import free_port
from spawn import SafePopen

BROWSER_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,860",
)


def _missing() -> List[str]:
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    return missing


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"chromedriver exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise AssertionError(f"chromedriver did not listen on {port} within {timeout} s")


def _processes_using(profile: Path) -> List[int]:
    """PIDs of the browser processes started with this test's profile directory."""
    marker = f"--user-data-dir={profile}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _end(pids: List[int]) -> None:
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_running(p) for p in pids):
            time.sleep(0.05)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a browser process whose parent has not reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A selenium WebDriver on a fresh headless Chromium; downloads go to tmp_path/downloads."""
    missing = _missing()
    if missing:
        pytest.skip(f"no real browser to test with: {', '.join(missing)} not installed")
    from selenium import webdriver

    profile = tmp_path / "chromium-profile"
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    port = free_port()
    with open(tmp_path / "chromedriver.log", "wb") as log:  # the child keeps its own copy
        driver_proc = SafePopen(
            [shutil.which("chromedriver"), f"--port={port}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            die_with_parent=True,
        )
    driver = None
    try:
        _wait_for_port(port, driver_proc)
        options = webdriver.ChromeOptions()
        options.binary_location = str(shutil.which("chromium"))
        for arg in BROWSER_ARGS:
            options.add_argument(arg)
        options.add_argument(f"--user-data-dir={profile}")
        prefs = {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
        }
        options.add_experimental_option("prefs", prefs)
        driver = webdriver.Remote(command_executor=f"http://127.0.0.1:{port}", options=options)
        driver.downloads = downloads  # type: ignore[attr-defined]
        yield driver
    finally:
        if driver is not None:
            with contextlib.suppress(Exception):
                driver.quit()
        driver_proc.terminate()
        try:
            driver_proc.wait(10)
        except subprocess.TimeoutExpired:
            driver_proc.kill()
            driver_proc.wait()
        _end(_processes_using(profile))
        left = [pid for pid in _processes_using(profile) if _running(pid)]
        assert not left, f"browser processes {left} survived the test"
