"""The example plugin `examples/kachery-mirror`, installed on its own and used for real.

The package is pip-installed (without dependencies) into a private directory that only
the `kachery-client` subprocesses get on PYTHONPATH: kachery finds it through its entry
point, as it would a user's install, and this test environment stays untouched. The
objects come from `python -m http.server` serving a storage directory that the embedded
backend filled with `kachery-client store-file`. All traffic stays on 127.0.0.1.
Large files and failures are in test_mirror_failures.py (fixtures: mirror_fixtures.py).
"""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, Type

import pytest
from conftest import free_port
from mirror_fixtures import (
    EXAMPLE,
    LOOPBACK_ONLY,
    VERSION,
    Run,
    Served,
    cached,
    info_rows,
    one_line_error,
    staging_files,
    write_config,
)

from kachery_client.testing import ContractBackend, TransportContract
from kachery_core.backend.base import Backend
from kachery_core.content.uri import parse_uri
from kachery_core.settings.config import resolve_config

# -- discovery ----------------------------------------------------------------------


def test_backends_lists_mirror_with_its_package(mcli: Run, cli, kenv) -> None:
    listed = mcli("backends")
    assert listed.returncode == 0, listed
    line = next(x for x in listed.stdout.splitlines() if x.startswith("mirror "))
    assert VERSION is not None
    assert f"kachery-mirror {VERSION.group(1)}" in line and "read-only" in line
    assert "BROKEN" not in listed.stdout
    assert "mirror" not in cli("backends").stdout  # installed only for those subprocesses


def test_plugin_module_imports_nothing_heavy(kenv, mirror_site: Path) -> None:
    """kachery imports the plugin module on every registry rebuild: no requests there."""
    code = (
        "import sys, kachery_mirror.plugin\n"
        "heavy = ('requests', 'urllib3', 'kachery_mirror.transport', 'kachery_mirror.fetch')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    env = dict(kenv, PYTHONPATH=str(mirror_site))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# -- choosing the backend -------------------------------------------------------------


def test_load_file_by_flag_verifies_and_caches(mcli: Run, kenv, served: Served) -> None:
    loaded = mcli("--transport", "mirror", "load-file", served.small, KACHERY_MIRROR_URL=served.url)
    assert loaded.returncode == 0, loaded
    path = Path(loaded.stdout.strip())
    sha1 = parse_uri(served.small).sha1
    assert path == cached(kenv, sha1)
    assert path.read_bytes() == served.small_data
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert staging_files(kenv) == []
    dead = f"http://127.0.0.1:{free_port()}"  # a cached object needs no server
    again = mcli("--transport", "mirror", "load-file", served.small, KACHERY_MIRROR_URL=dead)
    assert again.returncode == 0 and Path(again.stdout.strip()) == path, again


def test_env_transport_and_config_file_url(mcli: Run, kenv, served: Served) -> None:
    write_config(kenv, f'[plugins.mirror]\nurl = "{served.url}/"\n')
    info = info_rows(mcli("info", KACHERY_TRANSPORT="mirror"))
    assert info["backend"] == "mirror" and "KACHERY_TRANSPORT" in info["chosen because"]
    assert info["node address"] == served.url
    assert info["storage dir"] == kenv["KACHERY_STORAGE_DIR"]
    whole = mcli("cat-file", served.small, KACHERY_TRANSPORT="mirror")
    assert whole.returncode == 0 and whole.stdout_bytes == served.small_data, whole
    assert cached(kenv, parse_uri(served.small).sha1).is_file()
    part = mcli("cat-file", served.small, "--start", "5", "--end", "70", KACHERY_TRANSPORT="mirror")
    assert part.stdout_bytes == served.small_data[5:70], part
    tail = mcli("cat-file", served.small, "--start", "3000", KACHERY_TRANSPORT="mirror")
    assert tail.stdout_bytes == served.small_data[3000:], tail


def test_profile_selects_the_mirror(mcli: Run, kenv, served: Served) -> None:
    write_config(
        kenv,
        '[profiles.lab]\ntransport = "mirror"\n\n'
        f'[profiles.lab.plugins.mirror]\nurl = "{served.url}"\n',
    )
    plain = mcli("cat-file", served.small)
    assert "not found" in one_line_error(plain)  # the embedded storage does not have it yet
    info = info_rows(mcli("--profile", "lab", "info"))
    assert info["backend"] == "mirror" and info["node address"] == served.url
    through = mcli("--profile", "lab", "cat-file", served.small)
    assert through.returncode == 0 and through.stdout_bytes == served.small_data, through
    # The cache is the ordinary storage directory: the embedded backend now has it too.
    local = mcli("cat-file", served.small)
    assert local.returncode == 0 and local.stdout_bytes == served.small_data, local


def test_selection_hook_chooses_the_mirror_on_listed_hosts(mcli: Run, kenv, served: Served) -> None:
    host = json.dumps(socket.gethostname())  # a JSON string is a valid TOML string
    write_config(kenv, f'[plugins.mirror]\nurl = "{served.url}"\nselect_on_hosts = [{host}]\n')
    info = info_rows(mcli("info"))
    assert info["backend"] == "mirror"
    assert "plugin 'mirror'" in info["chosen because"]
    loaded = mcli("load-file", served.small)
    assert loaded.returncode == 0 and Path(loaded.stdout.strip()).read_bytes() == served.small_data

    pattern = json.dumps(socket.gethostname()[:1] + "*")
    write_config(kenv, f'[plugins.mirror]\nurl = "{served.url}"\nselect_on_hosts = [{pattern}]\n')
    assert info_rows(mcli("info"))["backend"] == "mirror"

    write_config(kenv, f'[plugins.mirror]\nurl = "{served.url}"\nselect_on_hosts = ["no-such-*"]\n')
    assert info_rows(mcli("info"))["backend"] == "local"

    write_config(kenv, f"[plugins.mirror]\nselect_on_hosts = [{host}]\n")  # no url: pass
    assert info_rows(mcli("info"))["backend"] == "local"


def test_bad_selection_setting_is_a_warning(mcli: Run, kenv, served: Served) -> None:
    write_config(kenv, f'[plugins.mirror]\nurl = "{served.url}"\nselect_on_hosts = 5\n')
    shown = mcli("info")
    assert info_rows(shown)["backend"] == "local"
    assert shown.stderr.startswith("Warning: plugin 'mirror' ignored")
    assert "select_on_hosts" in shown.stderr
    assert shown.stderr.count("\n") == 1  # one line, once

    debugged = mcli("--debug", "info")
    assert info_rows(debugged)["backend"] == "local"
    warning, rest = debugged.stderr.split("\n", 1)
    assert f"{warning}\n" == shown.stderr
    assert rest.startswith("Traceback") and "kachery_mirror/settings.py" in rest


def test_plugin_imports_backend_spec_from_the_hook_specs() -> None:
    source = (EXAMPLE / "kachery_mirror" / "plugin.py").read_text()
    assert "from kachery_core.backend.hookspecs import BackendSpec, hookimpl" in source


def test_settings_are_checked(mcli: Run, kenv, served: Served, tmp_path) -> None:
    cache = tmp_path / "mirror-cache"
    env = {"KACHERY_TRANSPORT": "mirror", "KACHERY_MIRROR_URL": served.url}
    loaded = mcli("load-file", served.small, KACHERY_MIRROR_CACHE_DIR=str(cache), **env)
    assert loaded.returncode == 0, loaded
    assert Path(loaded.stdout.strip()).parent.parent.parent.parent.parent == cache
    write_config(kenv, "[plugins.mirror]\nurll = 'typo'\n")
    line = one_line_error(mcli("info", **env))
    assert "unknown key 'urll'" in line and "url, cache_dir" in line
    write_config(kenv, "")
    line = one_line_error(mcli("info", KACHERY_TRANSPORT="mirror", KACHERY_MIRROR_URL="ftp://x"))
    assert "invalid mirror URL 'ftp://x' (environment variable KACHERY_MIRROR_URL)" in line


# -- the transport contract, in process ---------------------------------------------------


class TestMirrorContract(TransportContract):
    can_store = can_link = has_mutables = has_feeds = False

    @pytest.fixture
    def backend(
        self,
        kenv: Dict[str, str],
        served: Served,
        mirror_transport_class: Type[Backend],
        monkeypatch: pytest.MonkeyPatch,
    ) -> Iterator[ContractBackend]:
        for key, value in LOOPBACK_ONLY.items():
            monkeypatch.setenv(key, value)
        write_config(kenv, f'[plugins.mirror]\nurl = "{served.url}"\n')
        transport = mirror_transport_class.from_config(resolve_config())
        yield ContractBackend(transport, served.publish)
        transport.close()
