"""Early stopping and multi-fidelity: schedulers beside the strategies (see :mod:`.base`).

This module is the registry and what a job's ``early_stopping`` option becomes::

    spec = check_early_stopping({"name": "asha", "settings": {"grace": 4}}, max_epochs=52)
    # -> {"name": "asha", "settings": {"grace": 4, "eta": 3.0}}   (stored with the job)
    scheduler = create_scheduler(spec, max_epochs=52)

A job may name a rule as a string (``"asha"``, ``"hyperband"``, ``"median"``, ``"none"``),
as ``{"name": ..., "settings": {...}}``, or leave it out (no early stopping). Pure Python:
the API validates with it without importing anything heavy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.early_stopping.asha import Asha, rung_epochs
from controller.early_stopping.base import CONTINUE, STOP, Decision, NoEarlyStopping, Scheduler
from controller.early_stopping.hyperband import Hyperband
from controller.early_stopping.median import MedianStopping

__all__ = [
    "CONTINUE",
    "STOP",
    "Asha",
    "Decision",
    "EarlyStoppingError",
    "Hyperband",
    "MedianStopping",
    "NoEarlyStopping",
    "Scheduler",
    "check_early_stopping",
    "create_scheduler",
    "rung_epochs",
    "scheduler_names",
]


class EarlyStoppingError(ValueError):
    """An ``early_stopping`` option that cannot be used; the message says what to fix."""


#: name -> (class, {setting: (type, default, lowest allowed, whether the lowest is excluded)})
_REGISTRY: dict[str, tuple[type[Scheduler], dict[str, tuple[type, Any, float, bool]]]] = {
    "none": (NoEarlyStopping, {}),
    "asha": (Asha, {"grace": (int, 1, 1, False), "eta": (float, 3.0, 1, True)}),
    "hyperband": (Hyperband, {"grace": (int, 1, 1, False), "eta": (float, 3.0, 1, True)}),
    "median": (MedianStopping, {"grace": (int, 1, 1, False), "min_trials": (int, 3, 1, False)}),
}


def scheduler_names() -> list[str]:
    return list(_REGISTRY)


def check_early_stopping(option: Any, max_epochs: int) -> dict[str, Any] | None:
    """The complete, JSON-able form of a job's ``early_stopping`` option, or None for none.

    Raises :class:`EarlyStoppingError` for an unknown rule or setting, a setting of the
    wrong type or out of range, or a first rung (``grace``) not below ``max_epochs``.
    """
    if option is None:
        return None
    if isinstance(option, str):
        name, settings = option, {}
    elif isinstance(option, Mapping):
        unknown = sorted(set(option) - {"name", "settings"})
        if unknown or "name" not in option:
            raise EarlyStoppingError(
                "early_stopping: give a rule's name, or {'name': ..., 'settings': {...}}; "
                f"not {sorted(option)}"
            )
        name, settings = option["name"], option.get("settings") or {}
    else:
        raise EarlyStoppingError(
            f"early_stopping: give one of {scheduler_names()} or a mapping, not {option!r}"
        )
    if name not in _REGISTRY:
        raise EarlyStoppingError(f"early_stopping: unknown rule {name!r}; choose one of {scheduler_names()}")
    if name == "none":
        if settings:
            raise EarlyStoppingError("early_stopping: 'none' takes no settings")
        return None
    if not isinstance(settings, Mapping):
        raise EarlyStoppingError(f"early_stopping.settings must be a mapping, not {settings!r}")
    known = _REGISTRY[name][1]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise EarlyStoppingError(
            f"early_stopping: unknown setting(s) {unknown} for {name}; its settings are {sorted(known)}"
        )
    values: dict[str, Any] = {}
    for key, (kind, default, lowest, exclusive) in known.items():
        value = settings.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (kind is int and not isinstance(value, int))
        ):
            raise EarlyStoppingError(
                f"early_stopping.settings.{key} must be "
                f"{'an integer' if kind is int else 'a number'}, got {value!r}"
            )
        if value < lowest or (exclusive and value == lowest):
            raise EarlyStoppingError(
                f"early_stopping.settings.{key} must be "
                f"{'above' if exclusive else 'at least'} {lowest}, got {value}"
            )
        values[key] = kind(value)
    if values.get("grace", 1) >= max_epochs:
        raise EarlyStoppingError(
            f"early_stopping.settings.grace is {values['grace']} epochs, but trials train only {max_epochs} "
            "(budget.epochs); use a smaller grace or more epochs"
        )
    return {"name": name, "settings": values}


def create_scheduler(spec: Mapping[str, Any] | str | None, max_epochs: int) -> Scheduler:
    """The scheduler a (checked or raw) ``early_stopping`` option names (none: NoEarlyStopping)."""
    checked = check_early_stopping(spec, max_epochs)
    if checked is None:
        return NoEarlyStopping(max_epochs)
    scheduler_class = _REGISTRY[checked["name"]][0]
    return scheduler_class(max_epochs, **checked["settings"])  # type: ignore[call-arg]
