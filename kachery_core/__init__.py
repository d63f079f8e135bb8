"""Core of kachery: only what the node and the clients share.

Floors, lowest first (tests/system/test_layers.py enforces them; ARCHITECTURE.md draws
them): this package's own modules (errors, atomic files, progress), then `content`,
`settings`, `protocol`, `store`, `grpc_api` and `backend`.

Importing this package is cheap on purpose: the CLI imports it on every call, so
heavy modules (numpy, cryptography, network libraries) are imported only where used.
"""

import sys

__version__ = "2.0.0.dev0"

if sys.version_info < (3, 9):  # pragma: no cover - only on the oldest supported Python
    import warnings

    # kachery supports 3.8; cryptography warns on import that it is deprecating it, which
    # would break the one-line output of every command that verifies or signs.
    warnings.filterwarnings("ignore", message="Python 3.8 is no longer supported")
