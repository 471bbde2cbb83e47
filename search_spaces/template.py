"""A template: a built-in search space that can also be narrowed into a custom one.

A template knows its builder, its decisions, a default value for every decision and
its fixed settings. The built-in space searches every decision; a custom space
(see :mod:`search_spaces.custom`) searches only the decisions its author lists and
fixes the rest at the template's defaults. Those fixed values are written into the
space's settings under :data:`FIXED_PARAMS`, so a stored space rebuilds the same
model even if a template's defaults change later. Pure Python: no Keras here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from search_spaces.spec import Choice, Decision, FloatRange, SearchSpace, SpaceError

#: The settings key holding template decisions that a custom space does not search.
FIXED_PARAMS = "fixed_params"


@dataclass(frozen=True)
class ValueRule:
    """What values a decision or setting may take, said in words for error messages."""

    description: str
    accepts: Callable[[Any], bool]
    #: A float range can never satisfy a rule for whole numbers.
    integer: bool = False


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole(value: Any) -> bool:
    return _is_number(value) and value == int(value)


POSITIVE_INT = ValueRule("a positive integer", lambda v: _is_whole(v) and v >= 1, integer=True)
POSITIVE_NUMBER = ValueRule("a positive number", lambda v: _is_number(v) and v > 0)
FRACTION = ValueRule("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1)
BOOLEAN = ValueRule("true or false", lambda v: isinstance(v, bool))


def one_of(options: tuple[str, ...]) -> ValueRule:
    return ValueRule(f"one of {list(options)}", lambda v: v in options)


@dataclass(frozen=True)
class Template:
    """A built-in space: its decisions with defaults, its settings and their rules."""

    name: str
    builder: str
    decisions: tuple[Decision, ...]
    default_params: Mapping[str, Any]
    default_settings: Mapping[str, Any]
    decision_rules: Mapping[str, ValueRule]
    setting_rules: Mapping[str, ValueRule]
    input_kinds: frozenset[str] = field(default_factory=lambda: frozenset({"tabular", "image"}))
    #: ``"module:function"`` of the space's canonical form (:attr:`SearchSpace.canonical`), if any.
    canonical: str | None = None

    def space(self, settings: Mapping[str, Any] | None = None) -> SearchSpace:
        """The built-in space, every decision searched; ``settings`` override the defaults."""
        return SearchSpace(
            name=self.name,
            decisions=self.decisions,
            builder=self.builder,
            settings=self.merged_settings(settings),
            input_kinds=self.input_kinds,
            canonical=self.canonical,
        )

    def custom_space(
        self, name: str, decisions: tuple[Decision, ...], settings: Mapping[str, Any] | None = None
    ) -> SearchSpace:
        """A space searching only ``decisions``; the template's other decisions stay at defaults."""
        for decision in decisions:
            self.check_decision(decision)
        searched = {d.name for d in decisions}
        fixed = {k: v for k, v in self.default_params.items() if k not in searched}
        return SearchSpace(
            name=name,
            decisions=decisions,
            builder=self.builder,
            settings={**self.merged_settings(settings), FIXED_PARAMS: fixed},
            input_kinds=self.input_kinds,
            canonical=self.canonical,
        )

    def merged_settings(self, settings: Mapping[str, Any] | None) -> dict[str, Any]:
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(self.default_settings))
        if unknown:
            allowed = ", ".join(sorted(self.default_settings)) or "none"
            raise SpaceError(f"search space {self.name!r} has no settings {unknown}; allowed: {allowed}")
        for key, value in settings.items():
            rule = self.setting_rules.get(key)
            if rule is not None and not rule.accepts(value):
                raise SpaceError(f"setting {key}={value!r} of {self.name!r} must be {rule.description}")
        return {**self.default_settings, **settings}

    def check_decision(self, decision: Decision) -> None:
        """Raise SpaceError unless the builder understands this decision and all its values."""
        rule = self.decision_rules.get(decision.name)
        if decision.name not in self.default_params or rule is None:
            allowed = ", ".join(self.default_params)
            raise SpaceError(
                f"template {self.name!r} has no decision {decision.name!r}; choose from {allowed}"
            )
        if rule.integer and isinstance(decision, FloatRange):
            raise SpaceError(f"decision {decision.name!r} must be {rule.description}: use type 'int'")
        if isinstance(decision, Choice):
            values: tuple[Any, ...] = decision.options
        else:
            values = (decision.low, decision.high)
        bad = [v for v in values if not rule.accepts(v)]
        if bad:
            raise SpaceError(
                f"decision {decision.name!r}: {bad} not allowed; each value must be {rule.description}"
            )


def resolve_params(
    params: Mapping[str, Any], settings: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """The values a builder uses: searched ``params`` over fixed ones over template defaults."""
    return {**defaults, **settings.get(FIXED_PARAMS, {}), **params}
