"""The two strategy calls the tuner adapters need, on every registered strategy.

``adopt(params)`` takes a configuration chosen elsewhere (a Ray Tune point to evaluate)
as the next proposal; ``extend_space(space, fill)`` takes decisions a KerasTuner
``build(hp)`` registers mid-search. Both must leave a strategy whose state saves and
restores exactly, and a grown strategy must keep what it learned.
"""

from __future__ import annotations

from typing import Any

import pytest

from controller import Proposal, Result, create_strategy, strategy_names
from search_spaces.conditions import ACTIVE_FORM
from search_spaces.spec import Choice, IntRange, SearchSpace, SpaceError

STRATEGIES = strategy_names()

SMALL = SearchSpace("s", (Choice("a", (0, 1, 2)), Choice("b", ("x", "y"))), "x:y")
GROWN = SearchSpace("s", (*SMALL.decisions, IntRange("c", 1, 4)), "x:y")


def make(strategy: str, space: SearchSpace = SMALL, seed: int = 0) -> Any:
    options = {"learning_rate": 0.01} if strategy == "reinforce" else None
    return create_strategy(strategy, space, seed, options)


def reward(params: dict[str, Any]) -> float:
    return params["a"] + (params["b"] == "y") + params.get("c", 1) / 4


def run(strategy: Any, count: int) -> list[dict[str, Any]]:
    proposals = []
    for _ in range(count):
        proposal = strategy.ask()
        assert isinstance(proposal, Proposal)
        strategy.tell(proposal.id, Result(reward(proposal.params)))
        proposals.append(proposal.params)
    return proposals


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_an_adopted_configuration_is_told_like_a_proposal(strategy: str) -> None:
    searched = make(strategy)
    run(searched, 2)
    adopted = searched.adopt({"a": 2, "b": "y"})
    assert adopted.params == {"a": 2, "b": "y"} and adopted.id == 2
    searched.tell(adopted.id, Result(3.0))
    assert searched.pending == {}
    with pytest.raises(SpaceError):
        searched.adopt({"a": 7, "b": "y"})
    restored = make(strategy)
    restored.set_state(searched.get_state())
    assert run(restored, 3) == run(searched, 3)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_grown_space_keeps_what_was_learned_and_restores_exactly(strategy: str) -> None:
    searched = make(strategy)
    run(searched, 4)
    in_flight = searched.ask()
    searched.extend_space(GROWN, {"c": 2})
    assert searched.space == GROWN
    assert searched.pending[in_flight.id]["c"] == 2  # the trial in flight ran with the default
    searched.tell(in_flight.id, Result(1.0))
    later = run(searched, 6)
    assert all(GROWN.validate(params) == params for params in later)
    assert {params["c"] for params in later} - {2}, "the new decision is never searched"
    restored = make(strategy, GROWN)
    restored.set_state(searched.get_state())
    assert run(restored, 3) == run(searched, 3)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_space_that_changes_old_decisions_is_refused(strategy: str) -> None:
    searched = make(strategy)
    changed = SearchSpace("s", (Choice("a", (0, 1)), Choice("b", ("x", "y"))), "x:y")
    with pytest.raises(SpaceError, match="does not extend"):
        searched.extend_space(changed)
    assert searched.space == SMALL


def test_model_based_learned_model_is_unchanged_by_new_decisions() -> None:
    import numpy as np

    searched = make("model_based")
    run(searched, 6)
    before = searched.model.predict(searched._x).copy()
    searched.extend_space(GROWN, {"c": 3})
    after = searched.model.predict(searched._x)
    np.testing.assert_allclose(after, before, rtol=1e-6)  # zero weights on the new inputs
    assert all(row[-1] == GROWN.decisions[2].levels().index(3) for row, _ in searched.history)


def test_the_active_form_writes_inactive_decisions_as_their_default() -> None:
    space = SearchSpace(
        "c",
        (
            Choice("kind", ("a", "b")),
            Choice("size", (1, 2)),
            Choice("deep", (False, True)),
            IntRange("n", 1, 3),
        ),
        "x:y",
        settings={
            "conditions": {"size": [[["kind", ["b"]]]], "n": [[["kind", ["b"]], ["deep", [True]]]]},
            "inactive": {"size": 1, "n": 1},
        },
        canonical=ACTIVE_FORM,
    )
    assert space.canonical_params({"kind": "a", "size": 2, "deep": True, "n": 3}) == {
        "kind": "a",
        "size": 1,
        "deep": True,
        "n": 1,
    }
    assert space.canonical_params({"kind": "b", "size": 2, "deep": False, "n": 3})["n"] == 1
    assert space.canonical_params({"kind": "b", "size": 2, "deep": True, "n": 3})["n"] == 3
