#!/usr/bin/env bash
# Regenerates the committed gRPC code from kachery_core/grpc_api/kachery.proto with
# grpcio-tools (the exact version pinned in pyproject.toml's test extra):
#
#   scripts/generate_grpc.sh            # rewrite kachery_core/grpc_api/kachery_pb2*.py(i)
#   scripts/generate_grpc.sh OUT_DIR    # write them under OUT_DIR instead (the test compares)
#
# PYTHON picks the interpreter (default: .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
mkdir -p "$out"
# -I . makes the generated imports absolute (kachery_core.grpc_api.kachery_pb2).
"$python" -m grpc_tools.protoc -I . \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
    kachery_core/grpc_api/kachery.proto
