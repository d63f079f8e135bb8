"""A node's channel configuration, without a store: the `[channels.NAME]` tables are
checked key by key (one line naming the file, the channel and the key), their defaults,
the file in the storage directory, and the embedded backend saying channels need a node.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List

import pytest
from channel_fixtures import one_line_error, random_sha1
from conftest import free_port

from kachery_core.errors import ConfigError
from kachery_daemon.channels.config import parse_node_config

# -- without a store: configuration and the embedded backend ---------------------------


@pytest.mark.parametrize(
    "body, words",
    [
        (
            '[channels.lab]\nbucket = "kachery-lab"\nprovide = "yes"\n',
            ["'lab'", "'provide'", "true or false"],
        ),
        (
            '[channels.lab]\nbucket = "kachery-lab"\npoll_secs = 2\n',
            ["'lab'", "'poll_secs'", "known keys"],
        ),
        ('[channels.lab]\nprefix = "x/"\n', ["'lab'", "'bucket'", "missing"]),
        ('[channels.lab]\nbucket = "kachery-lab"\npoll_seconds = 0\n', ["'lab'", "'poll_seconds'"]),
        (
            '[channels.lab]\nbucket = "kachery-lab"\nmax_parallel = 1000\n',
            ["'lab'", "'max_parallel'"],
        ),
        (
            '[channels.lab]\nbucket = "kachery-lab"\nprefix = "lab"\n',
            ["'lab'", "'prefix'", "ending in '/'"],
        ),
        ('[channels.lab]\nbucket = "x"\n', ["'lab'", "'bucket'"]),
        (
            '[channels.lab]\nbucket = "kachery-lab"\nendpoint_url = "localhost:9000"\n',
            ["'endpoint_url'"],
        ),
        ('[channel.lab]\nbucket = "kachery-lab"\n', ["unknown key 'channel'"]),
    ],
)
def test_node_config_is_validated(tmp_path: Path, body: str, words: List[str]) -> None:
    path = tmp_path / "node.toml"
    path.write_text(body)
    from kachery_daemon.channels.config import load_node_config

    with pytest.raises(ConfigError) as caught:
        load_node_config(path, tmp_path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message, message


def test_node_config_defaults(tmp_path: Path) -> None:
    config = parse_node_config(
        {"channels": {"lab": {"bucket": "kachery-lab"}, "b": {"bucket": "other", "provide": True}}},
        tmp_path / "n.toml",
    )
    lab = config.channels["lab"]
    assert (lab.prefix, lab.endpoint_url, lab.request, lab.provide) == ("", None, True, False)
    assert (lab.poll_seconds, lab.max_parallel, lab.region, lab.aws_profile) == (2.0, 4, None, None)
    assert config.channels["b"].provide


def test_daemon_refuses_a_bad_config_in_one_line(cli: Any, tmp_path: Path) -> None:
    bad = tmp_path / "node.toml"
    bad.write_text('[channels.lab]\nbucket = "kachery-lab"\nrequest = 3\n')
    result = cli(
        "start",
        "--port",
        str(free_port()),
        "--storage-dir",
        str(tmp_path / "s"),
        "--config",
        str(bad),
        program="kachery-daemon",
        timeout=60,
    )
    error = one_line_error(result)
    assert str(bad) in error and "'lab'" in error and "'request'" in error


def test_default_node_config_in_storage_dir(tmp_path: Path) -> None:
    from kachery_daemon.channels.config import load_node_config

    assert load_node_config(None, tmp_path).channels == {}
    (tmp_path / "kachery-node.toml").write_text('[channels.lab]\nbucket = "kachery-lab"\n')
    assert list(load_node_config(None, tmp_path).channels) == ["lab"]


def test_embedded_backend_says_channels_need_a_node(
    cli: Any, kenv: Dict[str, str], tmp_path: Path
) -> None:
    src = tmp_path / "z.txt"
    src.write_text("z")
    error = one_line_error(cli("store-file", str(src), "--upload-to-channel", "lab"))
    assert "channels need a node" in error
    assert not (Path(kenv["KACHERY_STORAGE_DIR"]) / "sha1").exists()  # checked before storing
    error = one_line_error(cli("load-file", f"sha1://{random_sha1()}", "--channel", "lab"))
    assert "channels need a node" in error and "'lab'" in error
    shown = cli("config", env=dict(kenv, KACHERY_CHANNEL="lab", KACHERY_CHANNEL_TIMEOUT="5"))
    assert re.search(r"^channel\s+lab\s+\[environment KACHERY_CHANNEL", shown.stdout, re.M)
    assert re.search(r"^channel_timeout\s+5.0\s", shown.stdout, re.M)
