"""The code a request may name: builders, canonical forms and KerasTuner ``build(hp)`` functions.

A job names code only as a reference (``"package.module:function"``) or as a registered name,
and only references an admin registered are ever imported. Three sources:

* the built-in spaces' own functions (:data:`BUILT_IN`);
* Python entry points of the group :data:`ENTRY_POINT_GROUP` (``l2l.builders``), which an
  installed package declares, e.g. in its ``pyproject.toml``::

      [project.entry-points."l2l.builders"]
      my_cnn = "my_package.spaces:build"

  read once per process (scanning every installed distribution costs milliseconds, and a
  search checks a canonical form thousands of times); a package installed later is seen
  after a restart, which its import needs anyway;

* the setting ``L2L_SECURITY__BUILDERS``, a JSON list of ``"module:function"`` or
  ``"name=module:function"`` entries (see :class:`l2l.settings.SecuritySettings`).

Pure Python: nothing here imports the code it checks. :func:`load` is the one place in the
search spaces that calls ``importlib`` on a reference, and it checks the registry first.
"""

from __future__ import annotations

import functools
import importlib
import re
from importlib.metadata import entry_points
from typing import Any

from search_spaces.errors import SpaceError

ENTRY_POINT_GROUP = "l2l.builders"

#: The built-in spaces' functions: name -> reference.
BUILT_IN: dict[str, str] = {
    "mlp": "search_spaces.mlp_builder:build",
    "nb201_cell": "search_spaces.nb201_builder:build",
    "nb201_canonical": "search_spaces.nb201_canonical:canonical_cell",
    "keras_tuner": "search_spaces.keras_tuner_space:build_model",
    # the canonical form of a space with conditional decisions (inactive ones at their default)
    "active_form": "search_spaces.conditions:active_form",
}

REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def registered() -> dict[str, str]:
    """Every registered name and the reference it stands for (built-ins, entry points, settings)."""
    names = dict(BUILT_IN)
    for name, reference in entry_point_references():
        names.setdefault(name, reference)
    for item in _allowed_by_settings():
        name, _, reference = item.rpartition("=")
        if REFERENCE.match(reference):
            names.setdefault(name or reference, reference)
    return names


def resolve(given: Any, what: str) -> str:
    """The reference ``given`` names (a registered name, or a registered reference itself).

    Raises SpaceError naming the registered names otherwise; ``what`` says which field it was.
    """
    names = registered()
    if isinstance(given, str):
        if given in names:
            return names[given]
        if given in names.values():
            return given
    shown = repr(given) if isinstance(given, str) and len(given) <= 200 else "the one given"
    raise SpaceError(
        f"{what} {shown} is not registered on this service; registered: {', '.join(sorted(names))}. "
        f"An admin registers more as '{ENTRY_POINT_GROUP}' entry points or in L2L_SECURITY__BUILDERS"
    )


def load(given: Any, what: str) -> Any:
    """The object a registered name or reference stands for, imported only once it is known."""
    reference = resolve(given, what)
    module_name, _, name = reference.partition(":")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise SpaceError(f"cannot load {what} {reference!r}: {error}") from error


@functools.cache
def entry_point_references() -> tuple[tuple[str, str], ...]:
    """The (name, reference) pairs installed packages declare, read once per process."""
    return tuple(
        (entry.name, entry.value)
        for entry in entry_points(group=ENTRY_POINT_GROUP)
        if REFERENCE.match(entry.value)
    )


def _allowed_by_settings() -> list[str]:
    # Imported here: search spaces do not otherwise depend on the service's settings.
    from l2l.settings import get_settings

    return list(get_settings().security.builders)
