"""Every built-in backend held to one contract: `kachery_client.testing.TransportContract`.

The node-backed backends share one real node per module (started on a loopback port);
each backend gets its own client configuration, built explicitly (no process env).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterator

import pytest
from conftest import free_port
from node_fixtures import NodeProcess

from kachery_client.testing import ContractBackend, TransportContract
from kachery_core.content.uri import ContentUri
from kachery_core.settings.config import resolve_config
from kachery_core.store.local import LocalStorage
from kachery_daemon.tokens import TokenStore
from kachery_transports.http import HttpDaemonTransport
from kachery_transports.local import LocalTransport
from kachery_transports.offline import OfflineTransport
from kachery_transports.remote import RemoteDaemonTransport


def _env(tmp_path: Path, **values: str) -> Dict[str, str]:
    """A private environment: no user or system config file, nothing inherited."""
    return dict(
        KACHERY_CONFIG=str(tmp_path / "config.toml"),
        KACHERY_SYSTEM_CONFIG=str(tmp_path / "system.toml"),
        **values,
    )


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("conformance-node")
    env = dict(os.environ, **_env(root), KACHERY_DAEMON_PORT=str(free_port()))
    env = {k: v for k, v in env.items() if k != "KACHERY_STORAGE_DIR"}
    node = NodeProcess(root / "storage", env, ["--auth-rotate-seconds", "300"])
    try:
        node.start()
        yield node
    finally:
        node.stop()


class TestLocalContract(TransportContract):
    has_mutables = has_feeds = False  # they live in a node

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[ContractBackend]:
        env = _env(tmp_path, KACHERY_STORAGE_DIR=str(tmp_path / "storage"))
        transport = LocalTransport.from_config(resolve_config(env=env))
        yield ContractBackend(transport)
        transport.close()


class TestOfflineContract(TransportContract):
    can_store = can_link = has_mutables = has_feeds = False

    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[ContractBackend]:
        offline = tmp_path / "offline"
        offline.mkdir()
        env = _env(tmp_path, KACHERY_OFFLINE_STORAGE_DIR=str(offline))
        transport = OfflineTransport.from_config(resolve_config(env=env))
        published = LocalStorage(offline)

        def seed(data: bytes) -> ContentUri:
            return published.store_bytes(data).uri()

        yield ContractBackend(transport, seed)
        transport.close()


class TestHttpContract(TransportContract):
    @pytest.fixture
    def backend(self, tmp_path: Path, shared_node: NodeProcess) -> Iterator[ContractBackend]:
        env = _env(
            tmp_path,
            KACHERY_DAEMON_PORT=str(shared_node.port),
            KACHERY_STORAGE_DIR=str(shared_node.storage_dir),
        )
        transport = HttpDaemonTransport.from_config(resolve_config(env=env))
        yield ContractBackend(transport)
        transport.close()


class TestRemoteContract(TransportContract):
    """A client whose cache is not the node's storage: every byte crosses the socket."""

    can_link = False  # the node cannot see this machine's files

    @pytest.fixture
    def backend(self, tmp_path: Path, shared_node: NodeProcess) -> Iterator[ContractBackend]:
        _, token = TokenStore(shared_node.storage_dir).create(f"contract {tmp_path.name}")
        env = _env(
            tmp_path,
            KACHERY_DAEMON_PORT=str(shared_node.port),
            KACHERY_STORAGE_DIR=str(tmp_path / "cache"),
            KACHERY_AUTH_TOKEN=token,
        )
        transport = RemoteDaemonTransport.from_config(resolve_config(env=env))
        yield ContractBackend(transport)
        transport.close()


class TestRemoteSharedStorageContract(TransportContract):
    """The lab setup: the node's storage is mounted where the client can read it."""

    @pytest.fixture
    def backend(self, tmp_path: Path, shared_node: NodeProcess) -> Iterator[ContractBackend]:
        env = _env(
            tmp_path,
            KACHERY_DAEMON_PORT=str(shared_node.port),
            KACHERY_STORAGE_DIR=str(shared_node.storage_dir),
        )
        transport = RemoteDaemonTransport.from_config(resolve_config(env=env))
        transport.node_info()
        assert transport.shared
        yield ContractBackend(transport)
        transport.close()
