"""KerasTuner interop: a ``build(hp)`` function as a search space, and any space as ``hp``.

:func:`space_from_build` runs the user's ``build(hp)`` once with a recording
``keras_tuner.HyperParameters()``, as KerasTuner's oracle does to populate its space,
and turns what was registered into our decisions. Hyperparameters only reached
under branches the default values do not take are not seen (KerasTuner discovers
those trial by trial; a fixed space cannot). ``hp.Fixed`` values are kept in the
settings, not searched. The space's builder, :func:`build_model`, hands the chosen
values to the user's ``build(hp)``, which compiles the model as in KerasTuner.

This is the only module of the package that imports keras_tuner.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import keras
import keras_tuner
from keras_tuner.engine import hyperparameters as kt_hp

from search_spaces import registry
from search_spaces.conditions import ACTIVE_FORM, CONDITIONS, INACTIVE
from search_spaces.spec import (
    Choice,
    DataInfo,
    Decision,
    FloatRange,
    IntRange,
    SearchSpace,
    SpaceError,
)
from search_spaces.template import FIXED_PARAMS

BUILDER = "search_spaces.keras_tuner_space:build_model"

#: A stepped float range with at most this many points becomes a choice of exactly those points.
MAX_GRID_POINTS = 64


def space_from_build(reference: str, name: str | None = None) -> SearchSpace:
    """The space recorded from the ``build(hp)`` named by ``"module:function"``."""
    build = load_build_function(reference)
    hp = keras_tuner.HyperParameters()
    try:
        build(hp)
    except Exception as error:
        raise SpaceError(f"{reference}(hp) failed while recording its hyperparameters: {error}") from error
    decisions: list[Decision] = []
    fixed: dict[str, Any] = {}
    seen: set[str] = set()
    for hyperparameter in hp.space:
        # A name registered again under another condition is the same decision for a flat space.
        if hyperparameter.name in seen:
            continue
        seen.add(hyperparameter.name)
        if isinstance(hyperparameter, kt_hp.Fixed):
            fixed[hyperparameter.name] = hyperparameter.value
        else:
            decisions.append(_decision_from_hyperparameter(hyperparameter))
    if not decisions:
        raise SpaceError(f"{reference}(hp) registers no tunable hyperparameters (hp.Choice, hp.Int, ...)")
    return SearchSpace(
        name=name or reference,
        decisions=tuple(decisions),
        builder=BUILDER,
        settings={"build": reference, FIXED_PARAMS: fixed},
    )


def space_from_hyperparameters(
    hp: keras_tuner.HyperParameters, name: str, builder: str = BUILDER
) -> SearchSpace | None:
    """The tunable part of a KerasTuner space as ours, or None if nothing in it is tunable.

    Decisions come in registration order, so a space that grew is the older space with new
    decisions appended (what :meth:`controller.Strategy.extend_space` takes). A name
    registered under several conditions is one decision (the first registration's range),
    active when any of its conditions holds; ``hp.Fixed`` values are KerasTuner's to fill in
    and are not searched. Conditions and defaults go into the settings (see
    :mod:`search_spaces.conditions`), and the space's canonical form writes inactive
    decisions as their defaults.
    """
    decisions: dict[str, Decision] = {}
    conditions: dict[str, list[list[list[Any]]]] = {}
    defaults: dict[str, Any] = {}
    for hyperparameter in hp.space:
        if isinstance(hyperparameter, kt_hp.Fixed):
            continue
        alternative = [[c.name, list(c.values)] for c in hyperparameter.conditions]
        if hyperparameter.name not in decisions:
            decision = _decision_from_hyperparameter(hyperparameter)
            decisions[hyperparameter.name] = decision
            defaults[hyperparameter.name] = decision.check(_default_of(hyperparameter, decision))
            conditions[hyperparameter.name] = []
        if alternative:
            conditions[hyperparameter.name].append(alternative)
        else:
            conditions[hyperparameter.name] = [[]]  # registered unconditionally: always active
    if not decisions:
        return None
    conditional = {n: alts for n, alts in conditions.items() if alts and all(alts)}
    settings: dict[str, Any] = {"defaults": defaults}
    if conditional:
        settings[CONDITIONS] = conditional
        settings[INACTIVE] = {n: defaults[n] for n in conditional}
    return SearchSpace(
        name=name,
        decisions=tuple(decisions.values()),
        builder=builder,
        settings=settings,
        canonical=ACTIVE_FORM if conditional else None,
    )


def _default_of(hyperparameter: Any, decision: Decision) -> Any:
    """KerasTuner's default, or the decision's nearest level when the default is off our grid."""
    default = hyperparameter.default
    try:
        return decision.check(default)
    except SpaceError:
        levels = decision.levels()
        if isinstance(decision, Choice) or not isinstance(default, (int, float)):
            return levels[0]
        return min(levels, key=lambda level: abs(float(level) - float(default)))


def build_model(params: Mapping[str, Any], data: DataInfo, settings: Mapping[str, Any]) -> keras.Model:
    """Call the user's ``build(hp)`` with ``hp`` holding the chosen values."""
    build = load_build_function(str(settings["build"]))
    hp = keras_tuner.HyperParameters()
    # Values present before a hyperparameter is registered are what hp.Choice(...) etc. return.
    hp.values.update({**settings.get(FIXED_PARAMS, {}), **params})
    model = build(hp)
    if not isinstance(model, keras.Model):
        raise SpaceError(f"{settings['build']}(hp) must return a keras.Model, got {type(model).__name__}")
    if not model.compiled:
        raise SpaceError(f"{settings['build']}(hp) must compile the model, as KerasTuner expects")
    _check_output_units(model, data, str(settings["build"]))
    return model


def to_hyperparameters(space: SearchSpace) -> keras_tuner.HyperParameters:
    """KerasTuner's view of any of our spaces, for running KerasTuner oracles over it."""
    hp = keras_tuner.HyperParameters()
    for decision in space.decisions:
        if isinstance(decision, Choice):
            _register_choice(hp, decision)
        elif isinstance(decision, IntRange):
            if decision.log and decision.step == 1:
                hp.Int(decision.name, decision.low, decision.high, sampling="log")
            else:
                # KerasTuner's log step multiplies; ours adds, so a stepped log range samples linearly.
                hp.Int(decision.name, decision.low, decision.high, step=decision.step)
        else:
            sampling = "log" if decision.log else "linear"
            hp.Float(decision.name, decision.low, decision.high, sampling=sampling)
    return hp


def load_build_function(reference: str) -> Callable[[Any], Any]:
    """The registered ``build(hp)`` function ``reference`` names; SpaceError if not registered."""
    function = registry.load(reference, "keras_tuner build function")
    if not callable(function):
        raise SpaceError(f"{reference!r} is not a function")
    return function  # type: ignore[no-any-return]


def _decision_from_hyperparameter(hyperparameter: Any) -> Decision:
    name = hyperparameter.name
    if isinstance(hyperparameter, kt_hp.Boolean):
        return Choice(name, (False, True))
    if isinstance(hyperparameter, kt_hp.Choice):
        return Choice(name, tuple(hyperparameter.values))
    if isinstance(hyperparameter, kt_hp.Int):
        low, high, step = int(hyperparameter.min_value), int(hyperparameter.max_value), hyperparameter.step
        if hyperparameter.sampling == "log":
            if step is None or step == 1:
                return IntRange(name, low, high, log=True)
            return Choice(name, tuple(int(v) for v in _geometric(low, high, step)))
        return IntRange(name, low, high, step=int(step or 1))
    if isinstance(hyperparameter, kt_hp.Float):
        return _float_decision(hyperparameter)
    raise SpaceError(f"hyperparameter {name!r} of type {type(hyperparameter).__name__} is not supported")


def _float_decision(hyperparameter: Any) -> Decision:
    low, high, step = float(hyperparameter.min_value), float(hyperparameter.max_value), hyperparameter.step
    log = hyperparameter.sampling == "log"
    if step:
        grid = _geometric(low, high, step) if log else _arithmetic(low, high, step)
        if len(grid) <= MAX_GRID_POINTS:
            return Choice(hyperparameter.name, tuple(grid))
    # "reverse_log" has no counterpart here and is sampled linearly.
    return FloatRange(hyperparameter.name, low, high, log=log)


def _register_choice(hp: keras_tuner.HyperParameters, decision: Choice) -> None:
    options = list(decision.options)
    if all(isinstance(v, bool) for v in options) and set(options) == {False, True}:
        hp.Boolean(decision.name)
        return
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in options):
        # KerasTuner wants one type per choice; 1 and 0.5 together become floats.
        if any(isinstance(v, float) for v in options):
            options = [float(v) for v in options]
    elif len({type(v) for v in options}) > 1:
        raise SpaceError(f"decision {decision.name!r} mixes option types; KerasTuner needs one type")
    hp.Choice(decision.name, options)


def _arithmetic(low: float, high: float, step: float) -> list[float]:
    count = int(math.floor((high - low) / step + 1e-9)) + 1
    return [round(low + i * step, 12) for i in range(count)]


def _geometric(low: float, high: float, factor: float) -> list[float]:
    if factor <= 1:
        raise SpaceError(f"a log-sampled step must be above 1, got {factor}")
    values, value = [], low
    while value <= high * (1 + 1e-9):
        values.append(value)
        value *= factor
    return values


def _check_output_units(model: keras.Model, data: DataInfo, reference: str) -> None:
    try:
        units = model.outputs[0].shape[-1]
    except (AttributeError, IndexError, TypeError):
        return  # Subclassed models have no symbolic outputs until called; trust the user.
    expected = 1 if data.task == "regression" else data.num_classes
    if units is not None and units != expected:
        raise SpaceError(f"{reference}(hp) makes a model with {units} outputs; this data needs {expected}")
