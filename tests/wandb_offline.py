"""Read W&B offline run folders back without W&B's own reader (tests only).

A run file ``run-<id>.wandb`` is a 7-byte header (``:W&B``, magic, version) followed by
a LevelDB-style log: 32 KiB blocks of chunks, each ``crc32c (4) | length (2, little
endian) | type (1)`` then ``length`` bytes; type 1 is a whole record, 2/3/4 the first,
middle and last piece of one; a block's tail shorter than a chunk header is zero padding.
Each record is a ``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7


def records(path: Path) -> list[Any]:
    """Every protobuf Record of a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    out, pos, parts = [], HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        pos += HEADER
        if kind == 0 and length == 0:
            pos += left - HEADER  # zero padding to the block's end
            continue
        chunk = data[pos : pos + length]
        pos += length
        if kind == 1:
            parts = chunk
        elif kind == 2:
            parts = chunk
            continue
        elif kind == 3:
            parts += chunk
            continue
        else:
            parts += chunk
        rec = pb.Record()
        rec.ParseFromString(parts)
        out.append(rec)
        parts = b""
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


@dataclass
class OfflineRun:
    """What one offline run folder holds, decoded."""

    folder: Path
    run_id: str = ""
    project: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, str] = field(default_factory=dict)  # glob/name -> step_metric
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None

    def tables(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        """``{history key: {"columns", "data"}}`` of the ``wandb.Table``s logged."""
        out = {}
        for row in self.history:  # nested values arrive flattened: <key>/_type, <key>/path
            for key, value in row.items():
                base = key.removesuffix("/_type")
                if key.endswith("/_type") and value == "table-file" and base.startswith(prefix):
                    out[base] = json.loads(
                        (self.folder / "files" / row[f"{base}/path"]).read_text()
                    )
        return out


def read_run(folder: Path) -> OfflineRun:
    folder = Path(folder)
    (path,) = folder.glob("run-*.wandb")
    run = OfflineRun(folder)
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.project = rec.run.run_id, rec.run.project
            run.tags = list(rec.run.tags)
            for item in rec.run.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                run.config[_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            run.history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            for item in rec.summary.update:
                run.summary[_key(item)] = json.loads(item.value_json)
        elif kind == "metric":
            name = rec.metric.name or rec.metric.glob_name
            run.metrics[name] = rec.metric.step_metric
        elif kind == "artifact":
            run.artifacts.append(
                {
                    "name": rec.artifact.name,
                    "type": rec.artifact.type,
                    "files": {e.path: e.digest for e in rec.artifact.manifest.contents},
                    "metadata": json.loads(rec.artifact.metadata or "{}"),
                }
            )
        elif kind == "exit":
            run.exit_code = rec.exit.exit_code
    return run


def read_all(wandb_dir: Path, timeout: float = 30.0) -> list[OfflineRun]:
    """Every ``offline-run-*`` folder under ``wandb_dir``, once each has its exit record
    (W&B's service may still be writing the last run's file when ``finish`` returns)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        runs = [read_run(p) for p in sorted(Path(wandb_dir).glob("offline-run-*"))]
        if all(r.exit_code is not None for r in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)
