"""The model-based REINFORCE strategy: exact restarts, determinism, no repeats, and learning.

The generic contract (valid proposals, JSON state, unknown ids) runs in
``test_controllers.py`` for every registered strategy; these tests cover what is
particular to this one. No mocks: real strategies, real (planted) rewards.
"""

from __future__ import annotations

import itertools
import json
import random
import statistics
from typing import Any

import numpy as np
import pytest

from controller import FINISHED, Proposal, Result, Strategy, StrategyError, check_options, create_strategy
from search_spaces.nb201 import NB201_CELL, params_from_arch_str
from search_spaces.nb201_canonical import canonical_cell
from search_spaces.spec import Choice, FloatRange, SearchSpace

PLANTED = [3, 1, 4, 1, 0, 2]
PLANTED_SPACE = SearchSpace(
    name="planted",
    decisions=tuple(Choice(f"d{i}", tuple(range(5))) for i in range(len(PLANTED))),
    builder="tests:unused",
)
TINY = SearchSpace(
    "tiny", (Choice("a", ("x", "y", "z")), FloatRange("b", 0.1, 1.0, log=True, max_levels=3)), "tests:unused"
)


def planted_reward(params: dict[str, Any], noise: random.Random) -> float:
    """The fraction of decisions at their planted level, plus a little noise."""
    hits = sum(params[f"d{i}"] == level for i, level in enumerate(PLANTED))
    return hits / len(PLANTED) + noise.gauss(0.0, 0.05)


def make(seed: int = 0, space: SearchSpace = PLANTED_SPACE, **options: Any) -> Strategy:
    return create_strategy("model_based", space, seed=seed, options={"initial_trials": 5, **options})


def drive(strategy: Strategy, steps: int, in_flight: list[Proposal], noise: random.Random) -> list[Any]:
    """Up to four proposals in flight, the second-oldest told first, every fourth a failure."""
    log: list[Any] = []
    for step in range(steps):
        answer = strategy.ask()
        if isinstance(answer, Proposal):
            in_flight.append(answer)
            log.append((answer.id, answer.params))
        else:
            log.append(repr(answer))
        if len(in_flight) >= 4 or (not isinstance(answer, Proposal) and in_flight):
            proposal = in_flight.pop(1 if len(in_flight) > 1 else 0)
            failed = step % 4 == 3
            strategy.tell(proposal.id, Result(None if failed else planted_reward(proposal.params, noise)))
    return log


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(state))


def test_a_restored_state_gives_exactly_the_same_next_proposals() -> None:
    original, in_flight, noise = make(seed=5), [], random.Random(1)
    drive(original, 40, in_flight, noise)  # past initial_trials: the model is choosing
    assert in_flight and len(original.get_state()["history"]) > 5

    restored = make(seed=5)
    restored.set_state(roundtrip(original.get_state()))
    noise_state = noise.getstate()
    expected = drive(original, 30, list(in_flight), noise)
    noise.setstate(noise_state)
    assert drive(restored, 30, list(in_flight), noise) == expected
    assert roundtrip(restored.get_state()) == roundtrip(original.get_state())


def test_same_seed_same_proposals_and_another_seed_differs() -> None:
    logs = [drive(make(seed=seed), 40, [], random.Random(2)) for seed in (3, 3, 4)]
    assert logs[0] == logs[1]
    assert logs[0] != logs[2]


def test_never_repeats_a_configuration_and_finishes_when_the_space_is_exhausted() -> None:
    strategy, noise, seen = make(seed=1, space=TINY, initial_trials=2), random.Random(3), []
    for step in range(9):
        proposal = strategy.ask()
        assert isinstance(proposal, Proposal)
        seen.append((proposal.params["a"], proposal.params["b"]))
        strategy.tell(proposal.id, Result(None if step % 3 == 2 else noise.random()))
    assert len(set(seen)) == 9
    assert strategy.ask() is FINISHED


def test_no_repeats_on_the_planted_space() -> None:
    log = drive(make(seed=2), 200, [], random.Random(4))
    configurations = [tuple(params.values()) for _, params in log]
    assert len(configurations) == 200 and len(set(configurations)) == 200


def test_it_finds_the_planted_optimum_far_faster_than_random_search() -> None:
    def best_after(strategy: Strategy, trials: int) -> list[float]:
        noise, rewards = random.Random(7), []
        for _ in range(trials):
            proposal = strategy.ask()
            assert isinstance(proposal, Proposal)
            hits = sum(proposal.params[f"d{i}"] == level for i, level in enumerate(PLANTED))
            rewards.append(hits / len(PLANTED))
            strategy.tell(proposal.id, Result(hits / len(PLANTED) + noise.gauss(0.0, 0.05)))
        return rewards

    model_based = [best_after(make(seed=seed), 100) for seed in range(3)]
    random_search = [
        best_after(create_strategy("random", PLANTED_SPACE, seed=seed), 100) for seed in range(3)
    ]
    # 5^6 = 15,625 configurations: random search rarely gets past 4 of 6 in 100 trials
    assert all(max(rewards) == 1.0 for rewards in model_based), [max(r) for r in model_based]
    assert statistics.mean(max(r) for r in random_search) < 0.85
    late_model = statistics.mean(statistics.mean(r[-30:]) for r in model_based)
    late_random = statistics.mean(statistics.mean(r[-30:]) for r in random_search)
    assert late_model > late_random + 0.3, (late_model, late_random)


def test_interleaved_model_picks_beat_the_policy_draws_between_them() -> None:
    # before initial_trials results, from interleave_from on, proposals alternate: the reward
    # model's pick (even offsets), then a policy draw
    picks, draws = [], []
    for seed in range(3):
        strategy, noise = make(seed=seed, initial_trials=60, interleave_from=10), random.Random(seed)
        for told in range(60):
            proposal = strategy.ask()
            assert isinstance(proposal, Proposal)
            hits = sum(proposal.params[f"d{i}"] == level for i, level in enumerate(PLANTED))
            if told >= 30:  # the model has seen enough to be useful
                (picks if (told - 10) % 2 == 0 else draws).append(hits)
            strategy.tell(proposal.id, Result(hits / len(PLANTED) + noise.gauss(0.0, 0.05)))
    assert statistics.mean(picks) > statistics.mean(draws) + 1.0, (picks, draws)


def test_a_whole_space_pick_is_the_best_scored_configuration_not_yet_proposed() -> None:
    # greedy on the ensemble's mean, every proposal from the 10th result on scores the whole space
    strategy = make(seed=3, exploration=0.0, whole_space_from=10, whole_space_every=1)
    drive(strategy, 40, [], random.Random(6))
    model = strategy.model  # type: ignore[attr-defined]
    grid = list(itertools.product(range(5), repeat=len(PLANTED)))  # mixed-radix order, d0 slowest
    one_hot = np.zeros((len(grid), 5 * len(PLANTED)), np.float32)
    for code, row in enumerate(grid):
        one_hot[code, [5 * d + level for d, level in enumerate(row)]] = 1.0
    mean = model.predict(one_hot).mean(axis=0)
    proposed = set(strategy.proposed)  # type: ignore[attr-defined]
    expected = max((code for code in range(len(grid)) if grid[code] not in proposed), key=lambda c: mean[c])

    proposal = strategy.ask()
    assert isinstance(proposal, Proposal)
    assert tuple(proposal.params[f"d{i}"] for i in range(len(PLANTED))) == grid[expected]


def test_whole_space_picks_take_every_second_turn_and_only_in_a_small_enough_space() -> None:
    strategy = make(seed=4, whole_space_from=10)
    drive(strategy, 30, [], random.Random(7))
    turns = []
    for _ in range(6):
        turns.append(strategy._scores_whole_space())  # type: ignore[attr-defined]
        proposal = strategy.ask()
        assert isinstance(proposal, Proposal)
        strategy.tell(proposal.id, Result(planted_reward(proposal.params, random.Random(0))))
    assert turns in ([True, False] * 3, [False, True] * 3)
    small_limit = make(seed=4, whole_space_from=10, whole_space_limit=5**6 - 1)
    drive(small_limit, 30, [], random.Random(7))
    assert not small_limit._scores_whole_space()  # type: ignore[attr-defined]
    # few configurations but a wide encoding: 4,000 x 4,000 one-hot cells are not kept
    wide = make(
        space=SearchSpace("wide", (Choice("a", tuple(range(4000))),), "tests:unused"), whole_space_from=0
    )
    assert not wide._scores_whole_space()  # type: ignore[attr-defined]


def test_the_reward_model_predicts_the_same_in_blocks_as_row_by_row() -> None:
    strategy = make(seed=1)
    drive(strategy, 20, [], random.Random(8))
    model = strategy.model  # type: ignore[attr-defined]
    x = (np.random.default_rng(0).random((5000, 30)) < 0.2).astype(np.float32)  # over two blocks
    whole = model.predict(x)
    rows = np.concatenate([model.predict(x[i : i + 1]) for i in range(0, 5000, 997)], axis=1)
    assert whole.shape == (model.members, 5000)
    np.testing.assert_allclose(whole[:, ::997], rows, rtol=1e-5, atol=1e-6)


def test_the_policy_learns_the_planted_levels() -> None:
    strategy = make(seed=6)
    drive(strategy, 150, [], random.Random(5))
    probabilities = strategy.policy_probabilities()  # type: ignore[attr-defined]
    assert sum(max(p) == p[level] for p, level in zip(probabilities, PLANTED, strict=True)) >= 5


def test_refuses_a_state_saved_for_another_space_or_config() -> None:
    saved = roundtrip(make(seed=0).get_state())
    for other in (make(space=TINY), make(hidden_size=8)):
        with pytest.raises(ValueError, match="does not fit"):
            other.set_state(saved)
        assert other.next_id == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"acquisition": "greedy"}, "'acquisition' must be 'thompson' or 'ucb'"),
        ({"ensemble_size": 0}, r"'ensemble_size' must be an integer in \[1, 4096\]"),
        ({"policy_candidates": 0, "mutation_candidates": 0}, "at least 1 together with mutation_candidates"),
        ({"model_learning_rate": 0}, "'model_learning_rate' must be a number > 0"),
        ({"double_mutation": 1.5}, r"'double_mutation' must be a number in \[0, 1\]"),
        ({"interleave_from": 1}, r"'interleave_from' must be null or an integer in \[2, 100000\]"),
        ({"warm_prior_halflife": 0}, "'warm_prior_halflife' must be null or a number > 0"),
        ({"whole_space_limit": -1}, r"'whole_space_limit' must be an integer in \[0, 1048576\]"),
        ({"whole_space_every": 0}, r"'whole_space_every' must be an integer in \[1, 100000\]"),
    ],
)
def test_bad_options_say_what_to_fix(options: dict[str, Any], message: str) -> None:
    with pytest.raises(StrategyError, match=message):
        check_options("model_based", options)


def test_defaults_are_json_and_complete() -> None:
    options = check_options("model_based", {})
    assert json.loads(json.dumps(options)) == options
    assert options["acquisition"] == "thompson"


# -- canonical forms: one network, one trial --------------------------------------------------------

NB201 = NB201_CELL.space()


def conv_reward(params: dict[str, Any], noise: random.Random) -> float:
    """More 3x3 convolutions on edges that matter is better (a rough NAS-Bench-201 trend)."""
    form = canonical_cell(params)
    return sum(op == "nor_conv_3x3" for op in form.values()) / 6 + noise.gauss(0.0, 0.02)


def run_nb201(strategy: Strategy, steps: int, noise: random.Random) -> list[dict[str, Any]]:
    proposals = []
    for _ in range(steps):
        proposal = strategy.ask()
        assert isinstance(proposal, Proposal)
        proposals.append(proposal.params)
        strategy.tell(proposal.id, Result(conv_reward(proposal.params, noise)))
    return proposals


def test_on_nb201_each_network_comes_once_and_the_model_sees_forms() -> None:
    strategy = make(seed=2, space=NB201, initial_trials=10, whole_space_from=10)
    proposals = run_nb201(strategy, 120, random.Random(5))
    forms = [tuple(canonical_cell(params).values()) for params in proposals]
    assert len(set(forms)) == 120
    # node 1 cut off from the input: what leaves it does not matter, to the model either
    names = [
        "|none~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|",
        "|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    ]
    rows = np.array([NB201.to_indices(params_from_arch_str(name)) for name in names])
    x = strategy._one_hot(rows)  # type: ignore[attr-defined]
    assert (x[0] == x[1]).all()
    assert not (strategy._one_hot(rows[:, ::-1]) == x[0]).all()  # type: ignore[attr-defined]


def test_another_name_of_a_network_comes_only_when_no_new_network_is_left() -> None:
    # edge_2_1 stays the default cell's nor_conv_3x3; edge_1_0 = none cuts node 1 off, and
    # then edge_3_1 does nothing: 4 configurations, 3 networks
    space = NB201_CELL.custom_space(
        "two-edges",
        (Choice("edge_1_0", ("none", "nor_conv_3x3")), Choice("edge_3_1", ("none", "nor_conv_3x3"))),
    )
    for seed in range(4):
        strategy, names = make(seed=seed, space=space, initial_trials=2), []
        for _ in range(4):
            proposal = strategy.ask()
            assert isinstance(proposal, Proposal)
            names.append((proposal.params["edge_1_0"], proposal.params["edge_3_1"]))
            strategy.tell(proposal.id, Result(random.Random(seed).random()))
        assert strategy.ask() is FINISHED
        assert len(set(names)) == 4
        assert {names[3]} & {("none", "none"), ("none", "nor_conv_3x3")}
    # without the forms both names of the cut-off cell come before the last proposal on some seed
    firsts = []
    for seed in range(8):
        strategy = make(seed=seed, space=space, initial_trials=2, canonical_forms=False)
        proposals = [strategy.ask() for _ in range(3)]
        firsts.append({(p.params["edge_1_0"], p.params["edge_3_1"]) for p in proposals})  # type: ignore[union-attr]
    assert any({("none", "none"), ("none", "nor_conv_3x3")} <= first for first in firsts)


def test_a_restored_state_on_nb201_remembers_which_networks_were_proposed() -> None:
    original = make(seed=7, space=NB201, whole_space_from=10)
    run_nb201(original, 40, random.Random(9))
    restored = make(seed=7, space=NB201, whole_space_from=10)
    restored.set_state(roundtrip(original.get_state()))
    assert run_nb201(restored, 20, random.Random(10)) == run_nb201(original, 20, random.Random(10))
