"""Registers kachery's built-in backends, exactly as a third-party plugin would.

kachery_client.backends.registry imports this module by name (`BUILTIN_PLUGINS`); its backend names
are reserved: a third-party plugin announcing one of them is refused.
"""

from __future__ import annotations

from typing import List

from kachery_core.backend.hookspecs import BackendSpec, hookimpl


@hookimpl
def kachery_register_backends() -> List[BackendSpec]:
    return [
        BackendSpec(
            "local",
            "kachery_transports.local:LocalTransport",
            "embedded: reads and writes the storage directory directly, no node needed",
        ),
        BackendSpec(
            "http",
            "kachery_transports.http:HttpDaemonTransport",
            "a node on this machine over HTTP, sharing its storage directory",
            requires=("requests",),
        ),
        BackendSpec(
            "remote",
            "kachery_transports.remote:RemoteDaemonTransport",
            "a node on another machine over HTTP; its storage mounted here, or a local cache",
            requires=("requests",),
        ),
        BackendSpec(
            "grpc",
            "kachery_transports.grpc:GrpcDaemonTransport",
            "a node over its gRPC API (--grpc-port); loads stream into a local cache",
            requires=("grpcio",),
        ),
        BackendSpec(
            "offline",
            "kachery_transports.offline:OfflineTransport",
            "read-only: loads files from KACHERY_OFFLINE_STORAGE_DIR, contacts no node",
        ),
    ]
