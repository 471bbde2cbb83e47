"""The LCBench benchmark harness: the real surrogate, a real run of ours and of a peer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime comes with the bench extra")

from l2l.bench import lcbench  # noqa: E402

if not (lcbench.DEFAULT_DATA / "model.onnx").is_file():
    pytest.skip("the LCBench surrogate is not in ../shared/data/lcbench", allow_module_level=True)


@pytest.fixture(scope="module")
def surrogate() -> lcbench.Surrogate:
    return lcbench.Surrogate()


def test_the_surrogate_gives_whole_curves_of_validation_accuracy(surrogate: lcbench.Surrogate) -> None:
    space = lcbench.lcbench_space()
    import random

    configs = [space.sample(random.Random(seed)) for seed in range(20)]
    curves = surrogate.curves("7593", configs)
    assert curves.shape == (20, lcbench.EPOCHS)
    assert ((curves > 0) & (curves <= 100)).all()
    assert not np.allclose(curves[:, 0], curves[:, -1])  # the curves move
    # the same configuration on another task is another curve
    assert not np.allclose(surrogate.curves("3945", configs[:1]), curves[:1])


def test_ours_spends_the_budget_once_and_promotes_instead_of_retraining(surrogate: lcbench.Surrogate) -> None:
    run = lcbench.run_ours("random+asha:grace=2", "34539", 0, surrogate)
    assert run.epochs == lcbench.BUDGET
    # one worker, every epoch counted once: with promotions from the rungs' checkpoints more
    # configurations are seen than a full-fidelity search could afford
    assert run.configurations > lcbench.EPOCHS
    results = [run.result(f) for f in lcbench.FRACTIONS]
    assert all(r is not None for r in results)
    assert results == sorted(results)  # more budget never makes the best worse
    spent = [s for s, _ in run.finished]
    assert spent == sorted(spent) and spent[-1] <= lcbench.BUDGET


def test_a_full_fidelity_peer_finishes_52_configurations(surrogate: lcbench.Surrogate) -> None:
    pytest.importorskip("optuna")
    run = lcbench.run_peer("random", "34539", 0, surrogate)
    assert run.configurations == 52 and len(run.finished) == 52
    assert run.result(0.25) == max(v for s, v in run.finished if s <= lcbench.BUDGET / 4)


def test_methods_are_parsed_and_ranked() -> None:
    assert lcbench.parse_ours("model_based") == ("model_based", None)
    assert lcbench.parse_ours("model_based+asha:grace=2,eta=3.0") == (
        "model_based",
        {"name": "asha", "settings": {"grace": 2, "eta": 3.0}},
    )
    document = {
        "methods": ["a", "b", "c"],
        "tasks": ["t1", "t2"],
        "seeds": [0],
        "results": {
            "a": {"t1": [[90.0, 91.0, 92.0]], "t2": [[80.0, 80.0, 85.0]]},
            "b": {"t1": [[95.0, 91.0, 91.0]], "t2": [[70.0, 81.0, 86.0]]},
            "c": {"t1": [[None, 50.0, 60.0]], "t2": [[60.0, 60.0, 60.0]]},
        },
    }
    ranks = lcbench.mean_ranks(document)
    assert ranks["a"] == [1.5, 1.75, 1.5]  # a tie at 50% on t1 shares ranks 1 and 2
    assert ranks["b"] == [1.5, 1.25, 1.5]
    assert ranks["c"] == [3.0, 3.0, 3.0]


def test_runs_split_by_seed_and_method_merge_into_one_document() -> None:
    def document(methods: list[str], seeds: list[int]) -> dict:
        return {
            "protocol": {},
            "tasks": ["t"],
            "seeds": seeds,
            "methods": methods,
            "results": {m: {"t": [[float(s), float(s), float(s)] for s in seeds]} for m in methods},
            "costs": {m: {"seconds": 1.0 * len(seeds), "configurations": 10 * len(seeds)} for m in methods},
        }

    merged = lcbench.merge([document(["a", "b"], [0, 1]), document(["a"], [2])], ["a"])
    assert merged["seeds"] == [0, 1, 2] and merged["methods"] == ["a"]
    assert merged["results"]["a"]["t"] == [[0.0] * 3, [1.0] * 3, [2.0] * 3]
    assert merged["costs"]["a"] == {"seconds": 3.0, "configurations": 30.0}
    with pytest.raises(ValueError, match="missing"):
        lcbench.merge([document(["a", "b"], [0, 1]), document(["a"], [2])])  # b has no seed 2
