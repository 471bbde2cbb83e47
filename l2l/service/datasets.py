"""The datasets a job can train on, checked cheaply and loaded with a seeded split.

A dataset spec is a built-in name that needs no download (``"digits"``,
``"breast_cancer"``, ``"wine"`` from scikit-learn, or ``{"name": "digits"}``) or a
CSV file: ``{"name": "csv", "path": "/abs/file.csv", "target": "column"}``, with an
optional ``"task"`` ("classification" or "regression") overriding the guess.

:func:`check_dataset_spec` is what the API calls: pure Python and the ``csv``
module, no NumPy or scikit-learn. :func:`load_dataset` makes the arrays a worker
trains on. No Keras here; what a builder needs to know is the returned
:class:`~search_spaces.spec.DataInfo`.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from l2l.service.preprocessing import ColumnEncoder, Preprocessor, as_number, is_missing
from search_spaces.spec import DataInfo

#: Built-in datasets and the kind of data each one is.
BUILT_IN_KINDS = {"digits": "image", "breast_cancer": "tabular", "wine": "tabular"}
#: How many examples each built-in dataset has (its defaults depend on it; see l2l.service.jobspec).
BUILT_IN_ROWS = {"digits": 1797, "breast_cancer": 569, "wine": 178}

TASKS = ("classification", "regression")

#: Fewer rows than this cannot give both a training and a validation set worth the name.
MIN_ROWS = 10

#: A numeric target of whole numbers with more distinct values than this is a regression target.
MAX_NUMERIC_CLASSES = 20

_CSV_KEYS = ("name", "path", "target", "task", "kind", "split_seed", "dataset_id")
_NPZ_KEYS = ("name", "path", "task", "kind", "split_seed", "dataset_id")
_BUILT_IN_KEYS = ("name", "task", "kind", "split_seed")
#: File formats of uploaded datasets (the upload check writes image zips as npz).
FILE_FORMATS = ("csv", "npz")


class DatasetError(ValueError):
    """A dataset spec or file is unusable. The message says what to fix."""


@dataclass
class Dataset:
    """Training and validation arrays plus what a builder needs to know about them.

    Features are float32; labels are int32 class indices (classification) or float32
    (regression). ``class_names[i]`` is the original label of class ``i``.
    """

    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any
    info: DataInfo
    feature_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    #: The held-out part: only the final model is scored on it, once; the search never sees it.
    x_test: Any = None
    y_test: Any = None
    #: How raw rows become these arrays (fitted on the training part); saved with the final model.
    preprocessor: Preprocessor | None = None


def dataset_names() -> list[str]:
    """The built-in datasets; ``"csv"`` is always available too."""
    return sorted(BUILT_IN_KINDS)


def dataset_kind(spec: str | Mapping[str, Any]) -> str:
    """``"image"`` or ``"tabular"``, from the spec alone (a CSV is not read)."""
    name = _name_of(spec)
    if name == "npz":
        return str(spec["kind"]) if isinstance(spec, Mapping) else "tabular"
    return "tabular" if name == "csv" else BUILT_IN_KINDS[name]


def check_dataset_spec(spec: str | Mapping[str, Any]) -> dict[str, Any]:
    """Validate a spec and return it normalised with ``kind`` and ``task``.

    For a CSV this reads the file once with the ``csv`` module: the path must be
    readable, the target a column of the header, at least :data:`MIN_ROWS` rows must
    have a target and the target must take at least two values.
    """
    name = _name_of(spec)
    given = {"name": name} if isinstance(spec, str) else dict(spec)
    if name == "csv":
        _reject_unknown_keys(given, _CSV_KEYS, name)
        normalised = _check_csv_spec(given)
    elif name == "npz":
        _reject_unknown_keys(given, _NPZ_KEYS, name)
        normalised = _check_npz_spec(given)
    else:
        _reject_unknown_keys(given, _BUILT_IN_KEYS, name)
        normalised = {"name": name, "kind": BUILT_IN_KINDS[name], "task": "classification"}
    for key in ("split_seed", "dataset_id"):
        if key in given:
            normalised[key] = int(given[key])
    for key in ("kind", "task"):
        if key in given and given[key] != normalised[key]:
            raise DatasetError(f"dataset {name!r} has {key} {normalised[key]!r}, not {given[key]!r}")
    return normalised


def load_dataset(
    spec: str | Mapping[str, Any],
    seed: int = 0,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> Dataset:
    """The dataset split into training, validation and test parts, the same for the same seed.

    The job loop always passes the dataset's own split seed, so a dataset is split once:
    every trial and the final model see the same parts, and only the final model is
    ever scored on the test part.

    Classification splits are stratified. Tabular features are standardised with the
    training part's statistics; a CSV's missing values are filled with the training
    part's median (numbers) or most frequent value (text, then one-hot encoded).
    """
    if not 0 < validation_fraction < 1:
        raise DatasetError(f"validation_fraction must be between 0 and 1, got {validation_fraction}")
    if not 0 <= test_fraction < 1 - validation_fraction:
        raise DatasetError(f"test_fraction must be in [0, {1 - validation_fraction}), got {test_fraction}")
    normalised = check_dataset_spec(spec)
    fractions = (validation_fraction, test_fraction)
    if normalised["name"] == "csv":
        return _load_csv(normalised, seed, fractions)
    if normalised["name"] == "npz":
        return _load_npz(normalised, seed, fractions)
    return _load_built_in(normalised["name"], seed, fractions)


# -- spec checking (pure Python) -------------------------------------------------------------------


def _name_of(spec: Any) -> str:
    if isinstance(spec, Mapping):
        name = spec.get("name")
    elif isinstance(spec, str):
        name = spec
    else:
        raise DatasetError(f"a dataset is a name or a mapping, got {type(spec).__name__}")
    if name not in FILE_FORMATS and name not in BUILT_IN_KINDS:
        choices = ", ".join([*dataset_names(), "csv", "an uploaded dataset's id"])
        raise DatasetError(f"unknown dataset {name!r}; choose one of {choices}")
    return str(name)


def _reject_unknown_keys(given: Mapping[str, Any], allowed: Sequence[str], name: str) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise DatasetError(f"dataset {name!r} does not take {unknown}; allowed keys: {', '.join(allowed)}")


def _check_csv_spec(given: Mapping[str, Any]) -> dict[str, Any]:
    path, target = given.get("path"), given.get("target")
    if not isinstance(path, str) or not path:
        raise DatasetError("a csv dataset needs 'path', the CSV file to read")
    if not isinstance(target, str) or not target:
        raise DatasetError("a csv dataset needs 'target', the name of the column to predict")
    path = os.path.abspath(path)
    header, rows = read_csv(path)
    if target not in header:
        raise DatasetError(f"target column {target!r} is not in {path}; its columns are {', '.join(header)}")
    if len(header) < 2:
        raise DatasetError(f"{path} has no feature columns besides the target {target!r}")
    column = header.index(target)
    labels = [row[column] for row in rows if not is_missing(row[column])]
    if len(labels) < MIN_ROWS:
        raise DatasetError(
            f"{path} has {len(labels)} rows with a {target!r} value; at least {MIN_ROWS} needed"
        )
    task = given.get("task") or guess_task(labels)
    if task not in TASKS:
        raise DatasetError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    distinct = set(labels)
    if len(distinct) < 2:
        raise DatasetError(f"target {target!r} in {path} has a single value {labels[0]!r}; nothing to learn")
    if task == "regression" and not all(as_number(v) is not None for v in labels):
        raise DatasetError(f"target {target!r} in {path} has non-numeric values; regression needs numbers")
    return {"name": "csv", "path": path, "target": target, "kind": "tabular", "task": task}


def _check_npz_spec(given: Mapping[str, Any]) -> dict[str, Any]:
    # Written by the upload check, which has looked inside already; here only what could change.
    path = given.get("path")
    if not isinstance(path, str) or not os.path.isfile(path):
        raise DatasetError(f"the dataset file {path!r} is missing")
    kind, task = given.get("kind"), given.get("task")
    if kind not in ("image", "tabular") or task not in TASKS:
        raise DatasetError("an npz dataset needs 'kind' (image or tabular) and 'task'")
    return {"name": "npz", "path": path, "kind": kind, "task": task}


def read_csv(path: str) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError as error:
        raise DatasetError(f"{path} does not exist") from error
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror or error}") from error
    text = decode_text(raw, path)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = [name.strip() for name in next(reader, [])]
        rows = [row for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as error:
        raise DatasetError(f"{path} is not a readable CSV: {error}") from error
    if not header:
        raise DatasetError(f"{path} is empty; it needs a header row naming the columns")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise DatasetError(f"{path} repeats columns {duplicates}")
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DatasetError(f"{path} line {number} has {len(row)} fields; the header has {len(header)}")
    return header, rows


def decode_text(raw: bytes, what: str) -> str:
    """``raw`` as UTF-8 text (a spreadsheet's byte-order mark dropped); otherwise a DatasetError
    that says where the first bad byte is and how to fix it, never what the file holds."""
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise DatasetError(
            f"{what} is not UTF-8 text (byte 0x{raw[error.start]:02x} at line {line}); "
            "save it as UTF-8 CSV (in a spreadsheet: Save as, CSV UTF-8)"
        ) from None


def guess_task(labels: Sequence[str]) -> str:
    numbers = [as_number(v) for v in labels]
    if any(n is None for n in numbers):
        return "classification"
    whole = all(n == int(n) for n in numbers if n is not None)
    return "classification" if whole and len(set(numbers)) <= MAX_NUMERIC_CLASSES else "regression"


# -- loading (NumPy, scikit-learn) -----------------------------------------------------------------


def _load_built_in(name: str, seed: int, fractions: tuple[float, float]) -> Dataset:
    import numpy as np
    from sklearn import datasets as sk_datasets

    loaders = {
        "digits": sk_datasets.load_digits,
        "breast_cancer": sk_datasets.load_breast_cancer,
        "wine": sk_datasets.load_wine,
    }
    bunch = loaders[name]()
    y = np.asarray(bunch.target, dtype=np.int32)
    parts = _split(y, "classification", *fractions, seed)
    class_names = tuple(str(c) for c in bunch.target_names)
    if name == "digits":
        # Pixel intensities are 0..16; images keep their shape for convolutional spaces.
        x = np.asarray(bunch.images)[..., np.newaxis]
        shape = [int(d) for d in x.shape[1:]]
        pre = Preprocessor("image", "classification", shape, list(class_names), pixel_scale=16.0)
    else:
        x = np.asarray(bunch.data, dtype=np.float64)
        pre = Preprocessor.fit_numeric(x[parts[0]], "classification", class_names)
    xs = [pre.transform(x[part]) for part in parts]
    info = DataInfo(
        input_shape=tuple(int(d) for d in x.shape[1:]),
        num_classes=len(bunch.target_names),
        task="classification",
        kind=BUILT_IN_KINDS[name],
    )
    feature_names = tuple(str(f) for f in getattr(bunch, "feature_names", ()))
    return _dataset(xs, [y[part] for part in parts], info, feature_names, class_names, pre)


def _dataset(
    xs: Sequence[Any],
    ys: Sequence[Any],
    info: DataInfo,
    feature_names: tuple[str, ...],
    classes: tuple[str, ...],
    preprocessor: Preprocessor,
) -> Dataset:
    return Dataset(
        xs[0], ys[0], xs[1], ys[1], info, feature_names, classes, xs[2], ys[2], preprocessor=preprocessor
    )


def _load_npz(spec: Mapping[str, Any], seed: int, fractions: tuple[float, float]) -> Dataset:
    """An uploaded ``.npz`` with arrays ``x`` (rows first) and ``y``; images stay as they are."""
    import numpy as np

    with np.load(spec["path"], allow_pickle=False) as arrays:
        x, labels = arrays["x"], arrays["y"]
    if spec["task"] == "regression":
        y = labels.astype(np.float32)
        class_names: tuple[str, ...] = ()
    else:
        values, y = np.unique(labels, return_inverse=True)
        y = y.astype(np.int32)
        class_names = tuple(str(v) for v in values)
    parts = _split(y, spec["task"], *fractions, seed)
    if spec["kind"] == "image":
        if x.ndim == 3:
            x = x[..., np.newaxis]  # grey images without a channel axis
        scale = 255.0 if x.dtype == np.uint8 else 1.0
        shape = [int(d) for d in x.shape[1:]]
        pre = Preprocessor("image", spec["task"], shape, list(class_names), pixel_scale=scale)
    else:
        x = x.reshape(len(x), -1).astype(np.float64)
        pre = Preprocessor.fit_numeric(x[parts[0]], spec["task"], class_names)
    xs = [pre.transform(x[part]) for part in parts]
    info = DataInfo(
        input_shape=tuple(int(d) for d in xs[0].shape[1:]),
        num_classes=1 if spec["task"] == "regression" else len(class_names),
        task=spec["task"],
        kind=spec["kind"],
    )
    return _dataset(xs, [y[part] for part in parts], info, (), class_names, pre)


def _load_csv(spec: Mapping[str, Any], seed: int, fractions: tuple[float, float]) -> Dataset:
    import numpy as np

    header, rows = read_csv(spec["path"])
    target = header.index(spec["target"])
    rows = [row for row in rows if not is_missing(row[target])]
    labels = [row[target].strip() for row in rows]
    if spec["task"] == "regression":
        y = np.asarray([float(v) for v in labels], dtype=np.float32)
        class_names: tuple[str, ...] = ()
    else:
        class_names = _sorted_labels(set(labels))
        index = {label: i for i, label in enumerate(class_names)}
        y = np.asarray([index[label] for label in labels], dtype=np.int32)
    parts = _split(y, spec["task"], *fractions, seed)

    encoders = []
    for column, name in enumerate(header):
        if column != target:
            encoder = ColumnEncoder.fit(name, [row[column].strip() for row in rows], parts[0])
            if encoder is not None:
                encoders.append((column, encoder))
    if not encoders:
        raise DatasetError(f"{spec['path']} has no usable feature column (all values missing)")
    xs = [
        np.concatenate([e.transform([rows[i][c] for i in part]) for c, e in encoders], axis=1).astype(
            np.float32
        )
        for part in parts
    ]
    pre = Preprocessor(
        kind="csv",
        task=spec["task"],
        input_shape=[int(xs[0].shape[1])],
        class_names=list(class_names),
        columns=[e for _, e in encoders],
    )
    info = DataInfo(
        input_shape=(xs[0].shape[1],),
        num_classes=1 if spec["task"] == "regression" else len(class_names),
        task=spec["task"],
        kind="tabular",
    )
    feature_names = tuple(name for _, e in encoders for name in e.feature_names)
    return _dataset(xs, [y[part] for part in parts], info, feature_names, class_names, pre)


def _sorted_labels(labels: set[str]) -> tuple[str, ...]:
    # Numeric labels in numeric order, so "10" comes after "9".
    if all(as_number(label) is not None for label in labels):
        return tuple(sorted(labels, key=lambda label: float(label)))
    return tuple(sorted(labels))


def _split(y: Any, task: str, validation_fraction: float, test_fraction: float, seed: int) -> list[Any]:
    """Row indices of the training, validation and test parts; stratified for classification."""
    import numpy as np

    rng = np.random.default_rng(seed)
    groups = (
        [np.flatnonzero(y == label) for label in np.unique(y)]
        if task == "classification"
        else [np.arange(len(y))]
    )
    train, val, test = [], [], []
    for group in groups:
        shuffled = rng.permutation(group)
        # Training keeps at least one row of every class; the held-out parts take theirs
        # only while some rows remain for training.
        n_test = _share(len(group), test_fraction, keep=2)
        n_val = _share(len(group) - n_test, validation_fraction * len(group) / max(len(group) - n_test, 1), 1)
        test.append(shuffled[:n_test])
        val.append(shuffled[n_test : n_test + n_val])
        train.append(shuffled[n_test + n_val :])
    return [np.sort(np.concatenate(part)) for part in (train, val, test)]


def _share(size: int, fraction: float, keep: int) -> int:
    """How many of ``size`` rows a held-out part takes: about ``fraction``, at least one, leaving ``keep``."""
    if fraction <= 0 or size <= keep:
        return 0
    return min(max(round(size * fraction), 1), size - keep)
