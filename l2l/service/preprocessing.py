"""How raw inputs become the arrays a model was trained on, fitted on the training part only.

A :class:`Preprocessor` is saved beside every final model (``preprocessing.json``), so
the model a team downloads, and the service's predictions, turn new rows into
features exactly as training did: CSV columns standardised or one-hot encoded with
the training part's statistics, missing values filled the same way, pixels scaled the
same way, and class indices mapped back to the original labels.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: Cells read as missing values (compared lower-cased, stripped).
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})

#: A text column keeps its most frequent categories only, so an ID column cannot explode the width.
MAX_CATEGORIES = 100


class InputError(ValueError):
    """Rows to predict do not match what the model was trained on; the message says how."""


def is_missing(cell: Any) -> bool:
    if cell is None:
        return True
    if isinstance(cell, float):
        return math.isnan(cell)
    return str(cell).strip().lower() in MISSING


def as_number(cell: Any) -> float | None:
    try:
        value = float(cell)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclass
class ColumnEncoder:
    """One CSV column: a standardised number, or one-hot text categories."""

    name: str
    kind: str  # "number" or "text"
    fill: Any  # what a missing cell becomes
    mean: float = 0.0
    std: float = 1.0
    categories: list[str] = field(default_factory=list)

    @classmethod
    def fit(cls, name: str, cells: Sequence[str], train: Any) -> ColumnEncoder | None:
        """Fitted on the training rows ``train``; None for a column with no value at all."""
        present = [c for c in cells if not is_missing(c)]
        if not present:
            return None
        if all(as_number(c) is not None for c in present):
            values = np.asarray([np.nan if is_missing(c) else float(c) for c in cells])[train]
            known = values[~np.isnan(values)]
            fill = float(np.median(known)) if known.size else 0.0
            filled = np.where(np.isnan(values), fill, values)
            std = float(filled.std())
            return cls(name, "number", fill, float(filled.mean()), std if std > 0 else 1.0)
        train_cells = [cells[i] for i in train if not is_missing(cells[i])]
        counts = Counter(train_cells or present)
        categories = sorted(c for c, _ in counts.most_common(MAX_CATEGORIES))
        return cls(name, "text", counts.most_common(1)[0][0], categories=categories)

    @property
    def feature_names(self) -> list[str]:
        return [self.name] if self.kind == "number" else [f"{self.name}={c}" for c in self.categories]

    def transform(self, cells: Sequence[Any]) -> Any:
        if self.kind == "number":
            values = []
            for cell in cells:
                number = self.fill if is_missing(cell) else as_number(cell)
                if number is None:
                    raise InputError(f"column {self.name!r} takes numbers, not {cell!r}")
                values.append(number)
            return ((np.asarray(values, dtype=np.float64) - self.mean) / self.std)[:, np.newaxis]
        position = {c: i for i, c in enumerate(self.categories)}
        one_hot = np.zeros((len(cells), len(self.categories)), dtype=np.float32)
        for row, cell in enumerate(cells):
            # A category never seen in training (or beyond the cap) is all zeros.
            column = position.get(self.fill if is_missing(cell) else str(cell).strip())
            if column is not None:
                one_hot[row, column] = 1.0
        return one_hot


@dataclass
class Preprocessor:
    """Raw rows -> model inputs, and model outputs -> labels."""

    kind: str  # "csv", "numeric" or "image"
    task: str
    input_shape: list[int]
    class_names: list[str] = field(default_factory=list)
    #: csv: one encoder per feature column, in the file's order
    columns: list[ColumnEncoder] = field(default_factory=list)
    #: numeric: per-feature standardisation
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    #: image: raw pixel values are divided by this
    pixel_scale: float = 1.0

    @staticmethod
    def fit_numeric(x_train: Any, task: str, class_names: Sequence[str]) -> Preprocessor:
        std = x_train.std(axis=0)
        return Preprocessor(
            kind="numeric",
            task=task,
            input_shape=[int(d) for d in x_train.shape[1:]],
            class_names=list(class_names),
            mean=[float(v) for v in x_train.mean(axis=0)],
            # A constant column stays constant (zero) instead of dividing by 0.
            std=[float(v) if v > 0 else 1.0 for v in std],
        )

    def transform(self, rows: Any) -> Any:
        """Model inputs for raw rows: dicts or lists of CSV cells, lists of numbers, or pixels."""
        if self.kind == "csv":
            return self._transform_csv(rows)
        x = np.asarray(rows, dtype=np.float64)
        if self.kind == "image":
            if x.ndim == len(self.input_shape):  # grey images given without their channel axis
                x = x[..., np.newaxis]
            if list(x.shape[1:]) != self.input_shape:
                raise InputError(f"images must be {self.input_shape} each, got {list(x.shape[1:])}")
            return (x / self.pixel_scale).astype(np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.mean):
            raise InputError(f"each row needs {len(self.mean)} numbers, got shape {list(x.shape)}")
        return ((x - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)

    def _transform_csv(self, rows: Sequence[Any]) -> Any:
        names = [c.name for c in self.columns]
        table: list[list[Any]] = []
        for number, row in enumerate(rows):
            if isinstance(row, Mapping):
                missing = [n for n in names if n not in row]
                if missing:
                    raise InputError(f"row {number} lacks columns {missing} (use null for a missing value)")
                table.append([row[n] for n in names])
            elif isinstance(row, Sequence) and not isinstance(row, str) and len(row) == len(names):
                table.append(list(row))
            else:
                raise InputError(f"row {number} must be an object with the columns {names}, or a list")
        parts = [c.transform([r[i] for r in table]) for i, c in enumerate(self.columns)]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def labels(self, outputs: Any) -> list[dict[str, Any]]:
        """One answer per row: the label and class probabilities, or the predicted value."""
        if self.task == "regression":
            return [{"value": float(v)} for v in np.asarray(outputs).reshape(len(outputs), -1)[:, 0]]
        answers = []
        for probabilities in np.asarray(outputs):
            best = int(np.argmax(probabilities))
            answers.append(
                {
                    "label": self.class_names[best] if self.class_names else best,
                    "probabilities": {
                        (self.class_names[i] if self.class_names else str(i)): float(p)
                        for i, p in enumerate(probabilities)
                    },
                }
            )
        return answers

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessor:
        fields = dict(data)
        fields["columns"] = [ColumnEncoder(**c) for c in fields.get("columns", [])]
        return cls(**fields)
