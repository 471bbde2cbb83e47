"""The new-job form: its choices, its defaults, and how its fields become a :class:`JobSpec`.

Everything a non-expert needs has a default, so a job can be submitted without
knowing the JSON shape; the form's values are kept when it comes back with an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError

import controller
from l2l.datasets import BUILT_IN_KINDS
from l2l.jobspec import JobSpec


@dataclass(frozen=True)
class Option:
    value: str
    label: str
    hint: str = ""


#: What each built-in dataset is, in words; a dataset added to the registry later still
#: appears in the form, described by its kind.
DATASET_HINTS = {
    "digits": ("Digits", "8x8 images of handwritten digits, 10 classes"),
    "breast_cancer": ("Breast cancer", "tabular, 30 measurements, benign or malignant"),
    "wine": ("Wine", "tabular, 13 chemical measurements, 3 cultivars"),
}

SPACES = (
    Option("nb201_cell", "Convolutional cell (NAS-Bench-201)", "for images: how a small cell is wired"),
    Option("mlp", "Multilayer perceptron", "for any data: searches depth, width, activation, dropout"),
)

STRATEGY_HINTS = {
    "reinforce": ("Reinforcement learning", "an LSTM controller learns which choices score well"),
    "evolution": ("Regularized evolution", "mutates the best recent architectures"),
    "random": ("Random search", "a strong, simple baseline"),
    "model_based": ("Model-based RL", "a policy proposes, a learned reward model picks"),
    "optuna_tpe": ("Optuna TPE", "Optuna's tree-structured Parzen estimator"),
    "optuna_tpe_mv": ("Optuna TPE, multivariate", "TPE that models the choices together"),
}

DEFAULTS = {
    "name": "",
    "dataset": "digits",
    "space": "nb201_cell",
    "strategy": "reinforce",
    "trials": "20",
    "concurrency": "2",
    "epochs": "4",
    "seed": "",
}


def dataset_options() -> list[Option]:
    options = []
    for name in sorted(BUILT_IN_KINDS, key=lambda n: (n not in DATASET_HINTS, n)):
        label, hint = DATASET_HINTS.get(name, (name, f"{BUILT_IN_KINDS[name]} data"))
        options.append(Option(name, label, hint))
    return options


def strategy_options() -> list[Option]:
    names = [n for n in STRATEGY_HINTS if n in controller.strategy_names()]
    names += [n for n in controller.strategy_names() if n not in STRATEGY_HINTS]
    return [Option(n, *STRATEGY_HINTS.get(n, (n, ""))) for n in names]


def parse_form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body; the last value of a repeated field wins."""
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


class FormError(ValueError):
    """The form's values cannot make a job; the message says which field and why."""


def job_spec(values: dict[str, str]) -> JobSpec:
    """The job the form describes; raises :class:`FormError` with a message a person can act on."""
    body: dict[str, Any] = {
        "dataset": values.get("dataset") or DEFAULTS["dataset"],
        "space": values.get("space") or DEFAULTS["space"],
        "strategy": values.get("strategy") or DEFAULTS["strategy"],
        "budget": {
            "trials": _integer(values, "trials", "Trials"),
            "concurrency": _integer(values, "concurrency", "Trials at a time"),
            "epochs": _integer(values, "epochs", "Epochs per trial"),
        },
    }
    if values.get("name", "").strip():
        body["name"] = values["name"].strip()
    if values.get("seed", "").strip():
        body["seed"] = _integer(values, "seed", "Seed")
    try:
        return JobSpec.model_validate(body)
    except ValidationError as error:
        raise FormError("; ".join(_describe(e) for e in error.errors())) from None


def _integer(values: dict[str, str], field: str, label: str) -> int:
    raw = values.get(field, "").strip() or DEFAULTS[field]
    try:
        return int(raw)
    except ValueError:
        raise FormError(f"{label} must be a whole number, not {raw!r}") from None


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg', 'is not valid')}" if where else str(error.get("msg"))
