"""What a search space is, in pure Python: a validated list of named decisions.

Nothing here imports Keras, so the API process can validate a job's space and the
controllers can reason about it without loading a deep-learning framework. The
model itself is made by the space's *builder*, named by a ``"module:function"``
string and imported only on the worker (see :func:`SearchSpace.load_builder`).

Every decision has a discrete view (``levels``) so that index-based strategies
(evolution, the REINFORCE policy) can treat all of them as categorical; float and
wide integer ranges are discretised into ``levels`` points, log-spaced when
``log`` is set. Random search may still sample the continuous range directly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from search_spaces import registry
from search_spaces.errors import SpaceError

Scalar = str | int | float | bool
Params = dict[str, Any]

#: How many points a float range (or a very wide integer range) offers to
#: index-based strategies unless the space says otherwise.
DEFAULT_LEVELS = 8


@dataclass(frozen=True)
class DataInfo:
    """What a builder needs to know about the data, and nothing more."""

    input_shape: tuple[int, ...]
    num_classes: int  # 1 for regression
    task: str = "classification"  # or "regression"
    kind: str = "tabular"  # or "image"


@dataclass(frozen=True)
class Choice:
    """One of a fixed list of options (numbers, strings or booleans)."""

    name: str
    options: tuple[Scalar, ...]

    def __post_init__(self) -> None:
        if not self.options:
            raise SpaceError(f"decision {self.name!r}: a choice needs at least one option")
        if len(set(map(_hashable, self.options))) != len(self.options):
            raise SpaceError(f"decision {self.name!r}: options must be distinct")

    def levels(self) -> tuple[Scalar, ...]:
        return self.options

    def sample(self, rng: random.Random) -> Scalar:
        return rng.choice(self.options)

    def check(self, value: Any) -> Scalar:
        for option in self.options:
            if _hashable(option) == _hashable(value):
                return option
        raise SpaceError(f"{self.name}={value!r} is not one of {list(self.options)}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": "choice", "options": list(self.options)}


@dataclass(frozen=True)
class IntRange:
    """An integer in ``[low, high]`` on a grid of ``step``, optionally log-sampled."""

    name: str
    low: int
    high: int
    step: int = 1
    log: bool = False
    max_levels: int = 16

    def __post_init__(self) -> None:
        if self.high < self.low:
            raise SpaceError(f"decision {self.name!r}: high ({self.high}) is below low ({self.low})")
        if self.step < 1:
            raise SpaceError(f"decision {self.name!r}: step must be at least 1")
        if self.log and self.low < 1:
            raise SpaceError(f"decision {self.name!r}: a log range needs low >= 1")

    def levels(self) -> tuple[int, ...]:
        grid = list(range(self.low, self.high + 1, self.step))
        if len(grid) <= self.max_levels:
            return tuple(grid)
        picks = _spread(self.low, self.high, self.max_levels, self.log)
        # Snap down so that every level stays on the step grid and inside the range.
        return tuple(sorted({self.low + int((p - self.low) // self.step) * self.step for p in picks}))

    def sample(self, rng: random.Random) -> int:
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))
            value = min(int(value), self.high)
        else:
            value = rng.randint(self.low, self.high)
        return self.low + ((value - self.low) // self.step) * self.step

    def check(self, value: Any) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value != int(value)
        ):
            raise SpaceError(f"{self.name}={value!r} must be an integer")
        value = int(value)
        if not self.low <= value <= self.high or (value - self.low) % self.step:
            raise SpaceError(f"{self.name}={value} is outside [{self.low}, {self.high}] (step {self.step})")
        return value

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "type": "int",
            "low": self.low,
            "high": self.high,
            "step": self.step,
            "log": self.log,
        }
        return _with_max_levels(data, self.max_levels, IntRange.max_levels)


@dataclass(frozen=True)
class FloatRange:
    """A real number in ``[low, high]``, optionally on a log scale."""

    name: str
    low: float
    high: float
    log: bool = False
    max_levels: int = DEFAULT_LEVELS

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.high <= self.low:
            raise SpaceError(f"decision {self.name!r}: needs finite low < high")
        if self.log and self.low <= 0:
            raise SpaceError(f"decision {self.name!r}: a log range needs low > 0")

    def levels(self) -> tuple[float, ...]:
        return tuple(_spread(self.low, self.high, self.max_levels, self.log))

    def sample(self, rng: random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpaceError(f"{self.name}={value!r} must be a number")
        if not self.low <= float(value) <= self.high:
            raise SpaceError(f"{self.name}={value} is outside [{self.low}, {self.high}]")
        return float(value)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "type": "float",
            "low": self.low,
            "high": self.high,
            "log": self.log,
        }
        return _with_max_levels(data, self.max_levels, DEFAULT_LEVELS)


Decision = Choice | IntRange | FloatRange

Builder = Callable[[Mapping[str, Any], DataInfo, Mapping[str, Any]], Any]


@dataclass(frozen=True)
class SearchSpace:
    """A named, validated list of decisions plus the builder that turns values into a model.

    ``builder`` is ``"module:function"`` with the signature
    ``build(params, data: DataInfo, settings) -> keras.Model`` (compiled). ``settings``
    are fixed knobs of the space (width, depth) that are not searched. ``input_kinds``
    says which data the space can model ("tabular", "image").
    """

    name: str
    decisions: tuple[Decision, ...]
    builder: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    input_kinds: frozenset[str] = frozenset({"tabular", "image"})
    #: ``"module:function"``, ``canonical(params, settings) -> params``: the same network's
    #: values in a canonical form, equal for configurations that build equal networks
    #: (pure Python, no Keras). Strategies use it to avoid training one network twice.
    canonical: str | None = None

    def __post_init__(self) -> None:
        if not self.decisions:
            raise SpaceError(f"search space {self.name!r} has no decisions")
        names = [d.name for d in self.decisions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SpaceError(f"search space {self.name!r} repeats decisions {duplicates}")
        if ":" not in self.builder:
            raise SpaceError(f"builder {self.builder!r} must look like 'module:function'")
        if self.canonical is not None and ":" not in self.canonical:
            raise SpaceError(f"canonical {self.canonical!r} must look like 'module:function'")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.decisions)

    @property
    def cardinalities(self) -> tuple[int, ...]:
        """How many discrete levels each decision offers to index-based strategies."""
        return tuple(len(d.levels()) for d in self.decisions)

    def validate(self, params: Mapping[str, Any]) -> Params:
        """Return ``params`` checked and normalised; raise SpaceError naming what is wrong."""
        unknown = sorted(set(params) - set(self.names))
        if unknown:
            raise SpaceError(f"unknown decisions {unknown}; this space has {list(self.names)}")
        missing = [n for n in self.names if n not in params]
        if missing:
            raise SpaceError(f"missing decisions {missing}")
        return {d.name: d.check(params[d.name]) for d in self.decisions}

    def sample(self, rng: random.Random) -> Params:
        return {d.name: d.sample(rng) for d in self.decisions}

    def from_indices(self, indices: Sequence[int]) -> Params:
        """Values for one level index per decision (the discrete view)."""
        if len(indices) != len(self.decisions):
            raise SpaceError(f"expected {len(self.decisions)} indices, got {len(indices)}")
        return {d.name: d.levels()[i] for d, i in zip(self.decisions, indices, strict=True)}

    def to_indices(self, params: Mapping[str, Any]) -> list[int]:
        """The nearest level index of each value (exact for choices and small int ranges)."""
        return [_nearest_level(d, params[d.name]) for d in self.decisions]

    def load_builder(self) -> Builder:
        builder: Builder = _load_reference(self.builder, "builder")
        return builder

    def canonical_indices(self, indices: Sequence[int]) -> tuple[int, ...]:
        """The level indices of the canonical form of the configuration ``indices``.

        Equal for configurations that build the same network; ``indices`` itself when the
        space names no canonical form, or when the form is not a configuration of this
        space (a value outside a decision's options): then nothing is merged, which is
        never wrong, only less thorough.
        """
        indices = tuple(int(i) for i in indices)
        if self.canonical is None:
            return indices
        form = _load_reference(self.canonical, "canonical form")(self.from_indices(indices), self.settings)
        try:
            return tuple(self.to_indices(self.validate(form)))
        except SpaceError:
            return indices

    def canonical_params(self, params: Mapping[str, Any]) -> Params:
        """The canonical form of ``params`` (validated) by value: ``params`` itself when the
        space names no canonical form. Unlike :meth:`canonical_indices`, float values are
        kept as they are, not snapped to a level."""
        valid = self.validate(params)
        if self.canonical is None:
            return valid
        form = _load_reference(self.canonical, "canonical form")(valid, self.settings)
        return {name: form.get(name, value) for name, value in valid.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description that :meth:`from_dict` turns back into an equal space."""
        data: dict[str, Any] = {
            "name": self.name,
            "builder": self.builder,
            "settings": dict(self.settings),
            "input_kinds": sorted(self.input_kinds),
            "decisions": [d.to_dict() for d in self.decisions],
        }
        if self.canonical is not None:  # written only when there is one, as spaces stored before it
            data["canonical"] = self.canonical
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        try:
            decisions = tuple(decision_from_dict(d) for d in data["decisions"])
            return cls(
                name=str(data["name"]),
                decisions=decisions,
                builder=str(data["builder"]),
                settings=dict(data.get("settings") or {}),
                input_kinds=frozenset(data.get("input_kinds") or ("tabular", "image")),
                canonical=None if data.get("canonical") is None else str(data["canonical"]),
            )
        except KeyError as error:
            raise SpaceError(f"search space description is missing {error.args[0]!r}") from error


def _load_reference(reference: str, what: str) -> Any:
    """The object ``"module:name"`` names, if an admin registered it (see :mod:`search_spaces.registry`);
    SpaceError saying which ``what`` otherwise."""
    return registry.load(reference, what)


def decision_from_dict(data: Mapping[str, Any]) -> Decision:
    """Parse one decision as written in JSON/YAML: ``type`` is choice, int or float."""
    if not isinstance(data, Mapping):
        raise SpaceError(f"each decision must be a mapping, got {data!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise SpaceError(f"decision {data!r} needs a non-empty 'name'")
    kind = data.get("type", "choice" if "options" in data else None)
    try:
        if kind == "choice":
            options = data["options"]
            if not isinstance(options, (list, tuple)):
                raise SpaceError(f"decision {name!r}: 'options' must be a list")
            return Choice(name, tuple(options))
        if kind == "int":
            return IntRange(
                name,
                _strict_int(data["low"]),
                _strict_int(data["high"]),
                step=_strict_int(data.get("step", 1)),
                log=bool(data.get("log", False)),
                max_levels=_strict_int(data.get("max_levels", IntRange.max_levels)),
            )
        if kind == "float":
            return FloatRange(
                name,
                float(data["low"]),
                float(data["high"]),
                log=bool(data.get("log", False)),
                max_levels=_strict_int(data.get("max_levels", DEFAULT_LEVELS)),
            )
    except KeyError as error:
        raise SpaceError(f"decision {name!r} ({kind}) is missing {error.args[0]!r}") from error
    except (TypeError, ValueError) as error:
        if isinstance(error, SpaceError):
            raise
        raise SpaceError(f"decision {name!r}: {error}") from error
    raise SpaceError(f"decision {name!r}: type must be 'choice', 'int' or 'float', not {kind!r}")


def _strict_int(value: Any) -> int:
    # int(2.7) would silently truncate a bound written by hand in JSON/YAML.
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value != int(value)
    ):
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


def _with_max_levels(data: dict[str, Any], max_levels: int, default: int) -> dict[str, Any]:
    # Only written when changed, so the usual description stays short.
    if max_levels != default:
        data["max_levels"] = max_levels
    return data


def _spread(low: float, high: float, count: int, log: bool) -> list[float]:
    if count < 2:
        return [low]
    if log:
        a, b = math.log(low), math.log(high)
        points = [math.exp(a + (b - a) * i / (count - 1)) for i in range(count)]
    else:
        points = [low + (high - low) * i / (count - 1) for i in range(count)]
    # Rounding can push the ends a hair outside the range, where validate() would refuse them.
    points[0], points[-1] = low, high
    return points


def _nearest_level(decision: Decision, value: Any) -> int:
    levels = decision.levels()
    if isinstance(decision, Choice):
        return [_hashable(o) for o in levels].index(_hashable(decision.check(value)))
    scale = math.log if decision.log else float
    target = scale(float(value))
    return min(range(len(levels)), key=lambda i: abs(scale(float(levels[i])) - target))


def _hashable(value: Any) -> tuple[str, Any]:
    # True == 1 in Python; keep booleans and numbers apart so options stay distinct.
    return (type(value).__name__ if isinstance(value, bool) else "value", value)
