"""Dev study: how well does a reward model rank NAS-Bench-201 after a few random results?

For each of ``--draws`` draws of ``n`` uniformly random cells (n = 10, 20, 30) it fits a
model to their validation accuracies (as normal scores of their ranks, the targets
``model_based`` uses) and scores every other cell. Printed per model: the Spearman
correlation with the true validation accuracy over the unseen cells, the true rank (0 =
best of 15,625) of the cell it likes best, and how many of its 10 favourites are in the
true top 50. Models:

* ``mlp``: ``model_based``'s ensemble, trained as the controller trains it (20 Adam steps
  after each result, on everything so far);
* ``mlp_forms``: the same on the one-hot of each cell's canonical form
  (:mod:`search_spaces.nb201_canonical`), as ``model_based`` sees cells now;
* ``gp_exp``: a Gaussian process with an exponential Hamming kernel ``s * exp(-d / l)``;
* ``gp_degree2``: a GP with kernel ``a + b m / D + c m (m - 1) / (D (D - 1))`` of the
  number ``m`` of matching decisions: Bayesian regression on first- and second-order
  one-hot terms;
* ``gp_linear``: the same with first-order terms only.

The GPs' hyperparameters are the best of a small grid by marginal likelihood.

    .venv/bin/python l2l/bench/studies/surrogate_ranking.py cifar10 --draws 40
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from controller.model_based import _normal_scores  # noqa: E402
from controller.reward_model import MlpEnsemble  # noqa: E402
from search_spaces.nb201 import NB201_CELL, TABULAR_DATASETS, params_from_arch_str  # noqa: E402
from search_spaces.nb201_table import load_table  # noqa: E402

SPACE = NB201_CELL.space()
DECISIONS, LEVELS = 6, 5

Kernel = Callable[[np.ndarray, Sequence[float]], np.ndarray]


def exponential(matches: np.ndarray, p: Sequence[float]) -> np.ndarray:
    return p[0] * np.exp(-(DECISIONS - matches) / p[1])


def degree2(matches: np.ndarray, p: Sequence[float]) -> np.ndarray:
    pairs = matches * (matches - 1) / (DECISIONS * (DECISIONS - 1))
    return p[0] + p[1] * matches / DECISIONS + p[2] * pairs


def linear(matches: np.ndarray, p: Sequence[float]) -> np.ndarray:
    return p[0] + p[1] * matches / DECISIONS


# (kernel, grid of (kernel parameters..., noise variance))
KERNELS: dict[str, tuple[Kernel, list[tuple[float, ...]]]] = {
    "gp_exp": (
        exponential,
        [(s, length, n) for s in (0.3, 1, 3) for length in (0.5, 1, 2, 4, 8) for n in (0.01, 0.1, 0.3)],
    ),
    "gp_degree2": (
        degree2,
        [
            (a, b, c, n)
            for a in (0.1, 1.0)
            for b in (0.1, 0.3, 1, 3)
            for c in (0.0, 0.1, 0.3, 1, 3)
            for n in (0.01, 0.1, 0.3)
        ],
    ),
    "gp_linear": (linear, [(a, b, n) for a in (0.1, 1) for b in (0.3, 1, 3) for n in (0.01, 0.1, 0.3)]),
}


def gp_mean(
    kernel: Kernel, grid: list[tuple[float, ...]], cells: np.ndarray, seen: np.ndarray, y: np.ndarray
):
    """Posterior mean at every cell of a GP on ``y``'s normal scores, hyperparameters by likelihood."""
    targets = _normal_scores(y)
    train = (cells[seen][:, None, :] == cells[seen][None, :, :]).sum(-1).astype(float)
    best, chosen = -np.inf, grid[0]
    for p in grid:
        try:
            factor = np.linalg.cholesky(kernel(train, p) + p[-1] * np.eye(len(seen)))
        except np.linalg.LinAlgError:
            continue
        alpha = np.linalg.solve(factor.T, np.linalg.solve(factor, targets))
        likelihood = -0.5 * targets @ alpha - np.log(np.diag(factor)).sum()
        if likelihood > best:
            best, chosen = likelihood, p
    alpha = np.linalg.solve(kernel(train, chosen) + chosen[-1] * np.eye(len(seen)), targets)
    cross = (cells[:, None, :] == cells[seen][None, :, :]).sum(-1).astype(float)
    return kernel(cross, chosen) @ alpha


def mlp_mean(one_hot: np.ndarray, seen: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    model = MlpEnsemble(DECISIONS * LEVELS, 32, 2, 5, 0.003, 1e-4, rng)
    for told in range(2, len(seen) + 1):
        model.train(one_hot[seen[:told]], _normal_scores(y[:told]), 20, 32, rng)
    return model.predict(one_hot).mean(axis=0)


def encode(cells: np.ndarray) -> np.ndarray:
    """The one-hot rows of cells given as level indices (``n x 6``)."""
    one_hot = np.zeros((len(cells), DECISIONS * LEVELS), np.float32)
    one_hot[np.arange(len(cells))[:, None], np.arange(DECISIONS) * LEVELS + cells] = 1.0
    return one_hot


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", choices=TABULAR_DATASETS)
    parser.add_argument("--draws", type=int, default=40)
    args = parser.parse_args()
    table = load_table()  # $L2L_NB201_TABLE or ../shared, as the benchmark reads it
    cells = np.array([SPACE.to_indices(params_from_arch_str(arch)) for arch in table.archs()])
    valid = np.array(table.valid_column(args.dataset))
    one_hot = encode(cells)
    forms_one_hot = encode(np.array([SPACE.canonical_indices(cell) for cell in cells]))
    true_rank = np.argsort(np.argsort(-valid))
    for n in (10, 20, 30):
        scores: dict[str, list[tuple[float, int, int]]] = {
            "mlp": [],
            "mlp_forms": [],
            **{name: [] for name in KERNELS},
        }
        for draw in range(args.draws):
            rng = np.random.default_rng(draw)
            seen = rng.choice(len(cells), n, replace=False)
            unseen = np.ones(len(cells), bool)
            unseen[seen] = False
            means = {
                "mlp": mlp_mean(one_hot, seen, valid[seen], np.random.default_rng(draw + 1000)),
                "mlp_forms": mlp_mean(forms_one_hot, seen, valid[seen], np.random.default_rng(draw + 1000)),
            }
            for name, (kernel, grid) in KERNELS.items():
                means[name] = gp_mean(kernel, grid, cells, seen, valid[seen])
            for name, mean in means.items():
                mean = np.where(unseen, mean, -np.inf)
                favourites = np.argsort(-mean)[:10]
                scores[name].append(
                    (
                        spearman(mean[unseen], valid[unseen]),
                        int(true_rank[favourites[0]]),
                        int((true_rank[favourites] < 50).sum()),
                    )
                )
        for name, per_draw in scores.items():
            results = np.array(per_draw, dtype=float)
            print(
                f"{args.dataset} n={n} {name:10s} Spearman {results[:, 0].mean():.3f}"
                f"  true rank of its favourite: median {np.median(results[:, 1]):.0f}"
                f"  favourites in the true top 50: {results[:, 2].mean():.2f} of 10",
                flush=True,
            )


if __name__ == "__main__":
    main()
