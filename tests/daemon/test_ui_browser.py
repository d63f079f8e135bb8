"""The node's web pages in a real browser (headless Chromium, see browser_fixtures.py):
log in with a token, watch the overview follow a store, browse a stored tree and
download a file, see hostile names as text with no script run, be refused the tokens page
with a read token, revoke a token with an admin one. Each page's screenshot is taken; with
`KACHERY_UI_SCREENSHOTS=docs/images` they become docs/web-ui.md's pictures, otherwise they
go to the test's temporary folder (a test run leaves the checkout as it was)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from browser_fixtures import browser  # noqa: F401 - the fixture
from node_fixtures import NodeProcess, make_token
from ui_helpers import BIDI_NAME, IMG_NAME, SCRIPT_NAME, make_tree, store

SCREENSHOTS = os.environ.get("KACHERY_UI_SCREENSHOTS")
"""Read on import: the tests' isolated environment (`kenv`) drops every KACHERY_ name."""


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where the screenshots go: `KACHERY_UI_SCREENSHOTS` when set, else a temporary folder."""
    folder = Path(SCREENSHOTS).resolve() if SCREENSHOTS else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _shot(driver: Any, shots: Path, name: str) -> None:
    path = shots / f"{name}.png"
    assert driver.save_screenshot(str(path)), name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


def _login(driver: Any, node: NodeProcess, credential: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(node.url + "/ui/")
    assert driver.current_url.endswith("/ui/login")  # sent to log in first
    driver.find_element(By.ID, "credential").send_keys(credential)
    driver.find_element(By.ID, "login").click()
    _wait_for_url(driver, "/ui/")


def _wait_for_url(driver: Any, part: str) -> None:
    """A click that navigates may return before the next page is there: wait for it."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(
        lambda d: d.current_url.endswith(part) or part + "?" in d.current_url
    )
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def _no_script_ran(driver: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    assert "pwned" not in driver.title
    try:
        driver.switch_to.alert.dismiss()
    except NoAlertPresentException:
        return
    raise AssertionError("a script from the store raised an alert")


def _wait_for_file(path: Path, seconds: float = 20.0) -> bytes:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_bytes()
        time.sleep(0.1)
    raise AssertionError(f"the browser did not save {path.name} within {seconds} s")


def test_a_reader_browses_downloads_and_is_refused_tokens(
    browser: Any,  # noqa: F811 - the fixture imported above
    node: NodeProcess,
    tmp_path: Path,
    shots: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    _login(driver, node, make_token(node, "lab laptop", "read"))
    objects = driver.find_element(By.ID, "objects").text
    assert objects == "0"
    tree = make_tree(tmp_path / "tree")
    uri = store(node, tree, recursive=True)
    driver.refresh()
    assert int(driver.find_element(By.ID, "objects").text) > int(objects)
    _shot(driver, shots, "overview")

    driver.find_element(By.LINK_TEXT, "Browse").click()
    _wait_for_url(driver, "/ui/browse")
    driver.find_element(By.ID, "uri").send_keys(uri)
    driver.find_element(By.ID, "open").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "listing"))
    names = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#listing td.name")]
    assert SCRIPT_NAME in names and IMG_NAME in names  # shown as the text they are
    assert "\\u202eevil\\u200b.txt" in names and BIDI_NAME not in names
    assert not driver.find_elements(By.CSS_SELECTOR, "#listing img, #listing script")
    _no_script_ran(driver)
    _shot(driver, shots, "browse")

    row = driver.find_element(By.XPATH, "//tr[td[@class='name']/a[text()='data.json']]")
    row.find_element(By.CLASS_NAME, "download").click()
    got = _wait_for_file(driver.downloads / "data.json")
    assert got == (tree / "data.json").read_bytes()

    driver.get(node.url + "/ui/browse?uri=" + quote(f"{uri}/red.png"))
    image = driver.find_element(By.CSS_SELECTOR, "#preview img")
    assert driver.execute_script("return arguments[0].naturalWidth", image) == 8
    driver.get(node.url + "/ui/browse?uri=" + quote(f"{uri}/drawing.svg"))
    assert "<script>" in driver.find_element(By.CSS_SELECTOR, "#preview pre").text
    _no_script_ran(driver)
    driver.get(node.url + "/ui/browse?uri=" + quote(f"{uri}/table.csv"))
    _shot(driver, shots, "file")

    driver.find_element(By.LINK_TEXT, "Activity").click()
    _wait_for_url(driver, "/ui/activity")
    assert driver.find_elements(By.CSS_SELECTOR, "#events tr.kind-store")
    _shot(driver, shots, "activity")

    assert not driver.find_elements(By.LINK_TEXT, "Tokens")
    driver.get(node.url + "/ui/tokens")
    error = driver.find_element(By.ID, "error").text
    assert error == "this credential has scope 'read'; the tokens page needs 'admin'"
    _shot(driver, shots, "refused")


def test_an_admin_revokes_a_token(
    browser: Any,  # noqa: F811
    node: NodeProcess,
    shots: Path,
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    make_token(node, "old laptop", "read")
    make_token(node, "lab laptop", "read")
    admin = make_token(node, "admin console", "admin")
    driver.get(node.url + "/ui/login")
    _shot(driver, shots, "login")
    _login(driver, node, admin)
    driver.find_element(By.LINK_TEXT, "Tokens").click()
    _wait_for_url(driver, "/ui/tokens")
    rows = driver.find_elements(By.CSS_SELECTOR, "#tokens tr[id^=token-]")
    labels = [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows]
    assert labels == ["old laptop", "lab laptop", "admin console"]
    assert admin not in driver.page_source  # never the secret
    _shot(driver, shots, "tokens")
    row = driver.find_element(By.XPATH, "//tr[td[text()='old laptop']]")
    row.find_element(By.CSS_SELECTOR, "form.revoke button").click()
    alert = driver.switch_to.alert
    assert "old laptop" in alert.text
    alert.accept()
    _wait_for_url(driver, "/ui/tokens")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(lambda d: "old laptop" not in d.page_source)
    rows = driver.find_elements(By.CSS_SELECTOR, "#tokens tr[id^=token-]")
    assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == [
        "lab laptop",
        "admin console",
    ]
    driver.find_element(By.LINK_TEXT, "Channels").click()
    _wait_for_url(driver, "/ui/channels")
    assert "in no channel" in driver.find_element(By.TAG_NAME, "main").text
    _shot(driver, shots, "channels")
    driver.find_element(By.LINK_TEXT, "Verify").click()
    _wait_for_url(driver, "/ui/verify")
    assert driver.find_element(By.ID, "quarantine").text == "Empty."
    _shot(driver, shots, "verify")
    driver.find_element(By.ID, "logout").click()
    _wait_for_url(driver, "/ui/login")
    driver.get(node.url + "/ui/tokens")
    assert driver.current_url.endswith("/ui/login")
