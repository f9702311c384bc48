"""Generate ``metrics_pb2.py`` and ``metrics_pb2.pyi`` from the vendored ``metrics.proto``
with grpcio-tools' protoc (the version pinned in pyproject.toml's dev extra).

    python -m trading_telemetry._client_model._generate [OUT_DIR]

writes them to ``OUT_DIR/io/prometheus/client/`` (default: beside the .proto)."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).parent
PROTO = "io/prometheus/client/metrics.proto"


def generate(out: Path = ROOT) -> list[Path]:
    """Run protoc on the vendored file; returns the paths it wrote."""
    from grpc_tools import protoc  # a dev dependency

    includes = resources.files("grpc_tools") / "_proto"  # google/protobuf/timestamp.proto
    (out / PROTO).parent.mkdir(parents=True, exist_ok=True)
    status = protoc.main(
        ["protoc", f"-I{ROOT}", f"-I{includes}", f"--python_out={out}", f"--pyi_out={out}", str(ROOT / PROTO)]
    )
    if status != 0:
        raise SystemExit(f"protoc failed on {ROOT / PROTO} (exit {status})")
    return [out / PROTO.replace(".proto", "_pb2.py"), out / PROTO.replace(".proto", "_pb2.pyi")]


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT):
        print(path)
