"""Conditional decisions: which are active for given values, and a form that ignores the rest.

A KerasTuner ``build(hp)`` may register a hyperparameter only under a condition
(``with hp.conditional_scope("model", ["cnn"])``, or ``parent_name=`` / ``parent_values=``).
A flat space still gives every decision a value; the inactive ones are noise to a
strategy that learns from values. The space keeps its conditions in its settings, and
:func:`active_form`, the space's canonical form, writes every inactive decision as its
default, so two configurations that differ only there are one configuration to a
strategy that reads canonical forms and to the tuner adapters' repeat check.

Settings read here (JSON-able, stored with the space):

* ``conditions``: decision name -> a list of alternatives, each a list of
  ``[parent_name, [values...]]`` that must all hold (nested scopes); the decision is
  active when any alternative holds (a name registered under several scopes);
* ``inactive``: decision name -> the value an inactive decision is written as.

A condition holds when its parent is active and the parent's value is one of the values.
Pure Python: the API and the strategies may import it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from search_spaces.spec import Params

CONDITIONS = "conditions"
INACTIVE = "inactive"

#: ``SearchSpace.canonical`` of a space with conditional decisions.
ACTIVE_FORM = "search_spaces.conditions:active_form"

Alternatives = Sequence[Sequence[Sequence[Any]]]


def active_names(params: Mapping[str, Any], conditions: Mapping[str, Alternatives]) -> set[str]:
    """The names in ``params`` that are active, given ``conditions`` (see the module)."""
    active: set[str] = set()
    # A parent may be listed after its child; iterate until nothing changes (at most depth times).
    changed = True
    while changed:
        changed = False
        for name in params:
            if name in active:
                continue
            alternatives = conditions.get(name)
            if not alternatives or any(_holds(group, params, active) for group in alternatives):
                active.add(name)
                changed = True
    return active


def active_form(params: Mapping[str, Any], settings: Mapping[str, Any]) -> Params:
    """``params`` with every inactive decision written as its ``inactive`` value."""
    conditions = settings.get(CONDITIONS) or {}
    if not conditions:
        return dict(params)
    active = active_names(params, conditions)
    defaults = settings.get(INACTIVE) or {}
    return {name: value if name in active else defaults.get(name, value) for name, value in params.items()}


def _holds(group: Sequence[Sequence[Any]], params: Mapping[str, Any], active: set[str]) -> bool:
    for parent, values in group:
        if parent not in active or parent not in params or not _member(params[parent], values):
            return False
    return True


def _member(value: Any, values: Sequence[Any]) -> bool:
    # True == 1 in Python; a Boolean parent matches only Booleans.
    return any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in values)
