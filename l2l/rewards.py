"""Reward is a pure function of a trial's metrics.

A missing, non-numeric or non-finite metric gives ``None``: the trial failed. It is
never scored as 0, which would teach the controller that a broken trial was merely bad.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: What a job optimises unless it says otherwise, by task.
DEFAULT_OBJECTIVES = {
    "classification": {"metric": "val_accuracy", "mode": "max"},
    "regression": {"metric": "val_loss", "mode": "min"},
}


def reward_from_metrics(metrics: Mapping[str, Any], objective: Mapping[str, str]) -> float | None:
    """The reward (higher is better) for ``metrics`` under ``objective``, or None if unusable."""
    value = metrics.get(objective["metric"])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if objective.get("mode", "max") == "max" else -float(value)


def why_no_reward(metrics: Mapping[str, Any], objective: Mapping[str, str]) -> str:
    """A one-line reason for a None reward, for the trial's error text."""
    name = objective["metric"]
    if name not in metrics:
        return f"the final report has no {name!r} metric (it has {sorted(metrics)})"
    return f"the final report's {name!r} is {metrics[name]!r}, not a finite number"
