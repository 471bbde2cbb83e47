"""Chance level: what a model that learned nothing scores on a job's data, and whether a job beat it.

A team without machine-learning experts cannot tell that 0.333 accuracy on three balanced
classes means the model learned nothing. The service can: when a search starts, the job
loop measures the *chance level* of its data from the training part, the score of always
guessing the training part's most frequent class (classification: its accuracy on the
validation and test parts) or its mean (regression: the mean squared error, which is the
loss every regression model is trained on). A best trial or final model that does not beat
it clearly gets a warning on the job.

"Clearly" is one rule for both: the score must close at least :data:`CLEAR_SHARE` of the gap
between chance and perfect (accuracy 1, loss 0). For three balanced classes (chance 0.333)
that is an accuracy of at least 0.4; for a regression, a loss at most 90% of the mean's
(a coefficient of determination of at least 0.1).

Pure functions: the loop computes, the API shows, nothing here touches the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The share of the gap between chance and a perfect score a model must close to count as learning.
CLEAR_SHARE = 0.1


def chance_level(data: Any) -> dict[str, Any]:
    """The chance level of a loaded :class:`~l2l.service.datasets.Dataset`.

    Returns ``{"task", "metric", "guess", "validation", "test"}``: ``metric`` is ``accuracy``
    (higher is better) or ``loss`` (mean squared error, lower is better), ``guess`` says in words
    what is always guessed, and ``validation`` / ``test`` are its scores on those parts (``test``
    is None when the data has no test part).
    """
    import numpy as np

    y_train = np.asarray(data.y_train)
    parts = {"validation": data.y_val, "test": data.y_test}
    if data.info.task == "regression":
        mean = float(y_train.astype(np.float64).mean())
        scores = {
            name: None
            if y is None or len(y) == 0
            else float(np.mean((np.asarray(y, np.float64) - mean) ** 2))
            for name, y in parts.items()
        }
        return {
            "task": "regression",
            "metric": "loss",
            "guess": f"always predicting the mean of the training part ({mean:.4g})",
            **scores,
        }
    classes, counts = np.unique(y_train, return_counts=True)
    majority = int(classes[int(np.argmax(counts))])
    names = tuple(getattr(data, "class_names", ()) or ())
    label = names[majority] if majority < len(names) else str(majority)
    scores = {
        name: None if y is None or len(y) == 0 else float(np.mean(np.asarray(y) == majority))
        for name, y in parts.items()
    }
    return {
        "task": "classification",
        "metric": "accuracy",
        "guess": f"always guessing the most frequent class ({label!r})",
        **scores,
    }


def beats_clearly(score: float, chance: float, metric: str) -> bool:
    """True if ``score`` closes at least :data:`CLEAR_SHARE` of the gap from ``chance`` to perfect."""
    if metric == "loss":
        return score <= (1 - CLEAR_SHARE) * chance
    return score >= chance + CLEAR_SHARE * (1 - chance)


def chance_warning(
    chance: Mapping[str, Any] | None,
    best_metrics: Mapping[str, Any] | None,
    final_test_metrics: Mapping[str, Any] | None,
) -> str | None:
    """A warning for the job's page, API and command line, or None when the job beat chance clearly.

    Looks at the best trial's validation score (``val_accuracy`` or ``val_loss``) and the final
    model's test score (``test_accuracy`` or ``test_loss``); a score that is missing is not judged.
    """
    if not chance:
        return None
    metric = chance["metric"]
    problems = []
    for who, metrics, key, part in (
        ("the final model", final_test_metrics, f"test_{metric}", "test"),
        ("the best trial", best_metrics, f"val_{metric}", "validation"),
    ):
        score, level = (metrics or {}).get(key), chance.get(part)
        if not isinstance(score, (int, float)) or not isinstance(level, (int, float)):
            continue
        if not beats_clearly(float(score), float(level), metric):
            how = "the same as" if abs(score - level) < 0.0005 else "not clearly better than"
            problems.append(
                f"{who} scores {score:.3f} ({part} {metric}), {how} {chance['guess']} ({level:.3f})"
            )
    if not problems:
        return None
    advice = (
        "it has not learned from the data: try more epochs, another space (mlp learns from few examples) "
        "or more data"
    )
    return "; ".join(problems) + f"; {advice}"
