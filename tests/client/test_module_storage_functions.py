"""The storage functions of the module API act on the default client's storage."""

from __future__ import annotations

from typing import Dict

import kachery_client as kc


def test_usage_pin_unpin_drop_and_gc_as_module_functions(kenv: Dict[str, str]) -> None:
    uri = kc.store_bytes(b"kept unless unpinned\n")
    assert kc.usage()["pinned"]["count"] == 1
    assert kc.unpin([uri]) == 1
    assert (kc.usage()["pinned"]["count"], kc.usage()["cached"]["count"]) == (0, 1)
    assert kc.gc(dry_run=True).evicted == 0  # used just now: within the grace period
    assert kc.pin([uri]) == 1
    assert kc.drop([uri], force=True) == [(uri[len("sha1://") :].split("/")[0], 21)]
    assert kc.usage()["total"]["count"] == 0
