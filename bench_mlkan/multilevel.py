"""``MultilevelStrategy``: coarse-to-fine training as a Lightning callback (METHOD.md 4).

At each level boundary (a global step count) it refines the model exactly, checks that
the loss right after equals the loss right before (to ``refine_rtol``; a mismatch raises
``RefinementError``), rebuilds the optimizer and LR scheduler (the warm-up ramp restarts)
and optionally carries Adam moments across by prolonging them. Single-level runs are the
same callback with one level, so every strategy shares this code path.

The callback keeps no state of its own: the level lives in the LightningModule (saved
in checkpoints; the module rebuilds that level in ``on_load_checkpoint``) and the target
level follows from ``trainer.global_step``, so refinement is idempotent and a resumed
run refines exactly where an uninterrupted one would.

The interface it needs from the LightningModule (any module, not only the suite's
``TaskModule``; see ``tests/test_contracts.py`` for a minimal one):

    model: nn.Module           a ``bench_mlkan.contracts.RefinableModel``; replaced by
                               ``model.refined()`` at each boundary
    level: int                 the current level (incremented here; save it in checkpoints)
    current_loss() -> float    the full training loss at the current parameters

and, when present, these are used too: ``level_end_metrics() -> dict`` (evaluated just
before each refinement and stored in the record), ``snapshot_level()`` (keep the level's
final weights), ``refinements: list`` (each refinement's record is appended),
``log_refinement(record)``, ``work`` / ``work_macs`` (copied into the record). The
strategy's own ``refinements`` list holds the same records.

Models whose ``exact_refinement`` is False (e.g. a least-squares grid extension) are not
checked: the loss change is recorded (``exact: false``) and training goes on.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from itertools import accumulate

import lightning as L


class RefinementError(RuntimeError):
    """The loss changed across a refinement by more than the tolerance."""


class MultilevelStrategy(L.Callback):
    """Refine at the boundaries of ``schedule`` (steps per level, from ``start_level``).

    Args:
        schedule: steps at levels start_level, start_level+1, ... (zeros allowed in between).
        start_level: the level the model is built at.
        refine_rtol: allowed |loss_after - loss_before| / max(|loss_before|, tiny).
        carry_optimizer_state: prolong Adam/AdamW moments instead of resetting them.
    """

    def __init__(
        self,
        schedule: Sequence[int],
        start_level: int = 0,
        refine_rtol: float = 1e-9,
        carry_optimizer_state: bool = False,
    ):
        if not schedule or any(s < 0 for s in schedule):
            raise ValueError(f"schedule must be non-empty with steps >= 0, got {list(schedule)!r}")
        self.schedule, self.start_level = list(schedule), start_level
        self.boundaries = list(accumulate(self.schedule))  # end step of each level
        self.refine_rtol, self.carry_optimizer_state = refine_rtol, carry_optimizer_state
        self.refinements: list[dict] = []

    @property
    def total_steps(self) -> int:
        return self.boundaries[-1]

    def level_at(self, step: int) -> int:
        """The level that trains optimizer step ``step`` (0-based)."""
        i = bisect.bisect_right(self.boundaries, step)
        return self.start_level + min(i, len(self.schedule) - 1)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._advance(trainer, pl_module)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int
    ) -> None:
        # Also here: a run resumed from a checkpoint written at a batch end restarts
        # without an epoch start, and must still refine before its next step.
        self._advance(trainer, pl_module)

    def _advance(self, trainer: L.Trainer, pl_module) -> None:
        target = self.level_at(trainer.global_step)
        while pl_module.level < target:
            self.refine(trainer, pl_module)

    def refine(self, trainer: L.Trainer, pl_module) -> None:
        """Refine ``pl_module.model`` one level, check the loss, rebuild the optimizer."""
        old_model, old_optimizers = pl_module.model, list(trainer.optimizers)
        level_end = _call(pl_module, "level_end_metrics", {})
        _call(pl_module, "snapshot_level", None)
        before = pl_module.current_loss()
        pl_module.model = old_model.refined()
        pl_module.level += 1
        after = pl_module.current_loss()
        rel = abs(after - before) / max(abs(before), 1e-300)
        exact = bool(getattr(old_model, "exact_refinement", True))
        record = {
            "level": pl_module.level,
            "step": trainer.global_step,
            **{k: getattr(pl_module, k) for k in ("work", "work_macs") if hasattr(pl_module, k)},
            "loss_before": before,
            "loss_after": after,
            "rel_change": rel,
            "exact": exact,
            "level_end_metrics": level_end,
        }
        self.refinements.append(record)
        if isinstance(getattr(pl_module, "refinements", None), list):
            pl_module.refinements.append(record)
        _call(pl_module, "log_refinement", None, record)
        if exact and not rel <= self.refine_rtol:
            # the run stops here: keep the trained coarse model as its last level
            pl_module.model, pl_module.level = old_model, pl_module.level - 1
            trainer.should_stop = True
            raise RefinementError(
                f"loss changed across refinement to level {pl_module.level}: before {before!r}, "
                f"after {after!r} (relative {rel:.3e} > refine_rtol {self.refine_rtol:.1e})"
            )
        self._rewrap_ddp(trainer, pl_module)
        trainer.strategy.setup_optimizers(trainer)
        if self.carry_optimizer_state:
            self._carry_moments(
                old_model, old_optimizers[0], pl_module.model, trainer.optimizers[0]
            )

    @staticmethod
    def _rewrap_ddp(trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lightning.pytorch.strategies import DDPStrategy

        strategy = trainer.strategy
        if isinstance(strategy, DDPStrategy):
            strategy.model = pl_module
            strategy.configure_ddp()

    @staticmethod
    def _carry_moments(old_model, old_opt, new_model, new_opt) -> None:
        """Prolong Adam's exp_avg / exp_avg_sq with each parameter's refinement map."""
        old_params = dict(old_model.named_parameters())
        for name, p_new in new_model.named_parameters():
            state = old_opt.state.get(old_params[name])
            if not state:
                continue
            carried = {"step": state["step"].clone()}
            for key in ("exp_avg", "exp_avg_sq"):
                t = old_model.prolong_parameter_tensor(name, state[key])
                carried[key] = t.abs() if key == "exp_avg_sq" else t
            new_opt.state[p_new] = carried


def _call(obj, name: str, default, *args):
    """``obj.name(*args)`` when obj has it, else ``default``."""
    fn = getattr(obj, name, None)
    return fn(*args) if callable(fn) else default
