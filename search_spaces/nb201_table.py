"""Tabular NAS-Bench-201: "training" a cell is looking its accuracy up in the benchmark's table.

A ``nb201_cell`` space with the setting ``{"tabular": "cifar10"}`` (or ``"cifar100"``,
``"imagenet16"``) is searched against the table instead of trained: the worker reports
the cell's *validation* accuracy (:func:`tabular_metrics`) and its network's size, and nothing else. The test
column judges the architecture a search picks, after the search; only
:meth:`NB201Table.test_accuracy` reads it, and the worker loads the table without it.

The table is ``nb201_12ep.csv`` (columns ``index, arch_str, {c10,c100,in16}_{valid,test}_12ep``,
accuracies in percent), read from ``../shared/data/nb201/`` beside the repository unless
``L2L_NB201_TABLE`` names another file. Pure Python (``csv``), no NumPy or Keras.
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from search_spaces.nb201 import TABULAR_DATASETS, arch_str
from search_spaces.nb201_cost import network_cost
from search_spaces.spec import SearchSpace, SpaceError

#: Environment variable naming the table file.
TABLE_ENV = "L2L_NB201_TABLE"

#: Where the table lies when ``L2L_NB201_TABLE`` is not set: ``../shared/data/nb201/`` of the repo.
DEFAULT_TABLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nb201" / "nb201_12ep.csv"

#: Column prefix of each dataset in the CSV.
COLUMN_PREFIX = {"cifar10": "c10", "cifar100": "c100", "imagenet16": "in16"}

#: The metric a tabular trial reports: validation accuracy as a fraction, like Keras' ``val_accuracy``.
METRIC = "val_accuracy"


class TestColumnNotLoaded(RuntimeError):
    """The table was loaded for searching (validation only); the test column is not there."""

    __test__ = False  # not a pytest test class


class NB201Table:
    """Validation (search-visible) and, optionally, test (judge-only) accuracies of every cell, in %.

    ``rows`` are ``(nb201_index, arch_str)`` in file order; ``valid[dataset]`` and
    ``test[dataset]`` hold one accuracy per row. Without ``test`` the table can serve a
    search and nothing more: :meth:`test_accuracy` raises :class:`TestColumnNotLoaded`.
    """

    def __init__(
        self,
        rows: Sequence[tuple[int, str]],
        valid: Mapping[str, Sequence[float]],
        test: Mapping[str, Sequence[float]] | None = None,
        source: str = "",
    ) -> None:
        self.source = source
        self._indices = tuple(index for index, _ in rows)
        self._archs = tuple(arch for _, arch in rows)
        self._position = {arch: position for position, arch in enumerate(self._archs)}
        if len(self._position) != len(self._archs):
            raise SpaceError(f"NAS-Bench-201 table {source!r} repeats arch strings")
        self._valid = {dataset: tuple(map(float, column)) for dataset, column in valid.items()}
        self._test = {dataset: tuple(map(float, column)) for dataset, column in (test or {}).items()}
        for dataset, column in {**self._valid, **self._test}.items():
            if len(column) != len(self._archs):
                raise SpaceError(f"column {dataset!r} of {source!r} has {len(column)} rows, not {len(rows)}")

    def __len__(self) -> int:
        return len(self._archs)

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(self._valid)

    def archs(self) -> tuple[str, ...]:
        return self._archs

    def index(self, arch: str) -> int:
        """The architecture's index in NAS-Bench-201; SpaceError if the table lacks it."""
        return self._indices[self._row(arch)]

    def valid_accuracy(self, arch: str, dataset: str) -> float:
        """Validation accuracy (%) of ``arch`` on ``dataset``: what a search may see."""
        return self._column(self._valid, dataset, "validation")[self._row(arch)]

    def valid_column(self, dataset: str) -> tuple[float, ...]:
        """Every cell's validation accuracy (%), in row order (for thresholds such as the top 1%)."""
        return self._column(self._valid, dataset, "validation")

    def test_accuracy(self, arch: str, dataset: str) -> float:
        """Test accuracy (%) of ``arch``: the judge of a finished search, never its reward."""
        if not self._test:
            raise TestColumnNotLoaded(f"table {self.source!r} was loaded without its test columns")
        return self._column(self._test, dataset, "test")[self._row(arch)]

    def _row(self, arch: str) -> int:
        try:
            return self._position[arch]
        except KeyError:
            raise SpaceError(f"cell {arch!r} is not in the NAS-Bench-201 table {self.source!r}") from None

    def _column(self, columns: Mapping[str, tuple[float, ...]], dataset: str, kind: str) -> tuple[float, ...]:
        try:
            return columns[dataset]
        except KeyError:
            raise SpaceError(
                f"the NAS-Bench-201 table has no {kind} column for {dataset!r}; it has {sorted(columns)}"
            ) from None


def table_path() -> Path:
    """The table file: ``$L2L_NB201_TABLE`` if set, else :data:`DEFAULT_TABLE`."""
    return Path(os.environ.get(TABLE_ENV) or DEFAULT_TABLE)


def load_table(path: str | Path | None = None, *, with_test: bool = False) -> NB201Table:
    """Read the table (cached per file); the test columns only when ``with_test`` is set.

    A search needs only the validation columns, and a worker never loads more.
    """
    return _load(str(Path(path or table_path()).resolve()), with_test)


@functools.lru_cache(maxsize=4)
def _load(path: str, with_test: bool) -> NB201Table:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows, valid, test = [], {d: [] for d in TABULAR_DATASETS}, {d: [] for d in TABULAR_DATASETS}
            for line in reader:
                rows.append((int(line["index"]), line["arch_str"]))
                for dataset, prefix in COLUMN_PREFIX.items():
                    valid[dataset].append(float(line[f"{prefix}_valid_12ep"]))
                    if with_test:
                        test[dataset].append(float(line[f"{prefix}_test_12ep"]))
    except FileNotFoundError:
        raise SpaceError(
            f"the NAS-Bench-201 table is not at {path}; set {TABLE_ENV} to the nb201_12ep.csv file"
        ) from None
    except (KeyError, ValueError) as error:
        raise SpaceError(f"the NAS-Bench-201 table {path} is malformed: {error!r}") from error
    return NB201Table(rows, valid, test if with_test else None, source=path)


def tabular_dataset(space: SearchSpace | Mapping[str, Any]) -> str | None:
    """The dataset a tabular ``nb201_cell`` space looks up, or None for a space that trains."""
    settings = space.settings if isinstance(space, SearchSpace) else space.get("settings") or {}
    dataset = settings.get("tabular")
    return str(dataset) if dataset is not None else None


def tabular_metrics(
    space: SearchSpace, params: Mapping[str, Any], table: NB201Table | None = None
) -> dict[str, float]:
    """What a tabular trial reports: ``{"val_accuracy": fraction}`` from the validation column,
    and the network's ``parameters`` and ``flops`` (:func:`search_spaces.nb201_cost.network_cost`).

    ``table`` defaults to the validation-only table of :func:`load_table`. Raises
    SpaceError for a space that is not tabular or a cell the table lacks.
    """
    dataset = tabular_dataset(space)
    if dataset is None:
        raise SpaceError(f"search space {space.name!r} is not tabular (no 'tabular' setting)")
    arch = arch_str(params, space.settings)
    table = table if table is not None else load_table()
    return {METRIC: table.valid_accuracy(arch, dataset) / 100.0, **network_cost(arch, dataset)}
