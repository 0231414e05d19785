"""Check that a multilevel run under DDP keeps every rank identical across refinements.

Run as its own process (never inside pytest: DDP re-launches the command)::

    python -m bench_mlkan.devtools.ddp_check --devices 2 --out ddp.json [--accelerator gpu]

It trains a small multilevel KAN regression with ``strategy="ddp"`` (gloo on CPU), after
every step gathers a fingerprint of each rank's parameters, compares the final model with
a single-process run of the same config (the data are sharded, the loss is additive, so
the two agree to round-off), and writes a JSON report; exit code 0 when all is equal.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import lightning as L
import torch

from ..config import RunConfig
from ..engine import train


class RankFingerprint(L.Callback):
    """After each step, all-gather sum(params) and sum(params**2) (float64) across ranks."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        flat = torch.cat([p.detach().reshape(-1).double() for p in pl_module.model.parameters()])
        mine = torch.stack(
            [flat.sum(), (flat**2).sum(), torch.tensor(float(flat.numel()), dtype=torch.float64)]
        )
        if trainer.world_size > 1:
            gathered = [torch.zeros_like(mine) for _ in range(trainer.world_size)]
            torch.distributed.all_gather(gathered, mine)
        else:
            gathered = [mine]
        self.records.append(
            {
                "step": trainer.global_step,
                "level": pl_module.level,
                "ranks": [g.tolist() for g in gathered],
            }
        )


def _config(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        task="regression_rotated",
        task_options={"size": "tiny"},
        model="kan",
        model_options={
            "widths": [2, 4, 1],
            "grid_size": 3,
            "degree": 3,
            "linear_first": True,
            "linear_bias": True,
            "squash": "tanh",
        },
        schedule=[3, 3, 3],
        optimizer="adam",
        lr=1e-2,
        lr_start=1e-3,
        warmup_steps=2,
        accelerator=args.accelerator,
        devices=args.devices,
        strategy="ddp",
        progress=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    fingerprint = RankFingerprint()
    config = _config(args)
    result = train(config, callbacks=[fingerprint])
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return 0
    single = train(config.replace(devices=1, strategy="auto", accelerator="cpu"))
    assert result.model is not None and single.model is not None
    ddp_params = torch.cat([p.detach().cpu().reshape(-1) for p in result.model.parameters()])
    one_params = torch.cat([p.detach().cpu().reshape(-1) for p in single.model.parameters()])
    max_diff = float((ddp_params - one_params).abs().max())
    ranks_equal = all(
        all(r == rec["ranks"][0] for r in rec["ranks"]) for rec in fingerprint.records
    )
    report = {
        "devices": args.devices,
        "status": result.status,
        "steps": result.steps,
        "levels": sorted({rec["level"] for rec in fingerprint.records}),
        "ranks_identical_every_step": ranks_equal,
        "refinements": [
            {k: r[k] for k in ("level", "step", "loss_before", "loss_after", "rel_change")}
            for r in result.refinements
        ],
        "max_abs_diff_vs_single_process": max_diff,
        "loss_ddp": result.final_metrics.get("train_loss"),
        "loss_single": single.final_metrics.get("train_loss"),
        "fingerprints": fingerprint.records,
    }
    ok = (
        ranks_equal
        and result.status == "ok"
        and len(result.refinements) == 2
        and max_diff < 1e-9
        and math.isfinite(report["loss_ddp"] or math.nan)
    )
    report["ok"] = ok
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
