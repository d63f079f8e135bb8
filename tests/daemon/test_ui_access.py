"""Who may see what of the node's web pages (real node, real HTTP): logging in and out,
the session cookie, scopes per page, CSRF and cross-site refusals, revoking a token, and
the security headers on every answer."""

from __future__ import annotations

import html
import subprocess
import sys
import time

import requests
from node_fixtures import NodeProcess, make_token
from ui_helpers import ADMIN_PAGES, PAGES, READ_PAGES, csrf_of, get_json, header, login

from kachery_daemon.ui.sessions import COOKIE, Sessions


def test_login_sets_a_strict_expiring_cookie_and_logout_ends_it(node: NodeProcess) -> None:
    session = requests.Session()
    answer = session.post(
        node.url + "/ui/login", data={"credential": node.auth_code()}, allow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/ui/"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(COOKIE + "=")
    for part in ("HttpOnly", "SameSite=Strict", "Path=/ui/", "Max-Age=28800"):
        assert part in cookie, cookie
    assert "Secure" not in cookie  # plain http on loopback; https sets it (below)
    page = session.get(node.url + "/ui/", timeout=30)
    assert page.status_code == 200 and "local user" in page.text
    refused = session.post(node.url + "/ui/logout", data={"csrf": "wrong"}, timeout=30)
    assert refused.status_code == 403 and "CSRF" in refused.text
    out = session.post(node.url + "/ui/logout", data={"csrf": csrf_of(page.text)}, timeout=30)
    assert out.url.endswith("/ui/login")
    again = session.get(node.url + "/ui/", allow_redirects=False, timeout=30)
    assert again.status_code == 303 and again.headers["Location"] == "/ui/login"


def test_a_bad_credential_is_refused(node: NodeProcess) -> None:
    for wrong in ("kt_not_a_token", "0" * 32, ""):
        answer = requests.post(node.url + "/ui/login", data={"credential": wrong}, timeout=30)
        assert answer.status_code == 403, wrong
        assert "unknown or revoked token" in answer.text
        assert COOKIE not in answer.headers.get("Set-Cookie", "")


def test_no_credential_no_page(node: NodeProcess) -> None:
    for path in PAGES:
        html = requests.get(node.url + path, allow_redirects=False, timeout=30)
        assert html.status_code == 303 and html.headers["Location"] == "/ui/login", path
        doc = requests.get(node.url + path, headers={"Accept": "application/json"}, timeout=30)
        assert doc.status_code == 401 and doc.json()["success"] is False, path
    forged = requests.get(
        node.url + "/ui/", cookies={COOKIE: "made-up"}, allow_redirects=False, timeout=30
    )
    assert forged.status_code == 303
    assert requests.get(node.url + "/metrics", timeout=30).status_code == 403


def test_a_read_token_sees_overview_browse_and_activity_only(node: NodeProcess) -> None:
    read = make_token(node, "reader", "read")
    for session in (login(node, read), _header_session(read)):
        for path in READ_PAGES:
            assert session.get(node.url + path, timeout=30).status_code == 200, path
        for path in ADMIN_PAGES:
            answer = session.get(node.url + path, timeout=30)
            assert answer.status_code == 403, path
            reason = html.unescape(answer.text)
            assert "has scope 'read'" in reason and "needs 'admin'" in reason, path
        page = session.get(node.url + "/ui/", timeout=30).text
        assert 'href="/ui/tokens"' not in page  # not offered either
    admin = make_token(node, "admin", "admin")
    token_id = _token_ids(node, node.auth_code())["admin"]
    reader = login(node, read)
    csrf = csrf_of(reader.get(node.url + "/ui/", timeout=30).text)
    refused = reader.post(node.url + "/ui/tokens/revoke", data={"id": token_id, "csrf": csrf})
    assert refused.status_code == 403
    assert "admin" in _token_ids(node, admin)
    assert requests.get(node.url + "/metrics", headers=header(read)).status_code == 403


def test_an_admin_revokes_a_token_with_the_csrf_token_only(node: NodeProcess) -> None:
    doomed = make_token(node, "doomed", "read")
    admin = make_token(node, "admin", "admin")
    doomed_session = login(node, doomed)
    session = login(node, admin)
    page = session.get(node.url + "/ui/tokens", timeout=30)
    assert page.status_code == 200
    assert doomed not in page.text and admin not in page.text  # never a secret
    token_id = _token_ids(node, admin)["doomed"]
    url = node.url + "/ui/tokens/revoke"
    assert session.post(url, data={"id": token_id}).status_code == 403  # no CSRF token
    forged = session.post(
        url, data={"id": token_id, "csrf": csrf_of(page.text)}, headers={"Origin": "http://evil"}
    )
    assert forged.status_code == 403 and "another site" in forged.text
    assert "doomed" in _token_ids(node, admin)
    done = session.post(url, data={"id": token_id, "csrf": csrf_of(page.text)}, timeout=30)
    assert done.status_code == 200 and done.url.endswith("/ui/tokens")
    assert "doomed" not in _token_ids(node, admin)
    ended = doomed_session.get(node.url + "/ui/", allow_redirects=False, timeout=30)
    assert ended.status_code == 303  # the revoked token's session ended with it
    assert requests.post(node.url + "/store", data=b"x", headers=header(doomed)).status_code == 403


def test_tokens_page_shows_when_each_was_last_used(node: NodeProcess) -> None:
    used = make_token(node, "used", "read")
    make_token(node, "idle", "read")
    before = time.time()
    assert requests.get(node.url + "/ui/", headers=header(used)).status_code == 200
    tokens = get_json(_header_session(node.auth_code()), node.url + "/ui/tokens")["tokens"]
    by_label = {t["label"]: t for t in tokens}
    assert by_label["used"]["lastUsed"] >= before - 1
    assert by_label["idle"]["lastUsed"] is None
    assert by_label["used"]["scope"] == "read" and by_label["used"]["created"] <= before
    assert all("sha256" not in t for t in tokens)


def test_every_answer_carries_the_security_headers(node: NodeProcess) -> None:
    session = login(node, node.auth_code())
    answers = [session.get(node.url + p, timeout=30) for p in PAGES]
    answers.append(session.get(node.url + "/ui/static/ui.js", timeout=30))
    answers.append(requests.get(node.url + "/ui/", allow_redirects=False, timeout=30))
    answers.append(requests.get(node.url + "/ui/tokens", headers=header("kt_x"), timeout=30))
    for answer in answers:
        where = f"{answer.request.url}: {answer.status_code}"
        csp = answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, where
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, where
        assert answer.headers["X-Content-Type-Options"] == "nosniff", where
    for answer in answers[: len(PAGES)]:
        assert "<script>" not in answer.text and " on" + "click=" not in answer.text
    script = answers[len(PAGES)]
    assert script.headers["Content-Type"].startswith(("application/javascript", "text/javascript"))


def test_https_sessions_have_secure_cookies(make_node, tmp_path) -> None:
    from test_tls import _self_signed  # the TLS tests' certificate for 127.0.0.1

    cert, key = _self_signed(tmp_path)
    node = make_node("--tls-cert", str(cert), "--tls-key", str(key))
    answer = requests.post(
        node.url + "/ui/login",
        data={"credential": node.auth_code()},
        allow_redirects=False,
        verify=str(cert),
        timeout=30,
    )
    assert answer.status_code == 303
    assert "Secure" in answer.headers["Set-Cookie"]


def test_sessions_expire_and_are_bounded() -> None:
    sessions = Sessions(seconds=0.2, limit=3)
    first = sessions.open("read", None, "a")
    assert sessions.get(first) is not None
    time.sleep(0.3)
    assert sessions.get(first) is None
    opened = [sessions.open("read", None, str(i)) for i in range(4)]
    assert sessions.get(opened[0]) is None and sessions.get(opened[3]) is not None


def test_the_command_line_does_not_import_the_templates() -> None:
    code = "import sys, kachery_daemon.cli, kachery_daemon.http_api; print('jinja2' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def _header_session(credential: str) -> requests.Session:
    session = requests.Session()
    session.headers.update(header(credential))
    return session


def _token_ids(node: NodeProcess, admin: str) -> dict:
    tokens = get_json(_header_session(admin), node.url + "/ui/tokens")["tokens"]
    return {t["label"]: t["id"] for t in tokens}
