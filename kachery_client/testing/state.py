"""The contract for what a node keeps besides files: mutables and feeds, and closing."""

from __future__ import annotations

import hashlib
import os

import pytest

from kachery_client.testing.support import (
    ContractBackend,
    ContractCases,
)
from kachery_core.backend.base import SubfeedWatch
from kachery_core.errors import (
    UnsupportedOperation,
)


class StateCases(ContractCases):
    """Mutables, feeds (refused alike by a backend without them) and `close()`."""

    # -- mutables and feeds ------------------------------------------------------------

    def test_mutables(self, backend: ContractBackend) -> None:
        t = backend.transport
        key = {"contract": os.urandom(8).hex()}
        if not self.has_mutables:
            with pytest.raises(UnsupportedOperation):
                t.mutable_get(key)
            return
        assert t.mutable_get(key) == (False, None)
        t.mutable_set(key, {"value": [1, 2, 3]})
        assert t.mutable_get(key) == (True, {"value": [1, 2, 3]})
        t.mutable_set(key, "second", update=False)  # no update: the first value stays
        assert t.mutable_get(key) == (True, {"value": [1, 2, 3]})
        t.mutable_set(key, "third")
        assert t.mutable_get(key) == (True, "third")
        t.mutable_delete(key)
        assert t.mutable_get(key) == (False, None)

    def test_feeds(self, backend: ContractBackend) -> None:
        t = backend.transport
        if not self.has_feeds:
            with pytest.raises(UnsupportedOperation):
                t.create_feed()
            return
        name = f"contract-{os.urandom(4).hex()}"
        feed_id = t.create_feed(name)
        assert t.get_feed_id(name) == feed_id
        subfeed = hashlib.sha1(b"main").hexdigest()
        assert t.get_num_messages(feed_id, subfeed) == 0
        t.append_messages(feed_id, subfeed, [{"n": 1}, {"n": 2}])
        assert t.get_num_messages(feed_id, subfeed) == 2
        got = t.watch_for_new_messages({"w": SubfeedWatch(feed_id, subfeed, 1)}, wait_msec=100)
        assert got == {"w": [{"n": 2}]}
        t.delete_feed(feed_id)
        assert t.get_feed_id(name) is None

    # -- lifecycle ---------------------------------------------------------------------

    def test_close_twice(self, backend: ContractBackend) -> None:
        backend.transport.close()
        backend.transport.close()
