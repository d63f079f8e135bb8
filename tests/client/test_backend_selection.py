"""Backend registry and the selection rules, with real configs and a real listening socket."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from kachery_client.backends.registry import BackendRegistry, BackendSpec, PluginInfo, get_registry
from kachery_client.backends.selection import is_local_host, select_backend
from kachery_core.errors import BackendError
from kachery_core.settings.config import resolve_config


def test_builtins_registered_through_the_hook() -> None:
    registry = get_registry()
    assert {"local", "offline"} <= set(registry.names())
    spec = registry.get("local")
    assert spec.package == "kachery-lab" and spec.target.endswith(":LocalTransport")
    assert any(p.name == "builtin" for p in registry.plugins)


def test_unknown_backend_lists_installed() -> None:
    with pytest.raises(BackendError) as info:
        get_registry().get("nosuch")
    assert "'nosuch'" in str(info.value) and "local" in str(info.value)


def test_missing_dependency_names_the_install_command() -> None:
    from kachery_client.backends.registry import BackendRegistry

    registry = BackendRegistry()

    class Plugin:
        from kachery_core.backend.hookspecs import hookimpl

        @staticmethod
        @hookimpl
        def kachery_register_backends():
            return [
                BackendSpec(
                    "needy",
                    "kachery_no_such_module.x:T",
                    "needs a package",
                    ("kachery-extra-thing",),
                )
            ]

    registry.add_plugin(Plugin, PluginInfo("needy-plugin", "needy", "1.0"))
    with pytest.raises(BackendError) as info:
        registry.load("needy")
    assert "pip install kachery-extra-thing" in str(info.value)


def test_duplicate_backend_names_are_reported() -> None:
    from kachery_client.backends.registry import BackendRegistry
    from kachery_core.backend.hookspecs import hookimpl

    def make(package: str) -> type:
        class Plugin:
            @staticmethod
            @hookimpl
            def kachery_register_backends():
                return [BackendSpec("twin", f"{package}.t:T", "a twin")]

        return Plugin

    registry = BackendRegistry()
    registry.add_plugin(make("pkg_a"), PluginInfo("a", "pkg-a", "1"))
    registry.add_plugin(make("pkg_b"), PluginInfo("b", "pkg-b", "1"))
    with pytest.raises(BackendError) as info:
        registry.get("twin")
    assert "pkg-a" in str(info.value) and "pkg-b" in str(info.value)


@pytest.mark.parametrize(
    "host,local",
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("::1", True),
        ("[::1]", True),
        (socket.gethostname(), True),
        ("203.0.113.5", False),
        ("lab-node.example.org", False),
    ],
)
def test_is_local_host(host: str, local: bool) -> None:
    assert is_local_host(host) is local


class _ProbeHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = json.dumps(
            {
                "success": True,
                "daemonVersion": "test",
                "nodeId": "ab" * 32,
                "kacheryStorageDir": "/nowhere",
            }
        ).encode()
        self.send_response(200 if self.path.startswith("/probe") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering_node(kenv) -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), _ProbeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _select(**explicit: object) -> str:
    from kachery_core.protocol import probe

    probe._cache.clear()
    return select_backend(resolve_config(explicit, explicit_source="test"), get_registry()).name


def test_selection_order(kenv, tmp_path: Path, answering_node: int) -> None:
    port = answering_node
    assert _select() == "local"  # nothing answers on the fixture's port
    has_http = "http" in get_registry().backends
    assert _select(daemon_host="127.0.0.1", daemon_port=port) == ("http" if has_http else "local")
    assert _select(daemon_host="203.0.113.5", daemon_port=port) == "remote"
    assert _select(offline_storage_dir=str(tmp_path), daemon_host="203.0.113.5") == "offline"
    assert _select(transport="local", offline_storage_dir=str(tmp_path)) == "local"


def test_probe_rejects_non_kachery_answers(kenv) -> None:
    from kachery_core.protocol.probe import probe_node

    class NotKachery(_ProbeHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = HTTPServer(("127.0.0.1", 0), NotKachery)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert probe_node("127.0.0.1", server.server_address[1], fresh=True) is None
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("where", ["environment", "config file", "command line"])
def test_an_unknown_backend_names_where_it_was_set(where: str, cli, kenv) -> None:
    env = dict(kenv)
    args = ["info"]
    if where == "environment":
        env["KACHERY_TRANSPORT"] = "foo"
        expected = "(set by environment KACHERY_TRANSPORT)"
    elif where == "config file":
        config = Path(kenv["KACHERY_CONFIG"])
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text('transport = "foo"\n')
        expected = f"(set by config file {config})"
    else:
        args = ["--transport", "foo", "info"]
        expected = "(set by command line)"
    shown = cli(*args, env=env)
    assert shown.returncode == 1
    assert shown.stderr.startswith(f"Error: unknown backend 'foo' {expected}; installed backends: ")
    assert "local" in shown.stderr and shown.stderr.count("\n") == 1


def test_backend_spec_lives_beside_the_hook_specs() -> None:
    import subprocess
    import sys

    from kachery_client.backends import registry as plugins
    from kachery_core.backend import hookspecs

    assert plugins.BackendSpec is hookspecs.BackendSpec  # the old import keeps working
    probe = "import sys, kachery_core.backend.hookspecs; print('kachery_client.backends.registry' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def _registry_with(*plugins: object) -> BackendRegistry:
    registry = BackendRegistry()
    for index, plugin in enumerate(plugins):
        registry.add_plugin(plugin, PluginInfo(f"p{index}", f"pkg-{index}", "1"))
    return registry


def test_selection_problems_are_kachery_plugin_warnings(kenv) -> None:
    from kachery_client.backends.registry import KacheryPluginWarning
    from kachery_core.backend.hookspecs import hookimpl

    class Raises:
        @staticmethod
        @hookimpl(tryfirst=True)
        def kachery_select_backend(config):
            raise RuntimeError("no idea")

    class Unknown:
        @staticmethod
        @hookimpl
        def kachery_select_backend(config):
            return "nosuch"

    registry = _registry_with(Raises, Unknown)
    registry.backends.update(get_registry().backends)
    config = resolve_config({}, explicit_source="test")
    with pytest.warns(KacheryPluginWarning) as caught:
        assert select_backend(config, registry).name == "local"
    messages = [str(w.message) for w in caught]
    assert messages == [
        "plugin 'p0' ignored: kachery_select_backend raised RuntimeError('no idea')",
        "plugin 'p1': kachery_select_backend answered 'nosuch', which is not an installed "
        "backend (see `kachery-client backends`); answer ignored",
    ]
    assert "RuntimeError: no idea" in caught[0].message.plugin_traceback  # type: ignore[union-attr]
    assert "p0" in registry.broken and "Traceback" in registry.tracebacks["p0"]


def test_builtin_wins_whatever_the_registration_order() -> None:
    from kachery_client.backends.registry import BackendRegistry
    from kachery_core.backend.hookspecs import hookimpl

    class Builtin:
        @staticmethod
        @hookimpl
        def kachery_register_backends():
            return [BackendSpec("local", "builtin.t:T", "the real one")]

    class Other:
        @staticmethod
        @hookimpl
        def kachery_register_backends():
            return [BackendSpec("local", "other.t:T", "an impostor")]

    for order in ((Builtin, Other), (Other, Builtin)):
        registry = BackendRegistry()
        for plugin in order:
            builtin = plugin is Builtin
            name = "builtin" if builtin else "other"
            registry.add_plugin(plugin, PluginInfo(name, name + "-pkg", "1", builtin))
        assert registry.get("local").target == "builtin.t:T"
        assert [name for name, _ in registry.refused] == ["local"]
        assert "other-pkg 1 also announces 'local'" in registry.refused[0][1]
        assert registry.broken == {}
