"""The backend interface a client reaches a node through, and the hooks plugins implement.

Built-in backends (kachery_transports) and third-party plugins implement
`base.Backend` and register through `hookspecs`; the client picks and drives them.
The node never imports this sub-package: it serves storage, it is not a backend.
"""
