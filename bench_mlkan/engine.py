"""The training engine: one LightningModule for any model x task, and ``train(config)``.

``train(RunConfig(...)) -> RunResult`` is the entry point the bench and the tuning call.
The module holds no maths: the task computes the loss terms and metrics, the model is a
plain ``nn.Module``, ``MultilevelStrategy`` refines it, ``work.COST_MODELS`` prices steps.

Training is full batch (one optimizer step per epoch). Under DDP each rank keeps every
``world_size``-th point of each training set; loss terms are additive over shards, so the
rank losses are scaled by ``world_size`` before DDP averages the gradients.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, cast

import lightning as L
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor, nn

from .config import ConfigError, RunConfig, accepted_options
from .contracts import ModelContractError, check_model
from .diagnostics import is_collapsed, outside_grid_fractions, relative_spread
from .models import MODELS, count_parameters
from .multilevel import MultilevelStrategy
from .optim import lr_factor, make_optimizer
from .task import Task
from .work import COST_MODELS


def count_points(batch: dict[str, Tensor]) -> int:
    """Training points of a batch: rows of its input point sets, the tensors keyed ``x`` or
    ``x_<set>`` (targets such as ``y`` and index tensors are not points)."""
    return sum(v.shape[0] for k, v in batch.items() if k == "x" or k.startswith("x_"))


def total(terms: dict[str, Tensor]) -> Tensor:
    """The loss: the sum of the task's terms (left to right, as ``sum`` would)."""
    return functools.reduce(torch.add, terms.values())


# ----------------------------------------------------------------------------- module
class TaskModule(L.LightningModule):
    """Wraps ``model`` and ``task``: full-batch steps, level-aware, work-counting.

    ``config`` (a ``RunConfig`` or its dict) and ``level`` are saved as hyperparameters, so
    ``TaskModule.load_from_checkpoint(path)`` rebuilds the task and the model (at the
    checkpoint's level) from the checkpoint alone; ``model`` and ``task`` may be passed
    prebuilt (the engine does).
    """

    def __init__(
        self,
        config: RunConfig | dict[str, Any],
        level: int = 0,
        model: nn.Module | None = None,
        task: Task | None = None,
    ):
        super().__init__()
        config = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
        self.save_hyperparameters({"config": config.to_dict(), "level": level})
        if task is None:
            from bench_mlkan.tasks import TASKS

            task = TASKS[config.task](**config.task_options)
        if model is None:
            dtype = torch.float64 if config.precision == "64" else torch.float32
            model = build_model(config, task, level).to(dtype)
        self.automatic_optimization = False
        self.model, self.task, self.config = model, task, config
        self.level = level
        self.base_grid_size: int | None = config.model_options.get("grid_size")
        batch = task.train_batch()
        self.data: dict[str, Tensor] = dict(batch)
        self.state: dict[str, Tensor] = task.make_state(batch)
        self.num_points = count_points(batch)
        self.work = 0.0
        self.work_macs = 0.0
        self.work_evaluations = 0.0
        self.first_loss: float | None = None  # the run's first loss (blow-up reference)
        self.level_stats: dict[int, dict[str, float]] = {}  # per level: steps, evaluations, ...
        self.wall_offset = 0.0  # wall-clock of earlier sittings (resumed runs)
        self.t_fit = time.perf_counter()
        self.history: list[dict[str, Any]] = []
        self.eval_history: list[dict[str, Any]] = []
        self.refinements: list[dict[str, Any]] = []
        self.diverged: dict[str, Any] | None = None
        self.level_states: dict[int, dict[str, Tensor]] = {}  # weights at each level's end
        self.last: dict[str, float] = {}
        # per-parameter tau of an MG-OPT coarse visit (bench_mlkan.strategies): the loss gains
        # the term -<tau, params>; None otherwise
        self.loss_shift: dict[str, Tensor] | None = None

    # -- data placement and sharding -------------------------------------------------
    def setup(self, stage: str) -> None:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        if world > 1:
            self.data = {k: v[rank::world] for k, v in self.data.items()}
            self.state = {k: v[rank::world] for k, v in self.state.items()}

    def on_fit_start(self) -> None:
        self._place()
        self.t_fit = time.perf_counter()

    def _place(self) -> None:
        dtype = next(self.model.parameters()).dtype

        def put(v: Tensor) -> Tensor:
            return v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device)

        self.data = {k: put(v) for k, v in self.data.items()}
        self.state = {k: put(v) for k, v in self.state.items()}

    # -- optimisation ---------------------------------------------------------------
    def configure_optimizers(self):
        c = self.config
        opt = make_optimizer(c.optimizer, self.model.parameters(), c.lr, c.optimizer_options)
        factor = lr_factor(c.lr, c.lr_start, c.warmup_steps, c.lr_schedule, c.lr_schedule_options)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def loss_terms(self, update_state: bool = False) -> dict[str, Tensor]:
        terms = self.task.loss_terms(self.model, self.data, self.state, update_state=update_state)
        if self.loss_shift is not None:
            shift = [(p * self.loss_shift[n]).sum() for n, p in self.model.named_parameters()]
            terms = {**terms, "mgopt_shift": -functools.reduce(torch.add, shift)}
        return terms

    def current_loss(self) -> float:
        """The full loss (summed over ranks) at the current parameters, no state update."""
        with torch.enable_grad():
            loss = total(self.loss_terms()).detach()
        return float(self._all_reduce_sum(loss))

    def _finite_parameters(self) -> bool:
        """One check (one device sync) over all parameters."""
        return bool(torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all())

    def _parameter_versions(self) -> int:
        """Sum of the parameters' in-place version counters (changes iff a parameter was
        written; no copy, no device sync)."""
        return sum(p._version for p in self.model.parameters())

    def wall_clock(self) -> float:
        """Seconds of training so far, over all sittings of a resumed run."""
        return self.wall_offset + time.perf_counter() - self.t_fit

    def _all_reduce_sum(self, value: Tensor) -> Tensor:
        if self.trainer.world_size > 1:
            value = value.clone()
            torch.distributed.all_reduce(value)
        return value

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt = cast(LightningOptimizer, self.optimizers())
        world = self.trainer.world_size
        evaluations = 0
        first: list[Any] = []

        def closure() -> Tensor:
            nonlocal evaluations
            evaluations += 1
            opt.zero_grad(set_to_none=True)
            terms = self.loss_terms(update_state=evaluations == 1)
            loss = total(terms)
            if not first:
                first.append((loss.detach(), {k: v.detach() for k, v in terms.items()}))
            if torch.isfinite(loss):
                self.manual_backward(loss * world)
            return loss.detach()

        step, level = self.trainer.global_step, self.level
        lr = opt.param_groups[0]["lr"]
        versions = self._parameter_versions()
        try:
            opt.step(closure=closure)
        except RuntimeError:
            # An inner evaluation (e.g. an L-BFGS line search) on non-finite parameters can
            # fail inside a kernel (NaN cell indices): that is divergence, not a crash.
            if self._finite_parameters():
                raise
            first[:] = [(torch.tensor(math.nan, device=self.device), {})]
        loss, terms = first[0]
        # the loss and its terms summed over ranks in one reduction, read back once
        values = self._all_reduce_sum(torch.stack([loss, *terms.values()]).detach()).tolist()
        loss_total, term_totals = values[0], dict(zip(terms, values[1:]))
        if self.first_loss is None and math.isfinite(loss_total):
            self.first_loss = loss_total
        blowup = self.config.blowup_factor * abs(self.first_loss or 0.0)
        if not (math.isfinite(loss_total) and self._finite_parameters()) or (
            blowup > 0 and loss_total > blowup
        ):
            reason = "non-finite" if not math.isfinite(loss_total) else "blow-up"
            if reason == "blow-up":
                reason = f"loss above blowup_factor {self.config.blowup_factor:g} x first loss"
            self.diverged = {"step": step, "level": level, "loss": loss_total, "reason": reason}
            self.trainer.should_stop = True
            return
        # A step that changed no parameter (e.g. L-BFGS ending at once because the gradient is
        # below tolerance_grad) did no optimisation work: it is counted and marked "idle".
        idle = self._parameter_versions() == versions
        self.lr_schedulers().step()  # type: ignore[union-attr]
        args = (self.model, self.num_points, self.task.derivative_order, self.task.input_dim,
                evaluations, self.base_grid_size)  # fmt: skip
        self.work += COST_MODELS[self.config.cost_model].step_cost(*args)
        self.work_macs += COST_MODELS["macs"].step_cost(*args)
        self.work_evaluations += COST_MODELS["evaluations"].step_cost(*args)
        stats = self.level_stats.setdefault(
            level, {"steps": 0, "evaluations": 0, "idle_steps": 0, "wall_clock": 0.0}
        )
        stats["steps"] += 1
        stats["evaluations"] += evaluations
        stats["idle_steps"] += int(idle)
        self.last = {
            "step": step,
            "level": level,
            "work": self.work,
            "loss": loss_total,
            "lr": lr,
            **{f"loss/{k}": v for k, v in term_totals.items()},
        }
        self.history.append(
            {
                **self.last,
                "work_macs": self.work_macs,
                "work_evaluations": self.work_evaluations,
                "evaluations": evaluations,
                "idle": idle,
            }
        )
        budget = self.config.work_budget
        if budget is not None and self.work >= budget * (1 - 1e-12):
            self.trainer.should_stop = True
        if self.trainer.loggers:
            self.log_dict(
                {
                    "train/loss": loss_total,
                    "work": self.work,
                    "level": float(level),
                    "lr": lr,
                    **{f"train/{k}": v for k, v in self.last.items() if k.startswith("loss/")},
                },
                on_step=True,
                on_epoch=False,
                batch_size=1,
                rank_zero_only=True,
            )

    # -- evaluation -----------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """The task's metrics on its evaluation grid (input derivatives allowed)."""
        was_training = self.model.training
        self.model.eval()
        with torch.enable_grad():
            metrics = self.task.evaluate(self.model)
        self.model.train(was_training)
        return metrics

    def diagnostics(self) -> dict[str, Any]:
        """Per spline layer, the fraction of its inputs outside the grid range, and whether
        the model's output is constant over the evaluation points (``collapsed``)."""
        p = next(self.model.parameters())
        x = self.task.eval_points().to(device=p.device, dtype=p.dtype)
        z = self.task.features(x)
        outputs: list[Tensor] = []
        outside = outside_grid_fractions(self.model, lambda: outputs.append(self.model(z)))
        return {
            "outside_grid": outside,
            "output_spread": relative_spread(outputs[0]),
            "collapsed": is_collapsed(outputs[0]),
        }

    def close_level_clock(self) -> None:
        """Set the current level's wall-clock (total so far minus the other levels')."""
        stats = self.level_stats.get(self.level)
        if stats is not None:
            others = sum(
                s["wall_clock"] for lvl, s in self.level_stats.items() if lvl != self.level
            )
            stats["wall_clock"] = self.wall_clock() - others

    def snapshot_level(self) -> None:
        """Keep a CPU copy of the current weights as this level's final state."""
        self.level_states[self.level] = {
            k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
        }

    def level_end_metrics(self) -> dict[str, float]:
        metrics = self.evaluate()
        self.close_level_clock()
        self.eval_history.append(
            {
                "step": self.trainer.global_step,
                "level": self.level,
                "work": self.work,
                "work_macs": self.work_macs,
                "work_evaluations": self.work_evaluations,
                "wall_clock": self.wall_clock(),
                **metrics,
                **self.diagnostics(),
            }
        )
        return metrics

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        metrics = self.level_end_metrics()
        if self.trainer.loggers:
            self.log_dict(
                {f"val/{k}": v for k, v in metrics.items()}, batch_size=1, rank_zero_only=True
            )

    def log_refinement(self, record: dict[str, Any]) -> None:
        if self.trainer.loggers:
            for logger in self.trainer.loggers:
                logger.log_metrics(
                    {
                        f"multilevel/{k}": float(v)
                        for k, v in record.items()
                        if isinstance(v, int | float)
                    },
                    step=self.trainer.global_step,
                )

    # -- checkpoints ----------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["bench_mlkan"] = {
            "level": self.level,
            "work": self.work,
            "work_macs": self.work_macs,
            "work_evaluations": self.work_evaluations,
            "first_loss": self.first_loss,
            "level_stats": self.level_stats,
            "wall_clock": self.wall_clock(),
            "history": self.history,
            "eval_history": self.eval_history,
            "refinements": self.refinements,
            "diverged": self.diverged,
            "level_states": self.level_states,
            "state": {k: v.detach().cpu() for k, v in self.state.items()},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint["bench_mlkan"]
        while self.level < saved["level"]:  # rebuild the saved level before its weights load
            self.model = self.model.refined()  # type: ignore[operator]
            self.level += 1
        self.wall_offset = saved.get("wall_clock", 0.0)
        for key in (
            "work",
            "work_macs",
            "work_evaluations",
            "first_loss",
            "level_stats",
            "history",
            "eval_history",
            "refinements",
            "diverged",
            "level_states",
        ):
            setattr(self, key, saved[key])
        self.state = dict(saved["state"])


# ----------------------------------------------------------------------------- progress
class ProgressBar(L.Callback):
    """tqdm bar over all steps with level, loss and work; off when not a terminal or in CI."""

    def __init__(self, total: int, enabled: bool | None = None):
        if enabled is None:
            enabled = sys.stderr.isatty() and not os.environ.get("CI")
        self.total, self.enabled, self.bar = total, enabled, None

    def on_train_start(self, trainer, pl_module) -> None:
        if self.enabled and trainer.is_global_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total,
                initial=trainer.global_step,
                dynamic_ncols=True,
                desc=f"{pl_module.config.task}/{pl_module.config.model}",
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.bar is not None and pl_module.last:
            last = pl_module.last
            self.bar.set_postfix(
                level=last["level"],
                loss=f"{last['loss']:.3e}",
                work=f"{last['work']:.4g}",
                refresh=False,
            )
            self.bar.update(1)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------- results
@dataclass
class RunResult:
    """What one run produced; ``to_dict`` is the JSON record's body."""

    config: dict[str, Any]
    status: str  # "ok" | "diverged" | "failed"
    final_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    eval_history: list[dict[str, Any]] = field(default_factory=list)
    refinements: list[dict[str, Any]] = field(default_factory=list)
    diverged: dict[str, Any] | None = None
    error: str | None = None
    params: int = 0
    params_per_level: dict[int, int] = field(default_factory=dict)
    steps: int = 0
    work: float = 0.0
    work_unit: str = ""
    work_macs: float = 0.0
    work_evaluations: float = 0.0
    evaluations: int = 0
    idle_steps: int = 0
    level_stats: dict[int, dict[str, float]] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    wall_clock: float = 0.0
    device: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = None
    level_states: dict[int, dict[str, Tensor]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (everything but the model and its per-level weights)."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("model", "level_states")}
        out["params_per_level"] = {str(k): v for k, v in self.params_per_level.items()}
        out["level_stats"] = {str(k): v for k, v in self.level_stats.items()}
        return out


def environment() -> dict[str, Any]:
    """Versions, machine and threads, for run records."""
    import lightning

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


# ----------------------------------------------------------------------------- building
def build_model(config: RunConfig, task: Task, level: int = 0) -> nn.Module:
    """The model of ``config`` at ``level`` (grid_size * 2**level), fitted to ``task``'s inputs."""
    opts = dict(config.model_options)
    widths = list(opts.pop("widths"))
    if widths[0] != task.feature_dim or widths[-1] != task.output_dim:
        raise ConfigError(
            f"widths {widths} do not fit task {task.name!r}: it needs "
            f"{task.feature_dim} inputs and {task.output_dim} outputs"
        )
    cls = MODELS[config.model]
    accepted = accepted_options(cls)
    if accepted is None or "input_domain" in accepted:
        opts.setdefault("input_domain", task.feature_domain)
    if "grid_size" in opts and callable(getattr(cls, "refined", None)):
        opts["grid_size"] = int(opts["grid_size"]) * 2**level
    try:
        return cls(widths, **opts)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"model_options: {config.model!r} refused them: {e}") from e


def plan_schedule(config: RunConfig, task: Task) -> tuple[int, list[int]]:
    """(start level, steps per level from it) - from ``schedule`` or ``budget_fractions``."""
    levels = config.level_steps_nonzero()
    start = levels[0][0]
    if config.budget_fractions is None:
        return start, [steps for _, steps in levels]
    assert config.work_budget is not None
    cost = COST_MODELS[config.cost_model]
    steps = []
    for level, _ in levels:
        model = build_model(config, task, level)
        per_step = cost.step_cost(
            model,
            count_points(task.train_batch()),
            task.derivative_order,
            task.input_dim,
            1,
            config.model_options.get("grid_size"),
        )
        steps.append(int(config.budget_fractions[level] * config.work_budget / per_step))
    if sum(steps) == 0:
        raise ConfigError(
            f"work_budget {config.work_budget} buys no step with fractions "
            f"{config.budget_fractions}"
        )
    return start, steps


class _OneBatch(torch.utils.data.Dataset):
    """One dummy item per epoch: the data lives in the module (full batch)."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> int:
        return 0


def _loader() -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(_OneBatch(), batch_size=None)


# ----------------------------------------------------------------------------- entry point
def train(
    config: RunConfig | dict[str, Any],
    *,
    loggers: list | None = None,
    callbacks: list | None = None,
    task: Task | None = None,
) -> RunResult:
    """Train one run. Bad configs raise ``ConfigError`` before training; a diverging loss
    ends the run with status "diverged" (step and level recorded), never an exception.

    Args:
        config: a ``RunConfig`` or a dict of its fields.
        loggers: Lightning loggers (e.g. W&B); none by default.
        callbacks: extra Lightning callbacks (e.g. Optuna pruning).
        task: a prebuilt task (else ``TASKS[config.task](**config.task_options)``).
    """
    from bench_mlkan.tasks import TASKS

    if isinstance(config, dict):
        config = RunConfig.from_dict(config)
    config.validate()
    _quiet_lightning()
    L.seed_everything(config.seed, workers=True, verbose=False)
    if task is None:
        try:
            task = TASKS[config.task](**config.task_options)
        except TypeError as e:
            raise ConfigError(f"bad task_options for {config.task!r}: {e}") from e
    start, steps = plan_schedule(config, task)
    dtype = torch.float64 if config.precision == "64" else torch.float32
    model = build_model(config, task, start).to(dtype)
    try:
        check_model(model, multilevel=len(steps) > 1, carry_moments=config.carry_optimizer_state)
    except ModelContractError as e:
        raise ConfigError(f"model: {e}") from e
    module = TaskModule(config, level=start, model=model, task=task)
    if config.strategy_name == "nested":
        strategy = MultilevelStrategy(
            steps,
            start_level=start,
            refine_rtol=config.effective_refine_rtol,
            carry_optimizer_state=config.carry_optimizer_state,
        )
    else:
        from .strategies import make_strategy

        def step_cost(level: int) -> float:
            return COST_MODELS[config.cost_model].step_cost(
                build_model(config, task, level), module.num_points, task.derivative_order,
                task.input_dim, 1, config.model_options.get("grid_size"),
            )  # fmt: skip

        strategy = make_strategy(config, start, steps, step_cost)
    cbs: list[L.Callback] = [
        strategy,
        ProgressBar(strategy.total_steps, config.progress),
    ]
    if config.checkpoint_dir:
        from lightning.pytorch.callbacks import ModelCheckpoint

        cbs.append(
            ModelCheckpoint(
                dirpath=config.checkpoint_dir,
                every_n_train_steps=config.checkpoint_every or None,
                save_top_k=-1,
                save_last=True,
                filename="step{step}",
                auto_insert_metric_name=False,
            )
        )
    cbs += list(callbacks or [])
    trainer = L.Trainer(
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        precision="64-true" if config.precision == "64" else "32-true",
        max_epochs=strategy.total_steps,
        inference_mode=False,
        logger=loggers or False,
        callbacks=cbs,
        enable_checkpointing=bool(config.checkpoint_dir),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        check_val_every_n_epoch=config.eval_every or None,
        limit_val_batches=1.0 if config.eval_every else 0,
        deterministic=True,
        log_every_n_steps=1,
    )
    t0 = time.perf_counter()
    status, error = "ok", None
    try:
        trainer.fit(
            module,
            train_dataloaders=_loader(),
            val_dataloaders=_loader() if config.eval_every else None,
            ckpt_path=config.resume_from,
            # a checkpoint named in a config may come from anyone: never unpickle code
            weights_only=True if config.resume_from else None,
        )
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - recorded with everything the finished levels produced
        status, error = "failed", "".join(traceback.format_exception(e))
    wall = module.wall_clock() if module.history else time.perf_counter() - t0
    module.close_level_clock()
    if module.diverged is not None:
        status = "diverged"
    final: dict[str, float] = {}
    diagnostics: dict[str, Any] = {}
    if status == "ok":
        final = module.evaluate()
        final["train_loss"] = module.current_loss()
    if status != "failed" or module.history:
        try:
            diagnostics = module.diagnostics()
        except Exception:  # noqa: BLE001 - e.g. non-finite weights of a diverged run
            diagnostics = {}
    params_per_level = _params_per_level(config, task, start, module.level)
    if module.history:
        module.snapshot_level()
    return RunResult(
        config=config.to_dict(),
        status=status,
        final_metrics=final,
        history=module.history,
        eval_history=module.eval_history,
        refinements=module.refinements,
        diverged=module.diverged,
        error=error,
        params=count_parameters(module.model),
        params_per_level=params_per_level,
        steps=trainer.global_step,
        work=module.work,
        work_unit=COST_MODELS[config.cost_model].unit,
        work_macs=module.work_macs,
        work_evaluations=module.work_evaluations,
        evaluations=sum(int(s["evaluations"]) for s in module.level_stats.values()),
        idle_steps=sum(int(s["idle_steps"]) for s in module.level_stats.values()),
        level_stats=module.level_stats,
        diagnostics=diagnostics,
        wall_clock=wall,
        device=str(module.device),
        environment=environment(),
        model=module.model,
        level_states=module.level_states,
    )


def _quiet_lightning() -> None:
    """Keep Lightning's start-up chatter and known-harmless warnings out of the output."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (
        ".*LeafSpec.*",
        ".*does not have many workers.*",
        ".*val_dataloader.*",
        ".*litlogger.*",
        ".*GPU available.*",
        ".*callbacks used to create the checkpoint.*",
        ".*no pre-optimization state was saved.*",
        ".*exists and is not empty.*",  # the bench's own checkpoint folder of a resumable run
    ):
        warnings.filterwarnings("ignore", message=pattern)


def _params_per_level(config: RunConfig, task: Task, start: int, end: int) -> dict[int, int]:
    return {lvl: count_parameters(build_model(config, task, lvl)) for lvl in range(start, end + 1)}
