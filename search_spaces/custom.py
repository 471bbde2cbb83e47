"""Custom spaces written in JSON or YAML on top of a template.

A description looks like::

    {"name": "small-mlp", "template": "mlp",
     "decisions": [{"name": "units", "type": "choice", "options": [32, 64]},
                   {"name": "num_layers", "type": "int", "low": 1, "high": 3},
                   {"name": "learning_rate", "type": "float", "low": 1e-4, "high": 1e-2, "log": true}],
     "settings": {"batch_norm": true}}

Only the listed decisions are searched; each must be one the template's builder
understands, with values it accepts. The template's other decisions are fixed at
its defaults (see :meth:`Template.custom_space`). Pure Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from search_spaces.spec import SearchSpace, SpaceError, decision_from_dict
from search_spaces.template import Template

DESCRIPTION_KEYS = ("name", "template", "decisions", "settings")


def space_from_description(description: Mapping[str, Any], templates: Mapping[str, Template]) -> SearchSpace:
    """The custom space a description asks for; SpaceError says what to fix."""
    unknown = sorted(set(description) - set(DESCRIPTION_KEYS))
    if unknown:
        allowed = ", ".join(DESCRIPTION_KEYS)
        raise SpaceError(f"custom search space has unknown keys {unknown}; allowed: {allowed}")
    name = description.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SpaceError("a custom search space needs a non-empty 'name'")
    template_name = description.get("template")
    template = templates.get(template_name) if isinstance(template_name, str) else None
    if template is None:
        raise SpaceError(f"unknown template {template_name!r}; choose one of {', '.join(sorted(templates))}")
    raw_decisions = description.get("decisions")
    if not isinstance(raw_decisions, list) or not raw_decisions:
        raise SpaceError(
            f"custom search space {name!r} needs a non-empty list 'decisions'; "
            f"template {template.name!r} offers {', '.join(template.default_params)}"
        )
    settings = description.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise SpaceError(f"'settings' of custom search space {name!r} must be a mapping")
    decisions = tuple(decision_from_dict(d) for d in raw_decisions)
    return template.custom_space(name.strip(), decisions, settings)
