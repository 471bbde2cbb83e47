"""Best-so-far curves from benchmark results files, drawn with matplotlib (Agg) into one PNG."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def load_results(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    documents = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            documents.append(json.load(handle))
    return documents


def mean_curve(runs: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float]]:
    """Mean and standard error of the best-so-far validation accuracy (%) after each query."""
    length = min(len(run["best_so_far"]) for run in runs)
    means, errors = [], []
    for query in range(length):
        values = [100.0 * run["best_so_far"][query] for run in runs if run["best_so_far"][query] is not None]
        means.append(statistics.fmean(values) if values else float("nan"))
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        errors.append(spread / max(1, len(values)) ** 0.5)
    return means, errors


def plot_curves(documents: Sequence[Mapping[str, Any]], out: str | Path, title: str | None = None) -> Path:
    """One panel per dataset; one line (mean, ± standard error band) per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(doc["dataset"] for doc in documents))
    figure, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    for axis, dataset in zip(axes[0], datasets, strict=True):
        for doc in (d for d in documents if d["dataset"] == dataset):
            for label, entry in doc["strategies"].items():
                means, errors = mean_curve(entry["runs"])
                queries = range(1, len(means) + 1)
                summary = entry["summary"]
                line = axis.plot(
                    queries, means, label=f"{label} (test {summary['test_mean']:.2f}, n={summary['runs']})"
                )[0]
                low = [m - e for m, e in zip(means, errors, strict=True)]
                high = [m + e for m, e in zip(means, errors, strict=True)]
                axis.fill_between(queries, low, high, color=line.get_color(), alpha=0.2)
            threshold = doc.get("top1pct_valid_threshold")
        if threshold is not None:
            axis.axhline(threshold, color="grey", linestyle=":", linewidth=1, label="top 1% of the space")
        axis.set_title(f"NAS-Bench-201 (12 epochs), {dataset}")
        axis.set_xlabel("queries")
        axis.set_ylabel("best validation accuracy so far (%)")
        axis.set_xscale("log")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
        # Random search's first queries would squash the interesting part of the curve.
        finals = [line.get_ydata()[-1] for line in axis.get_lines() if len(line.get_ydata()) > 2]
        if finals:
            top = max(max(finals), threshold or 0)
            axis.set_ylim(top - 6 * max(1.0, top - min(finals)), top + 0.5)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    plt.close(figure)
    return out
