"""Dataset specs, the seeded split and CSV loading (CSV files are written to tmp_path)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from l2l.service.datasets import (
    MIN_ROWS,
    DatasetError,
    check_dataset_spec,
    dataset_kind,
    dataset_names,
    load_dataset,
)


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _mixed_rows(count: int) -> list[list[object]]:
    """Numbers, text and gaps in the features; three text classes in ``label``."""
    colours = ["red", "green", "blue"]
    rows = []
    for i in range(count):
        size = "" if i % 7 == 0 else f"{i * 0.5:.1f}"
        colour = "NA" if i % 11 == 0 else colours[i % 3]
        rows.append([size, colour, i % 4, ["cat", "dog", "bird"][i % 3]])
    return rows


# -- built-in datasets -------------------------------------------------------------------------------


def test_built_in_datasets_have_the_documented_shapes_and_types() -> None:
    assert dataset_names() == ["breast_cancer", "digits", "wine"]
    digits = load_dataset("digits")
    assert digits.x_train.shape[1:] == (8, 8, 1) and digits.x_train.dtype == np.float32
    assert digits.x_train.min() >= 0.0 and digits.x_train.max() <= 1.0
    assert digits.y_train.dtype == np.int32
    assert (digits.info.input_shape, digits.info.num_classes, digits.info.kind) == ((8, 8, 1), 10, "image")
    assert len(digits.x_train) + len(digits.x_val) + len(digits.x_test) == 1797
    wine = load_dataset({"name": "wine"})
    assert wine.info.input_shape == (13,) and wine.info.num_classes == 3 and wine.info.kind == "tabular"


def test_tabular_features_are_standardised_with_training_statistics() -> None:
    data = load_dataset("breast_cancer")
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(data.x_train.std(axis=0), 1.0, atol=1e-3)
    assert abs(float(data.x_val.mean())) < 0.3  # Validation rows only use, never set, the statistics.


def test_split_is_the_same_for_a_seed_and_differs_across_seeds() -> None:
    first, again, other = (load_dataset("wine", seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.y_val, again.y_val)
    assert not np.array_equal(first.x_val, other.x_val)


def test_classification_split_is_stratified() -> None:
    data = load_dataset("wine", seed=3, validation_fraction=0.25, test_fraction=0.2)
    everything = np.concatenate([data.y_train, data.y_val, data.y_test])
    for label, count in zip(*np.unique(everything, return_counts=True), strict=True):
        assert abs((data.y_val == label).sum() - count * 0.25) <= 1
        assert abs((data.y_test == label).sum() - count * 0.2) <= 1
        assert (data.y_train == label).sum() > 0


def test_the_three_parts_never_share_a_row() -> None:
    data = load_dataset("digits", seed=0)
    rows = [{x.tobytes() for x in part} for part in (data.x_train, data.x_val, data.x_test)]
    assert len(data.x_test) == round(1797 * 0.2) or abs(len(data.x_test) - 1797 * 0.2) < 10
    # digits has a few duplicate images; nearly all rows are on one side only
    assert len(rows[0] & rows[2]) < 5 and len(rows[1] & rows[2]) < 5


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_validation_fraction_must_be_between_zero_and_one(fraction: float) -> None:
    with pytest.raises(DatasetError, match="validation_fraction"):
        load_dataset("digits", validation_fraction=fraction)


def test_built_in_specs_are_normalised() -> None:
    expected = {"name": "digits", "kind": "image", "task": "classification"}
    assert check_dataset_spec("digits") == expected
    assert check_dataset_spec({"name": "digits"}) == expected
    assert check_dataset_spec(expected) == expected
    assert dataset_kind("breast_cancer") == "tabular"
    assert dataset_kind({"name": "csv", "path": "/nowhere.csv", "target": "y"}) == "tabular"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mnist", "unknown dataset 'mnist'; choose one of breast_cancer, digits, wine, an uploaded"),
        ({"name": "digits", "path": "x"}, r"does not take \['path'\]"),
        ({"name": "digits", "kind": "tabular"}, "has kind 'image', not 'tabular'"),
        (3, "a dataset is a name or a mapping"),
        ({"name": "csv", "target": "y"}, "needs 'path'"),
    ],
)
def test_bad_specs_say_what_to_fix(spec: object, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        check_dataset_spec(spec)  # type: ignore[arg-type]


# -- CSV files ------------------------------------------------------------------------------------------


def test_csv_with_text_numbers_and_gaps_loads_as_classification(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "pets.csv", ["size", "colour", "legs", "label"], _mixed_rows(60))
    spec = {"name": "csv", "path": str(path), "target": "label"}
    assert check_dataset_spec(spec) == {**spec, "kind": "tabular", "task": "classification"}
    data = load_dataset(spec, seed=1)
    assert data.class_names == ("bird", "cat", "dog")
    assert data.info.num_classes == 3 and data.info.task == "classification"
    # size and legs are numbers; colour is one-hot over the colours seen in training.
    assert data.feature_names == ("size", "colour=blue", "colour=green", "colour=red", "legs")
    assert data.x_train.shape == (36, 5) and data.x_val.shape == (12, 5) and data.x_test.shape == (12, 5)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    assert np.isfinite(data.x_train).all() and np.isfinite(data.x_val).all()
    assert set(np.unique(data.x_train[:, 1:4])) <= {0.0, 1.0}
    assert (data.x_train[:, 1:4].sum(axis=1) == 1).all()  # A missing colour takes the most frequent one.
    np.testing.assert_array_equal(load_dataset(spec, seed=1).y_val, data.y_val)


def test_numeric_target_with_many_values_is_regression(tmp_path: Path) -> None:
    rows = [[i, (i * 7) % 5, i * 1.5 + 0.25] for i in range(40)]
    path = _write_csv(tmp_path / "prices.csv", ["area", "rooms", "price"], rows)
    data = load_dataset({"name": "csv", "path": str(path), "target": "price"})
    assert data.info.task == "regression" and data.info.num_classes == 1
    assert data.y_train.dtype == np.float32 and data.class_names == ()
    assert len(data.y_val) == 8


def test_numeric_labels_with_few_values_are_classes_in_numeric_order(tmp_path: Path) -> None:
    rows = [[i, [2, 10, 9][i % 3]] for i in range(30)]
    path = _write_csv(tmp_path / "grades.csv", ["score", "grade"], rows)
    data = load_dataset({"name": "csv", "path": str(path), "target": "grade"})
    assert data.class_names == ("2", "9", "10")
    forced = {"name": "csv", "path": str(path), "target": "grade", "task": "regression"}
    assert load_dataset(forced).info.task == "regression"


def test_relative_csv_path_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_csv(tmp_path / "pets.csv", ["size", "colour", "legs", "label"], _mixed_rows(20))
    monkeypatch.chdir(tmp_path)
    spec = check_dataset_spec({"name": "csv", "path": "pets.csv", "target": "label"})
    assert spec["path"] == str(tmp_path / "pets.csv")


def test_a_class_with_a_single_row_stays_in_training(tmp_path: Path) -> None:
    rows = [[i, "common" if i else "rare"] for i in range(20)]
    path = _write_csv(tmp_path / "rare.csv", ["x", "label"], rows)
    data = load_dataset({"name": "csv", "path": str(path), "target": "label"})
    rare = data.class_names.index("rare")
    assert (data.y_train == rare).sum() == 1 and (data.y_val == rare).sum() == 0


@pytest.mark.parametrize(
    ("header", "rows", "target", "message"),
    [
        (["a", "b"], [[1, 2]] * 20, "label", "target column 'label' is not in the CSV; its columns are a, b"),
        (["a", "label"], [[1, i % 2] for i in range(MIN_ROWS - 1)], "label", "has 9 rows .* at least 10"),
        (["a", "label"], [[i, ""] for i in range(15)] + [[1, 1]] * 3, "label", "has 3 rows"),
        (["a", "label"], [[i, "same"] for i in range(20)], "label", "single value 'same'; nothing to learn"),
        (["a", "a"], [[1, 2]] * 20, "a", "repeats the columns a"),
        (["label"], [[i % 2] for i in range(20)], "label", "no feature columns"),
    ],
)
def test_bad_csv_files_say_what_to_fix(
    tmp_path: Path, header: list[str], rows: list[list[object]], target: str, message: str
) -> None:
    path = _write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(DatasetError, match=message):
        check_dataset_spec({"name": "csv", "path": str(path), "target": target})


def test_unreadable_or_malformed_csv_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="is missing on the server"):
        check_dataset_spec({"name": "csv", "path": str(tmp_path / "none.csv"), "target": "y"})
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DatasetError, match="is empty"):
        check_dataset_spec({"name": "csv", "path": str(empty), "target": "y"})
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("x,y\n" + "1,0\n" * 12 + "1,2,3\n")
    with pytest.raises(DatasetError, match="line 14 has 3 fields; the header has 2"):
        check_dataset_spec({"name": "csv", "path": str(ragged), "target": "y"})
    words = _write_csv(tmp_path / "words.csv", ["x", "y"], [[i, f"w{i % 3}"] for i in range(20)])
    with pytest.raises(DatasetError, match="regression needs numbers"):
        check_dataset_spec({"name": "csv", "path": str(words), "target": "y", "task": "regression"})
    with pytest.raises(DatasetError, match="task must be one of classification, regression"):
        check_dataset_spec({"name": "csv", "path": str(words), "target": "y", "task": "ranking"})
