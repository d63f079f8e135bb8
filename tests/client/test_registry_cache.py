"""The on-disk registry cache: used when nothing changed, rebuilt when anything did."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

PLUGIN = """
from kachery_core.backend.hookspecs import hookimpl
from kachery_client.backends.registry import BackendSpec

@hookimpl
def kachery_register_backends():
    return [BackendSpec("fake", "kachery_transports.local:LocalTransport", "SUMMARY")]
"""


def _install_fake_plugin(site: Path, summary: str) -> Path:
    """A minimal installed distribution with a `kachery.plugins` entry point."""
    dist = site / "fakeplug-1.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[kachery.plugins]\nfake = fakeplug_mod\n")
    module = site / "fakeplug_mod.py"
    module.write_text(PLUGIN.replace("SUMMARY", summary))
    return module


def _run(kenv: dict, site: Path, *args: str) -> str:
    env = dict(kenv, PYTHONPATH=str(site))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from kachery_cli.main import main; main(sys.argv[1:])",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_cache_is_rebuilt_when_a_plugin_appears_or_changes(kenv, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    assert "fake" not in _run(kenv, site, "backends")
    cache_files = list((Path(kenv["XDG_CACHE_HOME"]) / "kachery").glob("registry-*.json"))
    assert len(cache_files) == 1

    module = _install_fake_plugin(site, "first summary")
    out = _run(kenv, site, "backends")
    assert "fake" in out and "fakeplug 1.0" in out and "first summary" in out

    time.sleep(0.01)
    module.write_text(PLUGIN.replace("SUMMARY", "edited summary"))  # editable-mode change
    assert "edited summary" in _run(kenv, site, "backends")


def test_warm_commands_do_not_load_plugins(kenv, tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from kachery_cli.main import main\n"
        "try:\n    main(sys.argv[1:])\n"
        "except SystemExit:\n    pass\n"
        "print('pluggy' in sys.modules, 'importlib.metadata' in sys.modules, file=sys.stderr)\n"
    )
    src = tmp_path / "f.txt"
    src.write_text("x")

    def loaded(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, env=kenv
        )
        return proc.stderr.strip().splitlines()[-1]

    assert loaded("store-file", str(src)) == "True True"  # cold: hooks run through pluggy
    assert loaded("store-file", str(src)) == "False False"  # warm: served from the cache
    assert loaded("--help") == "False False"


def test_warm_cache_keeps_refusals_and_tracebacks(kenv, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    for dist, module, source in (
        ("brokenplug", "brokenplug_mod", "import kachery_no_such_dependency\n"),
        ("usurper", "usurper_mod", PLUGIN.replace('"fake"', '"local"')),
    ):
        info = site / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[kachery.plugins]\n{dist} = {module}\n")
        (site / f"{module}.py").write_text(source)
    probe = (
        "import sys\n"
        "from kachery_cli.main import main\n"
        "try:\n    main(sys.argv[1:])\n"
        "except SystemExit:\n    pass\n"
        "print('pluggy loaded:', 'pluggy' in sys.modules, file=sys.stderr)\n"
    )

    def run() -> subprocess.CompletedProcess:
        env = dict(kenv, PYTHONPATH=str(site))
        args = [sys.executable, "-c", probe, "backends", "--debug"]
        return subprocess.run(args, capture_output=True, text=True, env=env)

    cold, warm = run(), run()
    assert cold.stderr.endswith("pluggy loaded: True\n")
    assert warm.stderr.endswith("pluggy loaded: False\n")
    assert warm.stdout == cold.stdout
    assert warm.stderr.replace("False", "True") == cold.stderr
    assert "REFUSED: usurper 1.0 also announces 'local'" in warm.stdout
    assert "BROKEN: brokenplug: import failed: ModuleNotFoundError" in warm.stdout
    assert "brokenplug is broken because:\nTraceback" in warm.stderr
    assert "import kachery_no_such_dependency" in warm.stderr


def test_a_cache_of_another_format_is_rebuilt(kenv, tmp_path: Path) -> None:
    import json

    from kachery_client.backends import registry_cache

    site = tmp_path / "site"
    site.mkdir()
    _run(kenv, site, "backends")
    path = next((Path(kenv["XDG_CACHE_HOME"]) / "kachery").glob("registry-*.json"))
    doc = json.loads(path.read_text())
    assert doc["format"] == registry_cache.FORMAT
    doc["format"] = registry_cache.FORMAT - 1
    doc["backends"] = []  # what an out-of-date reader would make of it
    path.write_text(json.dumps(doc))
    assert "local" in _run(kenv, site, "backends")
    assert json.loads(path.read_text())["format"] == registry_cache.FORMAT


def test_threads_asking_at_once_all_get_the_one_registry(kenv) -> None:
    """A script's thread pool makes its clients at once: every thread gets the same
    registry, none a half-built or missing one, whether the disk cache is cold or warm."""
    import threading

    from kachery_client.backends import registry as plugins

    for _ in range(2):  # cold cache, then warm
        plugins.reset_registry()
        start = threading.Barrier(16)
        got = []

        def ask(start: threading.Barrier, got: list) -> None:
            start.wait()
            got.append(plugins.get_registry())

        threads = [threading.Thread(target=ask, args=(start, got)) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(got) == 16 and all(r is got[0] for r in got) and got[0] is not None
        assert "local" in got[0].backends
