"""The transport contract, as a pytest test class that any backend can run against itself.

Every built-in backend runs this suite, and a plugin author runs it against their own
backend to show it behaves like the others: same URIs, same bytes, same errors for the
same bad input. Subclass `TransportContract`, say what your backend can do, and provide a
`backend` fixture:

    import pytest
    from kachery_client.testing import ContractBackend, TransportContract

    class TestMyBackend(TransportContract):
        can_store = can_link = has_mutables = has_feeds = False   # read-only

        @pytest.fixture
        def backend(self, tmp_path):
            transport = MyTransport.from_config(...)
            yield ContractBackend(transport, seed=lambda data: publish(data))
            transport.close()

`seed(data)` must put the bytes where the backend can find them and return their
`ContentUri`; for a backend that can store, leave it out and the suite stores through the
backend itself. `pytest` is needed only to run the suite, not to import kachery.

The suite also wraps your transport in `TamperingTransport` (wrong bytes on reads, a wrong
hash in store answers) and checks that the client's checks (`kachery_client.verified_read`,
`verified_store`, which `Client` and the CLI use) refuse both with `IntegrityError`. Nothing more is needed from the fixture.
"""

from __future__ import annotations

from kachery_client.testing.directories import DirectoryCases
from kachery_client.testing.files import FileCases
from kachery_client.testing.lazy import LazyCases
from kachery_client.testing.state import StateCases
from kachery_client.testing.support import (
    LARGE_SIZE,
    MISSING_SHA1,
    ContractBackend,
    ContractCases,
    TamperingTransport,
)

__all__ = [
    "LARGE_SIZE",
    "MISSING_SHA1",
    "ContractBackend",
    "ContractCases",
    "DirectoryCases",
    "FileCases",
    "LazyCases",
    "StateCases",
    "TamperingTransport",
    "TransportContract",
]


class TransportContract(LazyCases, StateCases, DirectoryCases, FileCases):
    """The behaviour every kachery backend shares. Subclasses provide `backend`.

    pytest runs the cases of base classes last-listed first, so files come first, then
    directories, then state, then lazy reads, as a reader of the groups would expect.
    """
