"""The model contract: what the engine, the work accounting and the multilevel strategies
need from a model (checked by ``check_model`` before training starts).

Every model (``Model``) is an ``nn.Module`` mapping (batch, widths[0]) -> (batch, widths[-1])
and says what one forward evaluation costs::

    macs_per_point() -> int     multiply-accumulates of one forward pass at one point
                                (matmul-like work; the cost models add backward and input
                                derivatives, see ``bench_mlkan.work``)

A model trained on more than one level (``RefinableModel``) also has::

    grid_size: int              intervals of its grid (level l of a config is built with
                                ``model_options["grid_size"] * 2**l``)
    exact_refinement: bool      whether ``refined()`` preserves the function; if False the
                                strategy records the loss change at each refinement instead
                                of checking it (e.g. pykan's least-squares grid extension)
    refined() -> model          the next level (grid_size doubled)
    prolong_parameter_tensor(name, t) -> Tensor
                                maps a tensor shaped like parameter ``name`` onto the
                                refined model's parameter (used to carry Adam moments;
                                needed only with ``carry_optimizer_state``)

A user's model: subclass ``nn.Module``, implement these, ``MODELS.register("name", cls)``.
Its constructor's keyword arguments are the config's ``model_options`` (checked by name
before training); ``input_domain`` (one (lo, hi) per input, from the task) is passed when
the constructor accepts it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class Model(Protocol):
    """What every model provides (see the module docstring)."""

    def __call__(self, x: Tensor) -> Tensor: ...

    def macs_per_point(self) -> int: ...


@runtime_checkable
class RefinableModel(Model, Protocol):
    """What a model trained on several levels additionally provides."""

    grid_size: int
    exact_refinement: bool

    def refined(self) -> RefinableModel: ...


class ModelContractError(TypeError):
    """A model that lacks what its run needs; the message lists what is missing."""


def missing_members(model: object, *, multilevel: bool, carry_moments: bool) -> list[str]:
    """Names of the contract members ``model`` lacks for a run of the given kind."""
    needed = ["macs_per_point"]
    if multilevel:
        needed += ["refined", "grid_size", "exact_refinement"]
    if carry_moments:
        needed += ["prolong_parameter_tensor"]
    missing = [n for n in needed if not hasattr(model, n)]
    if not isinstance(model, nn.Module):
        missing.insert(0, "nn.Module base class")
    return missing


def check_model(model: object, *, multilevel: bool, carry_moments: bool = False) -> None:
    """Raise ``ModelContractError`` naming every member ``model`` lacks for this run."""
    missing = missing_members(model, multilevel=multilevel, carry_moments=carry_moments)
    if missing:
        what = "a multilevel run" if multilevel else "a run"
        raise ModelContractError(
            f"model {type(model).__name__} lacks {', '.join(missing)} needed for {what} "
            "(see bench_mlkan.contracts)"
        )
