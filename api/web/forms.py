"""The new-job form: its choices, its defaults, and how its fields become a :class:`JobSpec`.

Everything a non-expert needs has a default, so a job can be submitted without
knowing the JSON shape; the form's values are kept when it comes back with an error.
The form makes a search or, with ``kind=placement``, a placement job ("Place a model").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError

import controller
from controller.placement import placement_strategy_names
from l2l.placement.benchmarks import BENCHMARK_GRAPHS
from l2l.placement.cluster import PRESETS
from l2l.service.datasets import BUILT_IN_KINDS
from l2l.service.jobspec import JobSpec
from l2l.store.records import DatasetRecord, GraphRecord, JobRecord


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
    Option(
        "",
        "Chosen from the data",
        "the multilayer perceptron, or for 5,000 images and more the convolutional cell",
    ),
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

BENCHMARK_HINTS = {
    "inception_v3": ("Inception-V3", "image classifier, 299x299 images, batch 32"),
    "resnet50": ("ResNet-50", "image classifier, 224x224 images, batch 32"),
    "nasnet": ("NASNet-A large", "image classifier found by architecture search, batch 32"),
    "rnnlm": ("RNN language model", "2 LSTM layers of 2048 units over 32 steps, batch 64"),
    "nmt": ("Neural translation", "4 + 4 LSTM layers of 1024 units with attention, batch 128"),
}

PLACER_HINTS = {
    "hierarchical": (
        "Hierarchical planner",
        "learns to group ops and place the groups (Mirhoseini et al. 2018)",
    ),
    "random": ("Random placements", "the floor any placer must clear"),
}

DEFAULTS = {
    "kind": "search",
    "source": "benchmark:nmt",
    "cluster": "4gpu-pcie",
    "placer": "hierarchical",
    "max_seconds": "120",
    "batch_size": "",
    "name": "",
    "dataset": "digits",
    "space": "",
    "strategy": "reinforce",
    "trials": "20",
    "concurrency": "2",
    "epochs": "",
    "seed": "",
}


def dataset_options(uploads: Sequence[DatasetRecord] = ()) -> list[Option]:
    """The team's uploads first (newest first; value ``upload:ID``), then the built-in datasets."""
    options = [Option(f"upload:{d.id}", d.name, _upload_hint(d)) for d in uploads]
    for name in sorted(BUILT_IN_KINDS, key=lambda n: (n not in DATASET_HINTS, n)):
        label, hint = DATASET_HINTS.get(name, (name, f"{BUILT_IN_KINDS[name]} data"))
        options.append(Option(name, label, hint))
    return options


def _upload_hint(dataset: DatasetRecord) -> str:
    summary = dataset.summary
    parts = [f"your upload #{dataset.id}", dataset.spec.get("kind", ""), f"{summary.get('rows', '?'):,} rows"]
    classes = summary.get("classes")
    if classes:
        parts.append(f"{len(classes)} classes")
    elif summary.get("task") == "regression":
        parts.append("regression")
    return ", ".join(p for p in parts if p)


def strategy_options() -> list[Option]:
    names = [n for n in STRATEGY_HINTS if n in controller.strategy_names()]
    names += [n for n in controller.strategy_names() if n not in STRATEGY_HINTS]
    return [Option(n, *STRATEGY_HINTS.get(n, (n, ""))) for n in names]


def benchmark_options() -> list[Option]:
    return [Option(name, *BENCHMARK_HINTS.get(name, (name, ""))) for name in BENCHMARK_GRAPHS]


def cluster_options() -> list[Option]:
    options = []
    for name, cluster in PRESETS.items():
        kinds = ", ".join(
            f"{sum(d.kind == kind for d in cluster.devices)} x {kind}" for kind in cluster.kinds
        )
        links = cluster.bandwidth[0, 1] if len(cluster) > 1 else 0.0
        options.append(Option(name, name, f"{kinds}; links {links / 1e9:g} GB/s"))
    return options


def placer_options() -> list[Option]:
    return [Option(name, *PLACER_HINTS.get(name, (name, ""))) for name in placement_strategy_names()]


def placeable_job_options(jobs: list[JobRecord]) -> list[Option]:
    """The team's finished searches with a best trial: what "the model of an earlier job" may be."""
    return [
        Option(str(job.id), f"#{job.id} {job.name}", job.state.value)
        for job in jobs
        if job.spec.get("kind", "search") == "search" and job.state.is_finished() and job.best_trial_id
    ]


def graph_options(graphs: list[GraphRecord]) -> list[Option]:
    return [Option(str(g.id), f"#{g.id} {g.name}", f"{g.summary.get('ops', '?')} ops") for g in graphs]


def parse_form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body; the last value of a repeated field wins."""
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


class FormError(ValueError):
    """The form's values cannot make a job; the message says which field and why."""


def job_spec(values: dict[str, str]) -> JobSpec:
    """The job the form describes; raises :class:`FormError` with a message a person can act on."""
    if values.get("kind") == "placement":
        return _validated(_placement_body(values), values)
    dataset: Any = values.get("dataset") or DEFAULTS["dataset"]
    if dataset.startswith("upload:"):
        chosen = dataset.removeprefix("upload:")
        if not chosen.isdigit():
            raise FormError(f"Data: pick one of your uploads or a built-in dataset, not {dataset!r}")
        dataset = {"id": int(chosen)}
    budget: dict[str, Any] = {
        "trials": _integer(values, "trials", "Trials"),
        "concurrency": _integer(values, "concurrency", "Trials at a time"),
    }
    if values.get("epochs", "").strip():  # empty: chosen from the data's size
        budget["epochs"] = _integer(values, "epochs", "Epochs per trial")
    body: dict[str, Any] = {
        "dataset": dataset,
        "strategy": values.get("strategy") or DEFAULTS["strategy"],
        "budget": budget,
    }
    if values.get("space"):  # empty: chosen from the data
        body["space"] = values["space"]
    return _validated(body, values)


def _placement_body(values: dict[str, str]) -> dict[str, Any]:
    # One select names what to place: "benchmark:nmt", "job:12" or "graph:4".
    source, _, chosen = (values.get("source") or DEFAULTS["source"]).partition(":")
    if source == "benchmark":
        graph: dict[str, Any] = {"benchmark": chosen}
    elif source in ("job", "graph") and chosen.isdigit():
        graph = {f"{source}_id": int(chosen)}
    else:
        raise FormError(f"Model: pick a benchmark, one of your searches or an uploaded graph, not {chosen!r}")
    raw_seconds = values.get("max_seconds", "").strip() or DEFAULTS["max_seconds"]
    try:
        max_seconds = float(raw_seconds)
    except ValueError:
        raise FormError(f"Time limit must be a number of seconds, not {raw_seconds!r}") from None
    placement: dict[str, Any] = {
        "graph": graph,
        "cluster": values.get("cluster") or DEFAULTS["cluster"],
        "strategy": values.get("placer") or DEFAULTS["placer"],
        "max_seconds": max_seconds,
    }
    if values.get("batch_size", "").strip() and source != "graph":  # a graph has its batch built in
        placement["batch_size"] = _integer(values, "batch_size", "Batch size")
    return {"kind": "placement", "placement": placement}


def _validated(body: dict[str, Any], values: dict[str, str]) -> JobSpec:
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
