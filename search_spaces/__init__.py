"""The search-space registry: turn a job's space description into a :class:`SearchSpace`.

A description is one of

* a built-in name: ``"mlp"`` or ``"nb201_cell"``;
* a built-in with settings: ``{"name": "nb201_cell", "settings": {"channels": 16}}``;
* a custom space on a template: ``{"name": "my-space", "template": "mlp", "decisions": [...]}``
  (see :mod:`search_spaces.custom`);
* a KerasTuner ``build(hp)``: ``{"keras_tuner": "registered_name", "name": "optional"}``
  (or the registered ``"package.module:build"`` itself);
* a stored space, ``SearchSpace.to_dict()`` (it has a ``"builder"`` key), which is how
  the job loop and workers rebuild a job's space: ``get_space(space.to_dict()) == space``.

Every function a description names (a builder, a canonical form, a ``build(hp)``) must be
registered by an admin (:mod:`search_spaces.registry`); nothing else is ever imported.

Importing this package imports no Keras, TensorFlow or KerasTuner, so the API can
validate descriptions cheaply (:func:`check_space_spec`); only the KerasTuner kind
needs Keras, and only in :func:`get_space`.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from search_spaces import registry
from search_spaces.custom import space_from_description
from search_spaces.mlp import MLP
from search_spaces.nb201 import NB201_CELL
from search_spaces.spec import DataInfo, SearchSpace, SpaceError
from search_spaces.template import FIXED_PARAMS, Template

__all__ = [
    "DataInfo",
    "SearchSpace",
    "SpaceError",
    "batch_size_for",
    "check_space_fits_data",
    "check_space_spec",
    "get_space",
    "load_space_file",
    "space_names",
]

TEMPLATES: dict[str, Template] = {template.name: template for template in (MLP, NB201_CELL)}

INPUT_KINDS = frozenset({"tabular", "image"})


def space_names() -> list[str]:
    """The built-in spaces, usable by name and as templates."""
    return sorted(TEMPLATES)


def get_space(spec: str | Mapping[str, Any]) -> SearchSpace:
    """The space a description asks for; raise SpaceError saying what to fix."""
    kind = _kind_of(spec)
    if kind == "keras_tuner":
        assert isinstance(spec, Mapping)
        reference, name = _keras_tuner_reference(spec)
        # Imported here: it loads Keras and KerasTuner, which the API process must not.
        from search_spaces.keras_tuner_space import space_from_build

        return space_from_build(reference, name)
    return _space_without_keras(spec, kind)


def check_space_spec(spec: str | Mapping[str, Any]) -> dict[str, Any]:
    """Validate a description without importing Keras and return it normalised, JSON-able.

    Built-in, custom and stored descriptions come back as the full ``to_dict()`` form,
    so a job keeps the exact space even if a template's defaults change. A KerasTuner
    reference comes back as ``{"keras_tuner": ..., "name": ...}`` after checking only
    its shape and that its module can be found: recording its space needs Keras.
    """
    kind = _kind_of(spec)
    if kind == "keras_tuner":
        assert isinstance(spec, Mapping)
        reference, name = _keras_tuner_reference(spec)
        _check_module_exists(reference.partition(":")[0], f"keras_tuner reference {reference!r}")
        return {"keras_tuner": reference, "name": name}
    space = _space_without_keras(spec, kind)
    if kind == "stored":
        _check_stored_references(space)
    data = space.to_dict()
    try:
        json.dumps(data)
    except (TypeError, ValueError) as error:
        raise SpaceError(f"search space {space.name!r} has settings that are not JSON: {error}") from error
    return data


def load_space_file(path: str | Path) -> dict[str, Any]:
    """Read a space description from a JSON or YAML file and check it.

    Returns the description as written (pass it to :func:`check_space_spec` or
    :func:`get_space`); every error is a SpaceError that names the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpaceError(f"cannot read search space file {str(path)!r}: {error.strerror or error}") from error
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml  # Only file loading needs it; YAML also reads JSON.

            data = yaml.safe_load(text)
    except Exception as error:  # json.JSONDecodeError or yaml.YAMLError
        raise SpaceError(f"search space file {str(path)!r} is not valid JSON/YAML: {error}") from error
    if not isinstance(data, (str, Mapping)):
        raise SpaceError(f"search space file {str(path)!r} must hold a mapping, got {type(data).__name__}")
    try:
        check_space_spec(data)
    except SpaceError as error:
        raise SpaceError(f"search space file {str(path)!r}: {error}") from error
    return dict(data) if isinstance(data, Mapping) else {"name": data}


def check_space_fits_data(space: SearchSpace | Mapping[str, Any], data_kind: str) -> None:
    """Raise SpaceError if the space cannot model this kind of data ("tabular" or "image").

    Takes a space or a normalised description; a KerasTuner reference says nothing
    about its inputs, so it fits anything here and fails later if it does not.
    """
    if isinstance(space, SearchSpace):
        name, kinds = space.name, set(space.input_kinds)
    else:
        name, kinds = str(space.get("name")), set(space.get("input_kinds") or INPUT_KINDS)
    if data_kind not in kinds:
        raise SpaceError(
            f"search space {name!r} takes {' or '.join(sorted(kinds))} data, but the dataset is {data_kind}"
        )


def batch_size_for(space: SearchSpace, params: Mapping[str, Any], default: int = 32) -> int:
    """The training batch size: a searched ``batch_size``, else the space's fixed one."""
    for source in (params, space.settings.get(FIXED_PARAMS, {}), space.settings):
        if "batch_size" in source:
            return int(source["batch_size"])
    return default


def _kind_of(spec: Any) -> str:
    if isinstance(spec, str):
        return "built_in"
    if not isinstance(spec, Mapping):
        raise SpaceError(f"a search space is a name or a mapping, got {type(spec).__name__}")
    if "builder" in spec:
        return "stored"
    if "keras_tuner" in spec:
        return "keras_tuner"
    if "template" in spec:
        return "custom"
    if "name" in spec:
        return "built_in"
    raise SpaceError(
        "a search space description needs 'name' (a built-in), 'template' (a custom space) "
        "or 'keras_tuner' (a build(hp) function)"
    )


def _space_without_keras(spec: str | Mapping[str, Any], kind: str) -> SearchSpace:
    if kind == "stored":
        assert isinstance(spec, Mapping)
        space = SearchSpace.from_dict(spec)
        unknown_kinds = sorted(space.input_kinds - INPUT_KINDS)
        if unknown_kinds:
            raise SpaceError(f"input_kinds {unknown_kinds} unknown; use {sorted(INPUT_KINDS)}")
        return space
    if kind == "custom":
        assert isinstance(spec, Mapping)
        return space_from_description(spec, TEMPLATES)
    return _built_in(spec)


def _built_in(spec: str | Mapping[str, Any]) -> SearchSpace:
    settings: Any
    if isinstance(spec, str):
        name, settings = spec, {}
    else:
        unknown = sorted(set(spec) - {"name", "settings"})
        if unknown:
            raise SpaceError(
                f"a built-in search space takes only 'name' and 'settings', not {unknown}; "
                "to choose decisions, give a 'template' instead of only a 'name'"
            )
        name, settings = spec["name"], spec.get("settings") or {}
        if not isinstance(settings, Mapping):
            raise SpaceError(f"'settings' of search space {name!r} must be a mapping")
    template = TEMPLATES.get(name) if isinstance(name, str) else None
    if template is None:
        raise SpaceError(
            f"unknown search space {name!r}; choose one of {', '.join(space_names())}, "
            "or give a template/keras_tuner description"
        )
    return template.space(settings)


def _check_stored_references(space: SearchSpace) -> None:
    """A stored space's builder, canonical form and KerasTuner function must all be registered."""
    builder = registry.resolve(space.builder, "builder")
    _check_module_exists(builder.partition(":")[0], f"builder {builder!r}")
    if space.canonical is not None:
        registry.resolve(space.canonical, "canonical")
    if builder == registry.BUILT_IN["keras_tuner"]:
        registry.resolve(space.settings.get("build"), "keras_tuner build function")


def _keras_tuner_reference(spec: Mapping[str, Any]) -> tuple[str, str]:
    """The registered reference and the space's name; SpaceError unless an admin registered it."""
    unknown = sorted(set(spec) - {"keras_tuner", "name"})
    if unknown:
        raise SpaceError(f"a keras_tuner search space takes only 'keras_tuner' and 'name', not {unknown}")
    given = spec["keras_tuner"]
    if not isinstance(given, str) or not given:
        raise SpaceError("keras_tuner must be the name of a registered build(hp) function")
    reference = registry.resolve(given, "keras_tuner build function")
    name = spec.get("name") or given
    if not isinstance(name, str):
        raise SpaceError(f"the name of a keras_tuner search space must be a string, got {name!r}")
    return reference, name


def _check_module_exists(module: str, what: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # A missing parent package raises instead of returning None.
        found = False
    if not found:
        raise SpaceError(f"{what}: module {module!r} cannot be found; is it installed or on PYTHONPATH?")
