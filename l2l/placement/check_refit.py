"""Refit a recorded placement check: what the per-layer calibration leaves out, fitted on the
single-device steps, tested on the placements that split the model.

The calibration times each layer alone (:func:`~l2l.placement.calibration.measure_layer_seconds`);
a placed step also pays, per task, the hand-over between the runner's threads and the
dispatch from Python, which the layer times do not hold. On a GPU that is most of a small
layer's time. This module fits one such cost per device kind and task from the placements
that keep every layer on one device (``measured - predicted`` over the step's tasks, a
forward and a backward per layer) and predicts the other placements, which it never saw, with
it: the held-out error of a calibrated model.

    python -m l2l.placement.check_refit docs/benchmarks/results/placement_check_h200_*.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l2l.placement.realstep import (
    CheckReport,
    hardware_kinds,
    op_placement,
    recorded_simulator,
    report_from_dict,
)

#: Tasks a layer adds to a step: its forward and its backward (with the update).
TASKS_PER_LAYER = 2


@dataclass(frozen=True)
class HeldOut:
    """One placement that spans several devices, predicted with and without the fitted cost."""

    model: str
    hardware: str
    placement: str
    measured_s: float
    predicted_s: float
    refit_s: float

    @property
    def error(self) -> float:
        return abs(self.predicted_s - self.measured_s) / self.measured_s

    @property
    def refit_error(self) -> float:
        return abs(self.refit_s - self.measured_s) / self.measured_s


def read_reports(path: Path) -> list[CheckReport]:
    return [report_from_dict(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def task_overheads(report: CheckReport) -> dict[str, float]:
    """Per device kind, the seconds a task costs beyond its calibrated layer time, from the
    placements that keep every layer on one device of that kind (their mean, floored at 0)."""
    kinds = hardware_kinds(report.hardware, report.devices)
    tasks = TASKS_PER_LAYER * len(report.layer_seconds)
    gaps: dict[str, list[float]] = {}
    for result in report.results:
        devices = set(result.placement.values())
        if len(devices) == 1:
            kind = kinds[devices.pop()]
            gaps.setdefault(kind, []).append((result.measured_s - result.predicted_s) / tasks)
    return {kind: max(0.0, statistics.mean(values)) for kind, values in gaps.items()}


def held_out(report: CheckReport) -> list[HeldOut]:
    """The placements of ``report`` that span several devices, predicted as recorded and again
    with each kind's fitted task cost added to every layer's forward and backward."""
    overheads = task_overheads(report)
    by_kind = report.layer_seconds_by_kind or {"cpu": report.layer_seconds}
    refit_seconds = {
        kind: {
            layer: (f + overheads.get(kind, 0.0), b + overheads.get(kind, 0.0))
            for layer, (f, b) in seconds.items()
        }
        for kind, seconds in by_kind.items()
    }
    refit_graph, refit = recorded_simulator(report, refit_seconds)
    rows = []
    for result in report.results:
        if len(set(result.placement.values())) < 2:
            continue  # fitted on: not held out
        refit_s = refit.simulate(op_placement(refit_graph, result.placement)).step_time
        rows.append(
            HeldOut(
                report.model, report.hardware, result.name, result.measured_s, result.predicted_s, refit_s
            )
        )
    return rows


def ordered_pairs(report: CheckReport) -> list[bool]:
    """For each pair of the report's placements, whether the prediction orders it as measured:
    what a placer needs from its simulator, more than the right milliseconds."""
    results = report.results
    return [
        (a.predicted_s < b.predicted_s) == (a.measured_s < b.measured_s)
        for i, a in enumerate(results)
        for b in results[i + 1 :]
    ]


def format_table(reports: Sequence[CheckReport]) -> str:
    lines = [
        "| hardware | model | placement | measured ms | predicted ms | error | refit ms | refit error |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows_by_hardware: dict[str, list[HeldOut]] = {}
    for report in reports:
        hardware = _hardware(report)
        for row in held_out(report):
            rows_by_hardware.setdefault(hardware, []).append(row)
            lines.append(
                f"| {hardware} | {row.model} | {row.placement} | {row.measured_s * 1e3:.2f} | "
                f"{row.predicted_s * 1e3:.2f} | {row.error:.1%} | {row.refit_s * 1e3:.2f} | "
                f"{row.refit_error:.1%} |"
            )
    lines.append("")
    for hardware, rows in rows_by_hardware.items():
        lines.append(
            f"{hardware}: median error on {len(rows)} held-out placements {_median(rows, 'error'):.1%} "
            f"as calibrated, {_median(rows, 'refit_error'):.1%} with the fitted task cost."
        )
    pairs = [pair for report in reports for pair in ordered_pairs(report)]
    lines.append(
        f"Pairs of placements of one model that the simulator orders as measured: "
        f"{sum(pairs)} of {len(pairs)} (every placement, as calibrated)."
    )
    lines.append("")
    for report in reports:
        fitted = ", ".join(
            f"{kind} {seconds * 1e6:.0f} us" for kind, seconds in task_overheads(report).items()
        )
        lines.append(f"- {_hardware(report)}, {report.model}: fitted task cost {fitted}")
    return "\n".join(lines)


def _median(rows: Sequence[HeldOut], attribute: str) -> float:
    return statistics.median(getattr(row, attribute) for row in rows)


def _hardware(report: CheckReport) -> str:
    return "GPU + host CPU" if report.hardware == "gpu+cpu" else f"{report.devices} virtual CPU devices"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m l2l.placement.check_refit", description=__doc__.split("\n")[0]
    )
    parser.add_argument("reports", nargs="+", type=Path, help="JSON-lines files of placement check reports")
    args = parser.parse_args(argv)
    reports: list[Any] = []
    for path in args.reports:
        try:
            reports += read_reports(path)
        except (OSError, ValueError, KeyError, TypeError) as error:
            print(
                f"l2l: cannot read placement check reports from {path}: {type(error).__name__}",
                file=sys.stderr,
            )
            return 2
    print(format_table(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
