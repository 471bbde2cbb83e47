"""Search strategies behind one small interface (see :mod:`controller.base`).

This module is the registry. It imports no TensorFlow, so the API process can list
strategies and validate a job's options cheaply; :func:`create_strategy` imports a
strategy's implementation only when one is built.

Typical use by the job loop::

    options = check_options("evolution", {"population_size": 30})   # at job creation
    strategy = create_strategy("evolution", space, seed=7, options=options)
    strategy.set_state(saved_state)                                  # after a restart
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from controller.base import FINISHED, WAIT, Ask, Proposal, Result, Strategy, UnknownProposalError
from controller.config import (
    EvolutionConfig,
    KerasTunerBOConfig,
    ModelBasedConfig,
    OptunaTPEConfig,
    OptunaTPEMultivariateConfig,
    RandomConfig,
    ReinforceConfig,
    StrategyError,
)
from search_spaces.spec import SearchSpace

__all__ = [
    "FINISHED",
    "WAIT",
    "Ask",
    "EvolutionConfig",
    "KerasTunerBOConfig",
    "ModelBasedConfig",
    "OptunaTPEConfig",
    "OptunaTPEMultivariateConfig",
    "Proposal",
    "RandomConfig",
    "ReinforceConfig",
    "Result",
    "Strategy",
    "StrategyError",
    "UnknownProposalError",
    "check_options",
    "create_strategy",
    "extra_strategy",
    "strategy_names",
]

# name -> ("module:Class" of the implementation, its config dataclass)
_REGISTRY: dict[str, tuple[str, type]] = {
    "random": ("controller.random_search:RandomSearch", RandomConfig),
    "evolution": ("controller.evolution:RegularizedEvolution", EvolutionConfig),
    "reinforce": ("controller.reinforce:ReinforceController", ReinforceConfig),
    "model_based": ("controller.model_based:ModelBasedController", ModelBasedConfig),
    # Optuna's TPE, imported only when built (the ``bench`` extra). KerasTuner's BO is too slow
    # for the contract suite; the benchmark adds it with ``extra_strategy``.
    "optuna_tpe": ("controller.adapters.optuna_tpe:OptunaTPE", OptunaTPEConfig),
    "optuna_tpe_mv": ("controller.adapters.optuna_tpe:OptunaTPE", OptunaTPEMultivariateConfig),
}


@contextlib.contextmanager
def extra_strategy(name: str, implementation: str, config_class: type) -> Iterator[None]:
    """Register strategy ``name`` ("module:Class", config dataclass) for the block, in this process only.

    For benchmarks and plug-in tests: the API validates jobs against its own registry,
    so jobs submitted over HTTP cannot name such a strategy.
    """
    if name in _REGISTRY:
        raise StrategyError(f"strategy {name!r} is already registered")
    _REGISTRY[name] = (implementation, config_class)
    try:
        yield
    finally:
        _REGISTRY.pop(name, None)


def strategy_names() -> list[str]:
    """The names :func:`create_strategy` accepts, in registration order."""
    return list(_REGISTRY)


def check_options(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``options`` for strategy ``name`` and return the complete option set.

    The result holds every option of the strategy's config, defaults filled in, with
    ints given for float options turned into floats; it is JSON-able and is what a
    job should store. Raises :class:`StrategyError` saying what to fix.
    """
    config_class = _config_class(name)
    return dataclasses.asdict(_make_config(name, config_class, options or {}))


def create_strategy(
    name: str, space: SearchSpace, seed: int | None = None, options: Mapping[str, Any] | None = None
) -> Strategy:
    """Build strategy ``name`` over ``space``; ``options`` are checked as in :func:`check_options`."""
    config_class = _config_class(name)
    config = _make_config(name, config_class, options or {})
    module_name, _, class_name = _REGISTRY[name][0].partition(":")
    strategy_class: type[Strategy] = getattr(importlib.import_module(module_name), class_name)
    return strategy_class(space, seed=seed, config=config)


def _config_class(name: str) -> type:
    if name not in _REGISTRY:
        raise StrategyError(f"unknown strategy {name!r}; choose one of {strategy_names()}")
    return _REGISTRY[name][1]


def _make_config(name: str, config_class: type, options: Mapping[str, Any]) -> Any:
    if not isinstance(options, Mapping):
        raise StrategyError(f"options for {name} must be a mapping of option name to value")
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        known = sorted(fields) or "none"
        raise StrategyError(f"unknown option(s) {unknown} for {name}; its options are {known}")
    hints = typing.get_type_hints(config_class)
    values = {key: _coerce(name, key, hints[key], value) for key, value in options.items()}
    return config_class(**values)


def _coerce(strategy: str, option: str, hint: Any, value: Any) -> Any:
    """``value`` as the type ``hint`` names (int, float, bool, str, or X | None), or StrategyError."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    # bool is an int in Python; an option that wants a number never takes True.
    if bool in allowed and isinstance(value, bool):
        return value
    if int in allowed and isinstance(value, int) and not isinstance(value, bool):
        return value
    if float in allowed and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if str in allowed and isinstance(value, str):
        return value
    wanted = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
    raise StrategyError(f"option {option!r} for {strategy} must be {wanted}, got {value!r}")
