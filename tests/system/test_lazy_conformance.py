"""Every built-in backend held to the lazy-read cases of the kit
(`kachery_client.lazy_contract.LazyReadContract`), with the backends of test_conformance."""

from __future__ import annotations

from test_conformance import TestHttpContract as _Http
from test_conformance import TestLocalContract as _Local
from test_conformance import TestOfflineContract as _Offline
from test_conformance import TestRemoteContract as _Remote
from test_conformance import TestRemoteSharedStorageContract as _RemoteShared
from test_conformance import shared_node  # noqa: F401 - the module's node, as a fixture

from kachery_client.lazy_contract import LazyReadContract


class TestLocalLazy(LazyReadContract):
    backend = _Local.backend


class TestOfflineLazy(LazyReadContract):
    backend = _Offline.backend


class TestHttpLazy(LazyReadContract):
    backend = _Http.backend


class TestRemoteLazy(LazyReadContract):
    backend = _Remote.backend


class TestRemoteSharedStorageLazy(LazyReadContract):
    backend = _RemoteShared.backend
