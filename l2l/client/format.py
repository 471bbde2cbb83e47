"""How the command line shows what the service answers: metrics, job summaries and API errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: Metrics that count things (shown as whole numbers: 866, not 866.0000).
_COUNT = re.compile(r"^(parameters|flops)$|_examples$")


def metric_text(name: str, value: Any) -> str:
    """One metric's value for people: counts whole, seconds with a unit, scores to 4 decimals."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    if _COUNT.search(name):
        return f"{round(value):,}"
    if name.endswith("seconds"):
        return f"{value:.1f} s"
    return f"{value:.4f}"


def metrics_text(metrics: Mapping[str, Any]) -> str:
    """``name value, name value`` for every metric, in the order given."""
    return ", ".join(f"{name} {metric_text(name, value)}" for name, value in metrics.items())


def error_detail(detail: Any) -> str:
    """An API error's ``detail`` as text: pydantic's list of errors becomes ``field: message`` lines."""
    if not isinstance(detail, list):
        return str(detail)
    lines = []
    for error in detail:
        if not isinstance(error, Mapping):
            lines.append(str(error))
            continue
        # The request body's own fields, without pydantic's "body" and union-branch names.
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return lines[0] if len(lines) == 1 else "\n" + "\n".join(f"  {line}" for line in lines)


def job_summary(job: Mapping[str, Any], trial_count: int | None = None) -> list[str]:
    """The end of ``l2l submit --wait``: how the job ended, its best trial and final model, the
    chance level and any warning, as lines a person reads top to bottom."""
    progress = job["progress"]
    lines = [f"job {job['id']} {job['state']}: {job['name']}"]
    if job.get("reason"):
        lines.append(f"  why: {job['reason']}")
    counts = [f"{progress['completed']} of {progress['trials']} trials completed"]
    counts += [f"{progress[state]} {state}" for state in ("failed", "cancelled") if progress.get(state)]
    lines.append("  " + ", ".join(counts))
    best = job.get("best_trial")
    if best:
        objective = job["spec"].get("objective", {}).get("metric", "reward")
        value = best["metrics"].get(objective, best["reward"])
        lines.append(f"  best: trial {best['number']}, {objective} {metric_text(objective, value)}")
        lines.append(f"        {', '.join(f'{k}={v}' for k, v in best['params'].items())}")
    chance = job.get("chance")
    if chance and isinstance(chance.get("validation"), (int, float)):
        part = "test" if isinstance(chance.get("test"), (int, float)) else "validation"
        level = f"{chance['metric']} {chance[part]:.4f} on the {part} part"
        lines.append(f"  chance level: {level}, from {chance['guess']}")
    final = job.get("final_model")
    if final and final["state"] == "completed":
        retrained = f"trial {_trial_number(job, final)} retrained"
        lines.append(f"  final model ({retrained}): {metrics_text(final['test_metrics'])}")
        lines.append(f"  download it: l2l download {job['id']}")
    elif final and final["state"] == "failed":
        lines.append(f"  final model failed: {final.get('error') or 'no reason given'}")
    if job.get("warning"):
        lines.append(f"  WARNING: {job['warning']}")
    return lines


def _trial_number(job: Mapping[str, Any], final: Mapping[str, Any]) -> str:
    best = job.get("best_trial")
    return str(best["number"]) if best and best["id"] == final["trial_id"] else f"id {final['trial_id']}"
