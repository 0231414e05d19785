"""Multilevel strategies beyond nested iteration: V/W-cycles (FAS / MG-OPT) and adaptive
refinement. Neither is in the paper (METHOD.md 4 has nested iteration only).

``STRATEGIES`` maps ``RunConfig.strategy_name`` to a Lightning callback class; every one is
a ``MultilevelStrategy`` (same refinement code, same checks) and ``make_strategy`` builds
it from a config.

**nested** (default): coarse to fine once, ``schedule[l]`` steps at level l.

**vcycle** (FAS / MG-OPT, Nash 2000): first the nested pass of ``schedule``; then
``cycles`` times: descend ``depth`` levels from the finest level L (``coarse_steps`` at each
coarser level; a W-cycle visits each coarser level's sub-cycle twice), climb back, and
train ``fine_steps`` on level L. Descending from level l (parameters u, objective
F_l(u) = L_l(u) - <tau_l, u>, tau_L = 0) to level l-1:

    v0     = R u                                   (L2 restriction, ``KAN.coarsened``)
    tau    = grad L_{l-1}(v0) - P^T grad F_l(u)    (P^T: adjoint of the prolongation)
    F_{l-1}(v) = L_{l-1}(v) - <tau, v>             (trained for coarse_steps)

so grad F_{l-1}(v0) = P^T grad F_l(u), the gradient of e -> F_l(u + P e) at e = 0 (first-
order coherence). Climbing back: u <- u + alpha P (v - v0) (the coarse correction), and F_l
is the objective again. alpha = 1, halved up to ``line_search`` times until F_l does not
increase, else 0 (MG-OPT's fine-level line search: the linear term makes the coarse
problem unbounded below, and L-BFGS follows it); ``line_search = 0`` takes alpha = 1. The
line search's loss evaluations, like a refinement's checks, are not charged as work.
Shared parameters (linear first layer, biases) have P = R = I. The shift appears as the
loss term ``mgopt_shift`` in the history of coarse steps (the logged ``loss`` there is
F_{l-1}, not the task loss). Work is charged by the engine at each
step's own level. A transition rebuilds the optimizer (as a refinement does); each one is
recorded in ``refinements`` with ``kind`` "restrict" or "correct" (``exact: false``). The
callback keeps the fine models of an open cycle in memory: a run cannot resume from a
checkpoint (rejected by ``check_strategy``; the bench never checkpoints one and restarts a
killed one from step 0, ``bench.resumable``). A run the work budget stops inside a coarse
visit applies its pending corrections at the end (``on_train_end``): it ends on the fine
model and objective. Segments of zero steps are skipped, so with
``coarse_steps = 0`` the run is nested iteration with ``cycles * fine_steps`` more fine
steps, bit for bit.

**adaptive**: refine when the training loss has not dropped by the factor ``improve``
over the last ``window`` steps of a level (loss_now > improve * loss_window_ago), or at
that level's cap (``schedule[l]``, or the steps ``budget_fractions`` buy there); the
finest level trains until ``work_budget`` (required) is spent; a step that would take
the work past it is not taken. Decisions read only the module's history, so a resumed run
decides the same.
"""

from __future__ import annotations

import bisect
import inspect
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Any

import lightning as L
import torch
from torch import Tensor

from .config import ConfigError, RunConfig
from .multilevel import MultilevelStrategy, _call
from .registry import Registry


# ----------------------------------------------------------------------------- plans
def cycle_segments(
    top: int, depth: int, shape: str, coarse_steps: int, fine_steps: int
) -> list[tuple[int, int]]:
    """One cycle below level ``top`` and back, ending with ``fine_steps`` at ``top``:
    [(level, steps)], consecutive equal levels merged, zero-step segments dropped."""
    visits = 2 if shape == "W" else 1

    def below(level: int, bottom: int) -> list[tuple[int, int]]:
        if level == bottom:
            return [(level, coarse_steps)]
        inner = [seg for _ in range(visits) for seg in below(level - 1, bottom)]
        return [(level, coarse_steps), *inner, (level, coarse_steps)]

    return merge_segments([*below(top - 1, top - depth), (top, fine_steps)])


def merge_segments(segments: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Drop zero-step segments and merge neighbours at the same level."""
    out: list[tuple[int, int]] = []
    for level, steps in segments:
        if steps <= 0:
            continue
        if out and out[-1][0] == level:
            out[-1] = (level, out[-1][1] + steps)
        else:
            out.append((level, steps))
    return out


def vcycle_plan(
    schedule: Sequence[int],
    start_level: int,
    cycles: int,
    shape: str,
    depth: int,
    coarse_steps: int,
    fine_steps: int,
) -> list[tuple[int, int]]:
    """The whole run as [(level, steps)]: the nested pass, then ``cycles`` cycles."""
    top = start_level + len(schedule) - 1
    nested = [(start_level + i, s) for i, s in enumerate(schedule)]
    body = [seg for _ in range(cycles) for seg in cycle_segments(top, depth, shape, coarse_steps,
                                                                 fine_steps)]  # fmt: skip
    return merge_segments([*nested, *body])


# ----------------------------------------------------------------------------- maths
def coarse_shift(
    fine_grad: dict[str, Tensor], coarse_grad: dict[str, Tensor], coarse_model: Any
) -> dict[str, Tensor]:
    """tau = grad L_c(R u) - P^T grad F_f(u), per parameter name (coarse shapes)."""
    return {
        name: coarse_grad[name] - coarse_model.prolong_adjoint_parameter_tensor(name, g)
        for name, g in fine_grad.items()
    }


def coarse_correction(coarse_model: Any, coarse_start: dict[str, Tensor]) -> dict[str, Tensor]:
    """e = P (v - v0) per fine parameter name, v the coarse model's parameters, v0 = R u."""
    return {
        name: coarse_model.prolong_parameter_tensor(name, v.detach() - coarse_start[name])
        for name, v in coarse_model.named_parameters()
    }


def apply_correction(
    fine_model: Any, start: dict[str, Tensor], correction: dict[str, Tensor], alpha: float
) -> None:
    """u <- u0 + alpha e in place (u0 = ``start``, e = ``correction``)."""
    with torch.no_grad():
        for name, p in fine_model.named_parameters():
            p.copy_(start[name] + alpha * correction[name] if alpha != 1.0 else
                    start[name] + correction[name])  # fmt: skip


def _grads(pl_module: Any) -> dict[str, Tensor]:
    """Gradient of the module's current objective (task loss + active shift) by name."""
    from .engine import total

    named = dict(pl_module.model.named_parameters())
    with torch.enable_grad():
        loss = total(pl_module.loss_terms())
        grads = torch.autograd.grad(loss, list(named.values()), allow_unused=True)
    return {
        n: (g if g is not None else torch.zeros_like(p)).detach()
        for (n, p), g in zip(named.items(), grads)
    }


# ----------------------------------------------------------------------------- callbacks
class VCycleStrategy(MultilevelStrategy):
    """Nested pass of ``schedule``, then ``cycles`` FAS / MG-OPT cycles (module docstring).

    Needs a model with ``coarsened()``, ``prolong_adjoint_parameter_tensor`` and
    ``prolong_parameter_tensor`` (``KAN``) and a module with ``loss_shift`` (``TaskModule``).
    """

    def __init__(
        self,
        schedule: Sequence[int],
        start_level: int = 0,
        refine_rtol: float = 1e-9,
        carry_optimizer_state: bool = False,
        *,
        cycles: int = 1,
        shape: str = "V",
        depth: int = 1,
        coarse_steps: int = 10,
        fine_steps: int = 10,
        line_search: int = 8,
    ):
        super().__init__(schedule, start_level, refine_rtol, carry_optimizer_state)
        self.line_search = line_search
        self.segments = vcycle_plan(
            schedule, start_level, cycles, shape, depth, coarse_steps, fine_steps
        )
        self.segment_ends = list(accumulate(s for _, s in self.segments))
        self._segment = 0
        self._stack: list[tuple[Any, Any, dict[str, Tensor]]] = []
        self.visits: list[dict[str, Any]] = []

    @property
    def total_steps(self) -> int:
        return self.segment_ends[-1]

    def level_at(self, step: int) -> int:
        i = bisect.bisect_right(self.segment_ends, step)
        return self.segments[min(i, len(self.segments) - 1)][0]

    def _advance(self, trainer: L.Trainer, pl_module) -> None:
        target = min(
            bisect.bisect_right(self.segment_ends, trainer.global_step), len(self.segments) - 1
        )
        while self._segment < target:
            self._segment += 1
            level = self.segments[self._segment][0]
            while pl_module.level < level:
                if self._stack:
                    self.correct(trainer, pl_module)
                else:
                    self.refine(trainer, pl_module)
            while pl_module.level > level:
                self.restrict(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        """A run stopped inside a coarse visit (the work budget ran out there) applies the
        pending corrections, so that it ends on the fine model and the fine objective: the
        coarse model and its shifted loss (negative, in general) are no result."""
        while self._stack:
            self.correct(trainer, pl_module)

    def restrict(self, trainer: L.Trainer, pl_module) -> None:
        """Go one level down: v0 = R u, objective L_c(v) - <tau, v> (module docstring)."""
        fine, fine_shift = pl_module.model, pl_module.loss_shift
        level_end = _call(pl_module, "level_end_metrics", {})
        before = pl_module.current_loss()
        fine_grad = _grads(pl_module)
        coarse = fine.coarsened()
        coarse_start = {n: p.detach().clone() for n, p in coarse.named_parameters()}
        pl_module.model, pl_module.loss_shift = coarse, None
        pl_module.level -= 1
        pl_module.loss_shift = coarse_shift(fine_grad, _grads(pl_module), coarse)
        self._stack.append((fine, fine_shift, coarse_start))
        self._record(trainer, pl_module, "restrict", before, level_end)
        trainer.strategy.setup_optimizers(trainer)

    def correct(self, trainer: L.Trainer, pl_module) -> None:
        """Go one level up: u <- u + P (v - v0), the fine objective again."""
        coarse = pl_module.model
        level_end = _call(pl_module, "level_end_metrics", {})
        before = pl_module.current_loss()
        fine, fine_shift, coarse_start = self._stack.pop()
        correction = coarse_correction(coarse, coarse_start)
        pl_module.model, pl_module.loss_shift = fine, fine_shift
        pl_module.level += 1
        start = {n: p.detach().clone() for n, p in fine.named_parameters()}
        alpha, f0 = 1.0, pl_module.current_loss()
        for _ in range(self.line_search + 1):
            apply_correction(fine, start, correction, alpha)
            if not self.line_search or pl_module.current_loss() <= f0:
                break
            alpha /= 2
        else:
            alpha = 0.0
            apply_correction(fine, start, correction, alpha)
        self._record(trainer, pl_module, "correct", before, level_end, alpha=alpha)
        trainer.strategy.setup_optimizers(trainer)

    def _record(
        self, trainer, pl_module, kind: str, before: float, level_end: dict, **extra: Any
    ) -> None:
        after = pl_module.current_loss()
        record = {
            "kind": kind,
            **extra,
            "level": pl_module.level,
            "step": trainer.global_step,
            **{k: getattr(pl_module, k) for k in ("work", "work_macs") if hasattr(pl_module, k)},
            "loss_before": before,
            "loss_after": after,
            "rel_change": abs(after - before) / max(abs(before), 1e-300),
            "exact": False,
            "level_end_metrics": level_end,
        }
        self.visits.append(record)
        self.refinements.append(record)
        if isinstance(getattr(pl_module, "refinements", None), list):
            pl_module.refinements.append(record)


class AdaptiveStrategy(MultilevelStrategy):
    """Refine when the loss stalls (``improve`` over ``window`` steps) or at the level's cap
    ``schedule[l]``; the finest level trains until ``max_steps`` (the engine's work budget
    stops the run first)."""

    def __init__(
        self,
        schedule: Sequence[int],
        start_level: int = 0,
        refine_rtol: float = 1e-9,
        carry_optimizer_state: bool = False,
        *,
        window: int = 10,
        improve: float = 0.99,
        max_steps: int = 10**6,
    ):
        super().__init__(schedule, start_level, refine_rtol, carry_optimizer_state)
        self.window, self.improve, self.max_steps = window, improve, max_steps
        self.top = start_level + len(schedule) - 1

    @property
    def total_steps(self) -> int:
        return self.max_steps

    def level_at(self, step: int) -> int:
        raise NotImplementedError("the adaptive strategy's level depends on the losses")

    def should_refine(self, level: int, losses: Sequence[float]) -> str | None:
        """Why to leave ``level`` after ``losses`` (its steps so far), or None to stay."""
        if level >= self.top:
            return None
        if len(losses) >= self.schedule[level - self.start_level]:
            return "cap"
        w = self.window
        if len(losses) > w and not losses[-1] <= self.improve * losses[-1 - w]:
            return "stalled"
        return None

    def _advance(self, trainer: L.Trainer, pl_module) -> None:
        while (reason := self._pending(pl_module)) is not None:
            self.refine(trainer, pl_module)
            self.refinements[-1]["reason"] = reason

    def _pending(self, pl_module) -> str | None:
        level = pl_module.level
        losses = [h["loss"] for h in pl_module.history if h["level"] == level]
        return self.should_refine(level, losses)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, idx) -> None:
        """Stop before a step that would take the work past ``work_budget``."""
        from .engine import count_points
        from .work import COST_MODELS

        config = getattr(pl_module, "config", None)
        if config is None or config.work_budget is None:
            return
        model = pl_module.model
        if self._pending(pl_module) is not None:
            model = model.refined()
        task = pl_module.task
        cost = COST_MODELS[config.cost_model].step_cost(
            model, count_points(pl_module.data), task.derivative_order, task.input_dim, 1,
            config.model_options.get("grid_size"),
        )  # fmt: skip
        if pl_module.work + cost > config.work_budget * (1 + 1e-12):
            trainer.should_stop = True


STRATEGIES: Registry[type[MultilevelStrategy]] = Registry(
    "strategy",
    {"nested": MultilevelStrategy, "vcycle": VCycleStrategy, "adaptive": AdaptiveStrategy},
)


# ----------------------------------------------------------------------------- config
def _option_names(cls: type) -> dict[str, inspect.Parameter]:
    params = inspect.signature(cls).parameters
    return {n: p for n, p in params.items() if p.kind is p.KEYWORD_ONLY}


def check_strategy(config: RunConfig) -> None:
    """``ConfigError`` naming the problem with ``strategy_name`` / ``strategy_options``."""
    name, opts = config.strategy_name, config.strategy_options
    if name not in STRATEGIES:
        raise ConfigError(f"strategy_name: unknown {name!r}; known: {', '.join(STRATEGIES)}")
    accepted = _option_names(STRATEGIES[name])
    for key in opts:
        if key not in accepted or key == "max_steps":
            known = ", ".join(k for k in accepted if k != "max_steps") or "none"
            raise ConfigError(f"strategy_options.{key}: unknown for {name!r}; known: {known}")
    if name == "vcycle":
        o = {k: p.default for k, p in accepted.items()} | opts
        if o["shape"] not in ("V", "W"):
            raise ConfigError(f"strategy_options.shape: 'V' or 'W', got {o['shape']!r}")
        for key in ("cycles", "coarse_steps", "fine_steps", "line_search"):
            if not isinstance(o[key], int) or o[key] < 0:
                raise ConfigError(f"strategy_options.{key}: an integer >= 0, got {o[key]!r}")
        levels = len(config.level_steps_nonzero())
        if not isinstance(o["depth"], int) or not 1 <= o["depth"] <= levels - 1:
            raise ConfigError(
                f"strategy_options.depth: an integer in 1..{levels - 1} (the levels below the "
                f"finest), got {o['depth']!r}"
            )
        if config.model != "kan":
            raise ConfigError(f"strategy_name: 'vcycle' needs model 'kan', got {config.model!r}")
        if config.devices != 1 or config.resume_from is not None:
            raise ConfigError("strategy_name: 'vcycle' runs on one device, without resume_from")
    if name == "adaptive":
        if config.work_budget is None:
            raise ConfigError("strategy_name: 'adaptive' needs a work_budget")
        o = {k: p.default for k, p in accepted.items()} | opts
        if not isinstance(o["window"], int) or o["window"] < 1:
            raise ConfigError(f"strategy_options.window: an integer >= 1, got {o['window']!r}")
        if not 0 < o["improve"] <= 1:
            raise ConfigError(f"strategy_options.improve: in (0, 1], got {o['improve']!r}")


def make_strategy(
    config: RunConfig, start: int, steps: list[int], step_cost: Callable[[int], float]
) -> MultilevelStrategy:
    """The configured strategy over ``steps`` from level ``start``; ``step_cost(level)``: the
    cost of one step at a level (bounds the adaptive run's step count; with
    ``budget_fractions``, a V-cycle's nested pass is scaled down to leave the cycles'
    work inside ``work_budget``)."""
    common = dict(
        start_level=start,
        refine_rtol=config.effective_refine_rtol,
        carry_optimizer_state=config.carry_optimizer_state,
    )
    cls = STRATEGIES[config.strategy_name]
    opts = dict(config.strategy_options)
    if cls is AdaptiveStrategy:
        assert config.work_budget is not None
        opts["max_steps"] = int(config.work_budget / step_cost(start)) + 1
    if cls is VCycleStrategy and config.budget_fractions is not None:
        assert config.work_budget is not None
        plain = VCycleStrategy(steps, start, **opts)
        nested_work = sum(s * step_cost(start + i) for i, s in enumerate(steps))
        total_work = sum(s * step_cost(level) for level, s in plain.segments)
        scale = max(0.0, 1.0 - (total_work - nested_work) / config.work_budget)
        steps = [int(s * scale) for s in steps]
        steps[-1] = max(steps[-1], 1)  # the nested pass reaches the finest level
    return cls(steps, **common, **opts)  # type: ignore[arg-type]
