"""The defaults of the node's connection limits, in one light module.

`kachery-daemon start` shows them as its options' defaults and `ServerLimits` falls back
on them; this module imports nothing, so the command line reads them without loading
aiohttp.
"""

DEFAULT_HEADER_SECONDS = 10.0
DEFAULT_BODY_IDLE_SECONDS = 60.0
DEFAULT_KEEPALIVE_SECONDS = 75.0
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_WRITE_SECONDS = 60.0
DEFAULT_JSON_BODY_SECONDS = 10.0
DEFAULT_BODY_MIN_RATE = 1024.0
"""Bytes per second a body must average after its head start (`ServerLimits`)."""
