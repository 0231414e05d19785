"""Weights & Biases, safely: offline unless an API key is set, never a hang without network.

Local JSON records stay the source of truth; W&B mirrors them. ``WANDB_MODE`` set by the
user (``disabled``, ``offline``, ``online``) is always honoured.
"""

from __future__ import annotations

import os
from typing import Any


def wandb_mode() -> str:
    """``WANDB_MODE`` if set, else "online" with an API key, else "offline"."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def wandb_enabled(requested: bool) -> bool:
    return requested and wandb_mode() != "disabled"


def make_logger(
    project: str, group: str, name: str, config: dict[str, Any], tags: list[str], save_dir: str
):
    """A Lightning ``WandbLogger`` (or None when W&B is disabled)."""
    if wandb_mode() == "disabled":
        return None
    from lightning.pytorch.loggers import WandbLogger

    os.makedirs(save_dir, exist_ok=True)
    return WandbLogger(
        project=project,
        group=group,
        name=name,
        config=config,
        tags=tags,
        save_dir=save_dir,
        mode=wandb_mode(),
        reinit="finish_previous",
        settings=_settings(),
    )


def _settings():
    import wandb

    # no console capture, no code saving; short init timeout so a dead network cannot hang a run
    return wandb.Settings(console="off", save_code=False, init_timeout=60, silent=True)


def log_summary(logger, record: dict[str, Any]) -> None:
    """Put a record's final numbers into the run summary and curves per work."""
    if logger is None:
        return
    run = logger.experiment
    run.summary.update({f"final/{k}": v for k, v in record.get("final_metrics", {}).items()})
    run.summary.update(
        {
            "status": record["status"],
            "params": record["params"],
            "work": record["work"],
            "work_macs": record["work_macs"],
            "wall_clock": record["wall_clock"],
        }
    )
    run.define_metric("by_work/*", step_metric="by_work/work")
    for row in record.get("history", []):
        run.log({"by_work/work": row["work"], "by_work/loss": row["loss"]}, commit=True)
