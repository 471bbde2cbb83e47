"""Placement strategies: the same :class:`~controller.base.Strategy` protocol over a
:class:`~l2l.placement.space.PlacementSpace`, in a registry of their own so that an
architecture job cannot name one (and the other way round).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any

from controller import StrategyError, _make_config
from controller.base import Strategy
from controller.placement.config import HierarchicalConfig, RandomPlacementConfig

# name -> ("module:Class", config dataclass); implementations are imported when built (TF).
_REGISTRY: dict[str, tuple[str, type]] = {
    "hierarchical": ("controller.placement.hierarchical:HierarchicalPlanner", HierarchicalConfig),
    "random": ("controller.placement.random_placer:RandomPlacement", RandomPlacementConfig),
}


def placement_strategy_names() -> list[str]:
    return list(_REGISTRY)


def check_placement_options(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The complete, validated option set of placement strategy ``name`` (StrategyError if bad)."""
    return dataclasses.asdict(_make_config(name, _config_class(name), options or {}))


def create_placement_strategy(
    name: str, space: Any, seed: int | None = None, options: Mapping[str, Any] | None = None
) -> Strategy:
    config = _make_config(name, _config_class(name), options or {})
    module_name, _, class_name = _REGISTRY[name][0].partition(":")
    strategy_class: type[Strategy] = getattr(importlib.import_module(module_name), class_name)
    return strategy_class(space, seed=seed, config=config)


def _config_class(name: str) -> type:
    if name not in _REGISTRY:
        raise StrategyError(
            f"unknown placement strategy {name!r}; choose one of {placement_strategy_names()}"
        )
    return _REGISTRY[name][1]
