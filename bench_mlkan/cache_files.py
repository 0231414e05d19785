"""Content-verified cache files: sha256 beside the file, atomic writes, a build lock.

A cached artefact ``F`` (the compiled C kernel, the Allen-Cahn reference) is stored with a
sidecar ``F.sha256`` (JSON: the file's sha256 plus whatever identifies what was built).
Readers call ``verify`` before using ``F``; anything else - missing sidecar, other key,
truncated or modified file - means "rebuild". Writers build under ``build_lock(F)`` (an
advisory ``flock`` on ``F.lock``, so concurrent builders wait instead of racing), write to a
unique temporary name in the same folder, fsync, and rename atomically: a reader never sees
a partial file, and a process that already mapped an old file keeps its (intact) inode.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


class CacheWarning(UserWarning):
    """A cache file failed verification and is being rebuilt."""


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify(path: Path, key: str) -> str | None:
    """None when ``path`` and its sidecar agree (sha256 and ``key``), else the reason."""
    if not path.exists():
        return "missing"
    try:
        meta = json.loads(sidecar(path).read_text())
        expected, stored_key = meta["sha256"], meta["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return "no valid checksum file"
    if stored_key != key:
        return "checksum file of another build"
    try:
        actual = sha256_file(path)
    except OSError as err:
        return f"unreadable ({err})"
    if actual != expected:
        return f"sha256 mismatch (truncated or modified; {os.path.getsize(path)} bytes)"
    return None


def warn_rebuild(path: Path, reason: str) -> None:
    warnings.warn(f"cache {path} {reason}: rebuilding it", CacheWarning, stacklevel=3)


@contextlib.contextmanager
def build_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path.lock`` (no-op where ``fcntl`` is unavailable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[IO[bytes]], object], mode: int = 0o644) -> None:
    """Write ``path`` through ``write(file)`` to a unique temporary, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _fsync_dir(path.parent)


def install(tmp_file: Path, path: Path, key: str, **meta: Any) -> str:
    """Move a finished ``tmp_file`` (same folder) to ``path`` with its sidecar; its sha256.

    The sidecar is written first: a reader that sees the new file with the old sidecar, or
    the reverse, fails verification and waits on the build lock, never uses a bad file.
    """
    with open(tmp_file, "rb") as fh:
        os.fsync(fh.fileno())
    digest = sha256_file(tmp_file)
    text = json.dumps({"sha256": digest, "key": key, **meta}, sort_keys=True).encode()
    atomic_write(sidecar(path), lambda fh: fh.write(text))
    os.replace(tmp_file, path)
    _fsync_dir(path.parent)
    return digest
