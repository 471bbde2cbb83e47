"""Reward is a pure function of a trial's metrics.

A missing, non-numeric or non-finite metric gives ``None``: the trial failed. It is
never scored as 0, which would teach the controller that a broken trial was merely bad.

An objective with a ``cost`` (MnasNet, Tan et al. 2019) trades the metric against a cost
metric such as ``parameters`` or ``flops``::

    reward = value * (cost / target) ** w,   w = weight if cost > target else weight_under

``weight`` is negative (MnasNet: -0.07); ``weight_under`` defaults to ``weight`` (the
"soft" constraint: a smaller model is always a little better) and 0 makes the target a
"hard" one below which cost no longer matters. The cost must be a finite positive number,
or the trial failed, as with a missing metric. A cost objective needs ``mode`` max.

An objective with a ``power`` scores ``value ** power`` (signed by ``mode``) and needs a
value >= 0: a placement job's objective, :data:`PLACEMENT_OBJECTIVE`, gives
``-sqrt(step time)`` as in Mirhoseini et al. 2017, so a placement's reward grows smoothly
as its step shrinks.
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

#: What a placement job optimises: -sqrt(seconds of one simulated training step).
PLACEMENT_OBJECTIVE = {"metric": "step_time", "mode": "min", "power": 0.5}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def reward_from_metrics(metrics: Mapping[str, Any], objective: Mapping[str, Any]) -> float | None:
    """The reward (higher is better) for ``metrics`` under ``objective``, or None if unusable."""
    value = _number(metrics.get(objective["metric"]))
    if value is None:
        return None
    if objective.get("cost") is None:
        if objective.get("power") is not None:
            if value < 0:
                return None
            value = value ** float(objective["power"])
        return value if objective.get("mode", "max") == "max" else -value
    cost = _number(metrics.get(objective["cost"]))
    if cost is None or cost <= 0:
        return None
    ratio = cost / float(objective["target"])
    weight = objective.get("weight", -0.07)
    if ratio <= 1 and objective.get("weight_under") is not None:
        weight = objective["weight_under"]
    return value * ratio ** float(weight)


def why_no_reward(metrics: Mapping[str, Any], objective: Mapping[str, Any]) -> str:
    """A one-line reason for a None reward, for the trial's error text."""
    for name in (objective["metric"], objective.get("cost")):
        if name is None:
            continue
        if name not in metrics:
            return f"the final report has no {name!r} metric (it has {sorted(metrics)})"
        if _number(metrics[name]) is None:
            return f"the final report's {name!r} is {metrics[name]!r}, not a finite number"
    if objective.get("cost") is None:
        return f"the final report's {objective['metric']!r} is {metrics[objective['metric']]!r}, below 0"
    return f"the final report's {objective['cost']!r} is {metrics[objective['cost']]!r}, not positive"
