"""kachery-mirror: load kachery objects from a storage directory that a web server publishes.

The plugin module (`kachery_mirror.plugin`) is what kachery imports through the
`kachery.plugins` entry point; it stays light. The transport, which needs `requests`,
is imported only when the `mirror` backend is actually used.
"""

__version__ = "0.1.0"
