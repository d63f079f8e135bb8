"""Core of kachery: URIs, storage layout, configuration, the transport interface and plugins.

Importing this package is cheap on purpose: the CLI imports it on every call, so
heavy modules (numpy, cryptography, network libraries) are imported only where used.
"""

__version__ = "2.0.0.dev0"
