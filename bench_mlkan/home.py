"""Where a user's outputs go: ``$BENCH_MLKAN_HOME``, else the current directory.

Never inside the installed package (a ``pip install``-ed copy lives in site-packages).
``tune`` writes its studies to ``<home>/studies/`` and its tuned configs to
``<home>/tuned/<baseline>/<task>.json`` (``--out DIR`` replaces the home for one command).
``bench`` writes records to ``<home>/runs/results/<profile>/`` and tables to
``<home>/runs/leaderboards/<profile>/`` unless ``--results``/``--leaderboards`` say
otherwise; everything else a bench writes (W&B offline runs, Lightning logs) goes beside
its records root (``outputs_root``), and mid-run checkpoints beside each record.
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


def default_results() -> Path:
    """``<home>/runs/results``: the bench's records root unless ``--results`` is given."""
    return home() / "runs" / "results"


def default_leaderboards() -> Path:
    """``<home>/runs/leaderboards``: the bench's tables for ``default_results()``."""
    return home() / "runs" / "leaderboards"


def outputs_root(results: str | os.PathLike[str]) -> Path:
    """The folder beside a records root that takes a bench's other outputs (``wandb/``,
    ``logs/``): the records root's parent (``<home>/runs`` for the default)."""
    return Path(results).expanduser().resolve().parent


def wandb_root(outputs: str | os.PathLike[str]) -> Path:
    """The ``dir`` handed to ``wandb.init``: ``$WANDB_DIR`` if set, else ``outputs`` (an
    ``outputs_root``). W&B puts its runs in ``<it>/wandb/`` (offline:
    ``<it>/wandb/offline-run-*``), so a bench's runs share one folder."""
    env = os.environ.get("WANDB_DIR")
    return Path(env).expanduser().resolve() if env else Path(outputs)
