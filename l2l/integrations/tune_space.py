"""A Ray Tune ``param_space`` as one of our search spaces, and our values back as Tune's config.

Converted as Tune's own Optuna searcher converts them (nested keys joined with ``/``):

=====================================  ===========================================
``tune.uniform(a, b)``                 FloatRange(a, b)
``tune.loguniform(a, b)``              FloatRange(a, b, log=True)
``tune.quniform(a, b, q)`` and         a choice of the multiples of ``q`` in [a, b]
``tune.qloguniform``                   (at most 1,024 of them)
``tune.randint(a, b)``                 IntRange(a, b - 1) (Tune's upper bound is exclusive)
``tune.lograndint(a, b)``              IntRange(a, b - 1, log=True)
``tune.qrandint(a, b, q)``             IntRange(a, b, step=q) (inclusive, as Tune says)
``tune.choice([...])``                 Choice; options that are not plain numbers, strings or
                                       booleans (lists, dicts, None) are chosen by index
=====================================  ===========================================

Constants stay in Tune's config (Tune merges them into every trial). ``tune.randn``,
``tune.sample_from`` and ``tune.grid_search`` have no counterpart here and are refused
with a message saying so. This module imports Ray; the strategies never see it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ray.tune.search.sample import Categorical, Domain, Float, Integer, LogUniform, Quantized, Uniform
from ray.tune.search.variant_generator import parse_spec_vars
from ray.tune.utils.util import flatten_dict, unflatten_dict

from search_spaces.spec import Choice, Decision, FloatRange, IntRange, Params, SearchSpace, SpaceError

#: A quantized float range becomes a choice of its grid points, up to this many.
MAX_GRID_POINTS = 1024

_BUILDER = "l2l.integrations.tune_space:no_builder"


@dataclass(frozen=True)
class TuneSpace:
    """Our space for a ``param_space`` and the way back to Tune's values."""

    space: SearchSpace
    #: decision name -> the original options of a choice made by index
    by_index: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def to_config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Tune's (nested) config for our ``params``."""
        flat = {n: self.by_index[n][v] if n in self.by_index else v for n, v in params.items()}
        return unflatten_dict(flat)

    def from_config(self, config: Mapping[str, Any], partial: bool = False) -> Params:
        """Our values for a (nested or ``/``-flat) Tune config; a SpaceError says what does not fit.

        With ``partial``, decisions the config does not name are left out.
        """
        flat = flatten_dict(dict(config), delimiter="/") if config else {}
        params: Params = {}
        for decision in self.space.decisions:
            if decision.name not in flat:
                if partial:
                    continue
                raise SpaceError(f"the config has no value for {decision.name!r}")
            value = flat[decision.name]
            if decision.name in self.by_index:
                options = self.by_index[decision.name]
                matches = [i for i, option in enumerate(options) if option == value]
                if not matches:
                    raise SpaceError(f"{decision.name}={value!r} is not one of {list(options)}")
                value = matches[0]
            params[decision.name] = decision.check(_python(value))
        return params


def no_builder(*_: Any) -> None:
    raise SpaceError("a space made from a Ray Tune param_space builds no model; the trainable does")


def has_domains(config: Mapping[str, Any]) -> bool:
    """Whether ``config`` holds anything to search (a distribution or a grid)."""
    _, domains, grids = parse_spec_vars(dict(config))
    return bool(domains or grids)


def space_from_config(config: Mapping[str, Any], name: str = "ray_tune") -> TuneSpace | None:
    """Our space for the distributions in ``config``; None if it holds none."""
    _, domains, grids = parse_spec_vars(dict(config))
    if grids:
        paths = ["/".join(map(str, path)) for path, _ in grids]
        raise ValueError(
            f"tune.grid_search at {paths} cannot be searched by a strategy; use tune.choice(...) instead"
        )
    if not domains:
        return None
    decisions: list[Decision] = []
    by_index: dict[str, tuple[Any, ...]] = {}
    for path, domain in domains:
        key = "/".join(map(str, path))
        decision, options = _decision(key, domain)
        decisions.append(decision)
        if options is not None:
            by_index[key] = options
    return TuneSpace(SearchSpace(name, tuple(decisions), _BUILDER), by_index)


def _decision(name: str, domain: Domain) -> tuple[Decision, tuple[Any, ...] | None]:
    sampler = domain.get_sampler()
    quantum = None
    if isinstance(sampler, Quantized):
        quantum, sampler = sampler.q, sampler.get_sampler()
    if isinstance(domain, Categorical):
        options = tuple(domain.categories)
        if all(isinstance(o, (str, int, float, bool)) for o in options) and len(set(options)) == len(options):
            return Choice(name, tuple(_python(o) for o in options)), None
        return Choice(name, tuple(range(len(options)))), options
    if isinstance(domain, Integer) and isinstance(sampler, (Uniform, LogUniform)):
        log = isinstance(sampler, LogUniform)
        if quantum is None:
            return IntRange(name, int(domain.lower), int(domain.upper) - 1, log=log), None
        low = int(math.ceil(domain.lower / quantum) * quantum)
        return IntRange(name, low, int(domain.upper), step=int(quantum)), None
    if isinstance(domain, Float) and isinstance(sampler, (Uniform, LogUniform)):
        log = isinstance(sampler, LogUniform)
        if quantum is None:
            return FloatRange(name, float(domain.lower), float(domain.upper), log=log), None
        first, last = math.ceil(domain.lower / quantum - 1e-9), math.floor(domain.upper / quantum + 1e-9)
        if last - first + 1 > MAX_GRID_POINTS:
            raise ValueError(
                f"{name}: a quantized range of {last - first + 1} points is too fine; "
                f"use tune.uniform/loguniform or a q giving at most {MAX_GRID_POINTS} points"
            )
        return Choice(name, tuple(round(i * quantum, 12) for i in range(first, last + 1))), None
    raise ValueError(
        f"{name}: {type(domain).__name__} with {type(sampler).__name__} sampling has no counterpart "
        "in our spaces; use tune.uniform, loguniform, quniform, randint, qrandint, lograndint or choice"
    )


def _python(value: Any) -> Any:
    """numpy scalars as Python's, so they validate and save as JSON."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (str, bytes)) else value
