"""The node's gRPC API: `kachery.proto` and the Python code grpcio-tools generates from it.

The generated modules (`kachery_pb2`, `kachery_pb2_grpc`) are committed and imported only
by the node's gRPC service and the `grpc` backend, never when the CLI starts. Regenerate
them with `scripts/generate_grpc.sh`; `tests/core/test_grpc_codegen.py` fails when they differ
from what the pinned grpcio-tools produces.
"""
