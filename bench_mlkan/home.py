"""Where a user's outputs go: ``$BENCH_MLKAN_HOME``, else the current directory.

Never inside the installed package. ``tune`` writes its studies to ``<home>/studies/`` and
its tuned configs to ``<home>/tuned/<baseline>/<task>.json`` (``--out DIR`` replaces the
home for one command).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "BENCH_MLKAN_HOME"


def home(out: str | os.PathLike[str] | None = None) -> Path:
    """``out`` if given, else ``$BENCH_MLKAN_HOME``, else the current directory (absolute)."""
    if out is not None:
        return Path(out).expanduser().resolve()
    env = os.environ.get(ENV)
    return Path(env).expanduser().resolve() if env else Path.cwd()


def tuned_file(baseline: str, task: str, out: str | os.PathLike[str] | None = None) -> Path:
    """``<home>/tuned/<baseline>/<task>.json``: where ``tune`` writes a tuned config."""
    return home(out) / "tuned" / baseline / f"{task}.json"
