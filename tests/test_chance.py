"""Chance level: measured on real data splits, and the warning a model at chance gets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from l2l.service.chance import beats_clearly, chance_level, chance_warning
from l2l.service.datasets import load_dataset

CHANCE = {
    "task": "classification",
    "metric": "accuracy",
    "guess": "always guessing the most frequent class ('3')",
    "validation": 0.3333,
    "test": 0.3333,
}


def test_the_chance_level_of_a_classification_is_the_majority_class_of_the_training_part() -> None:
    data = load_dataset("breast_cancer")  # 212 malignant, 357 benign
    chance = chance_level(data)

    majority = int(np.bincount(data.y_train).argmax())
    assert chance["guess"] == f"always guessing the most frequent class ({data.class_names[majority]!r})"
    assert chance["validation"] == pytest.approx(float(np.mean(data.y_val == majority)))
    assert chance["test"] == pytest.approx(float(np.mean(data.y_test == majority)))
    assert 0.6 < chance["test"] < 0.65  # 357 / 569 = 0.627


def test_the_chance_level_of_a_regression_is_the_loss_of_the_training_mean(tmp_path: Path) -> None:
    table = tmp_path / "prices.csv"
    table.write_text("size,price\n" + "".join(f"{i},{2.0 * i}\n" for i in range(50)))
    data = load_dataset({"name": "csv", "path": str(table), "target": "price", "task": "regression"})
    chance = chance_level(data)

    mean = float(np.mean(data.y_train))
    assert chance["metric"] == "loss" and chance["task"] == "regression"
    assert chance["test"] == pytest.approx(float(np.mean((data.y_test - mean) ** 2)), rel=1e-5)
    assert f"({mean:.4g})" in chance["guess"]


def test_a_final_model_at_chance_gets_a_warning_that_says_so() -> None:
    # What the issue saw: three balanced classes, every trial and the final model at 0.333.
    warning = chance_warning(CHANCE, {"val_accuracy": 0.3333}, {"test_accuracy": 0.3333})

    assert warning is not None
    assert warning.startswith(
        "the final model scores 0.333 (test accuracy), the same as always guessing the most frequent "
        "class ('3') (0.333); the best trial scores 0.333 (validation accuracy), the same as"
    )
    assert "try more epochs" in warning


def test_a_model_that_learned_gets_no_warning_and_one_just_above_chance_does() -> None:
    assert chance_warning(CHANCE, {"val_accuracy": 0.95}, {"test_accuracy": 1.0}) is None
    barely = chance_warning(CHANCE, {"val_accuracy": 0.95}, {"test_accuracy": 0.36})
    assert barely is not None and "not clearly better than" in barely and "best trial" not in barely
    assert chance_warning(None, {"val_accuracy": 0.3}, None) is None  # not started: nothing to judge
    assert chance_warning(CHANCE, {"val_accuracy": 0.9}, None) is None  # no final model yet


def test_beating_chance_clearly_means_closing_a_tenth_of_the_gap_to_perfect() -> None:
    assert beats_clearly(0.40, 1 / 3, "accuracy") and not beats_clearly(0.39, 1 / 3, "accuracy")
    assert beats_clearly(0.9, 1.0, "loss") and not beats_clearly(0.95, 1.0, "loss")
