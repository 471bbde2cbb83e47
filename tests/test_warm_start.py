"""Warm start: a job learns from an earlier job of the same team, strategy and decisions.

The service refuses a warm start it cannot honour (422 through the API); the loop hands
the earlier job's state to ``Strategy.warm_start`` once, and the new job keeps and
saves only its own state; model_based learns faster from it on a planted space.
"""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path
from typing import Any

import pytest
from conftest import make_settings
from fastapi.testclient import TestClient
from test_bench_nb201 import planted_rows
from test_model_based import PLANTED, PLANTED_SPACE

from api.main import create_app
from controller import Proposal, Result, Strategy, create_strategy
from l2l.bench.nb201 import run_strategy
from l2l.service.jobs import create_team, submit_job
from l2l.service.jobspec import InvalidJob, JobSpec
from l2l.store.records import TeamRecord
from search_spaces import get_space
from search_spaces.nb201_table import NB201Table

NB201 = {
    "dataset": "digits",
    "space": {"name": "nb201_cell", "settings": {"tabular": "cifar10"}},
    "strategy": "model_based",
    "budget": {"trials": 4, "concurrency": 1, "epochs": 1},
    "seed": 1,
}


def _submit(store: Any, tmp_path: Path, team: TeamRecord | None = None, **changes: Any) -> int:
    spec = JobSpec.model_validate({**NB201, **changes})
    return submit_job(store, spec, make_settings(tmp_path), team).id


def _has_run(store: Any, job_id: int) -> None:
    """Give a queued job a resolved space and a saved strategy state, as a controller would."""
    claimed = store.claim_job("test", lease_seconds=60)
    assert claimed is not None and claimed.id == job_id
    space = get_space(claimed.spec["space"])
    store.save_space(job_id, "test", space.to_dict())
    strategy = create_strategy(claimed.spec["strategy"]["name"], space, seed=1)
    proposal = strategy.ask()
    assert isinstance(proposal, Proposal)
    store.add_trial(job_id, "test", proposal.id, proposal.params, strategy.get_state())


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"warm_start": {"job_id": 999}}, "no job 999 of this team"),
        ({"space": "mlp", "dataset": "wine"}, "other decisions"),
        ({"strategy": "evolution"}, "a strategy can only start from its own kind"),
    ],
)
def test_a_warm_start_it_cannot_honour_is_refused(
    store: Any, tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    team, _ = create_team(store, "alpha")
    earlier = _submit(store, tmp_path, team)
    _has_run(store, earlier)
    with pytest.raises(InvalidJob, match=expected):
        _submit(store, tmp_path, team, **{"warm_start": {"job_id": earlier}, **change})


def test_another_teams_job_or_one_that_has_not_run_is_refused(store: Any, tmp_path: Path) -> None:
    alpha, _ = create_team(store, "alpha")
    beta, _ = create_team(store, "beta")
    earlier = _submit(store, tmp_path, alpha)
    with pytest.raises(InvalidJob, match="has not learned anything yet"):
        _submit(store, tmp_path, alpha, warm_start={"job_id": earlier})
    _has_run(store, earlier)
    with pytest.raises(InvalidJob, match=f"no job {earlier} of this team"):
        _submit(store, tmp_path, beta, warm_start={"job_id": earlier})
    # the same space on another dataset is the point of a warm start
    later = _submit(
        store,
        tmp_path,
        alpha,
        space={"name": "nb201_cell", "settings": {"tabular": "cifar100"}},
        warm_start={"job_id": earlier},
    )
    assert store.get_job(later).spec["warm_start"] == {"job_id": earlier}


def test_the_api_answers_a_bad_warm_start_with_422(store: Any, tmp_path: Path) -> None:
    _, key = create_team(store, "alpha")
    with TestClient(
        create_app(make_settings(tmp_path), store), headers={"Authorization": f"Bearer {key}"}
    ) as c:
        response = c.post("/jobs", json={**NB201, "warm_start": {"job_id": 5}})
        assert response.status_code == 422, response.text
        assert "no job 5" in str(response.json()["detail"])
        assert c.get("/jobs").json()["total"] == 0


def test_the_loop_warm_starts_a_job_which_then_saves_its_own_state(store: Any) -> None:
    rows = planted_rows()
    table = NB201Table(
        [(r[0], r[1]) for r in rows], {"cifar10": [r[2] for r in rows]}, {"cifar10": [r[3] for r in rows]}
    )
    result = run_strategy(
        "model_based", "cifar10", budget=8, runs=1, table=table, store=store, warm_start_from="cifar10"
    )
    run = result.runs[0]
    assert run.warm_start_job_id is not None
    earlier = store.get_job(run.warm_start_job_id).strategy_state
    state = store.get_job(run.job_id).strategy_state
    assert state["next_id"] == 8 and state["pending"] == [] and len(state["history"]) == 8
    assert [row for row, _ in state["prior"]] == [row for row, _ in earlier["history"]]
    # its own history only: the earlier job's configurations are its prior, never its trials
    assert state["proposed"] == [row for row, _ in state["history"]]


def _planted(scale: float, shift: float) -> Any:
    """Planted rewards on another scale: what another dataset looks like to the strategy."""

    def reward(params: dict[str, Any], noise: random.Random) -> float:
        hits = sum(params[f"d{i}"] == level for i, level in enumerate(PLANTED))
        return shift + scale * (hits / len(PLANTED) + noise.gauss(0.0, 0.05))

    return reward


def _search(strategy: Strategy, trials: int, reward: Any, noise: random.Random) -> int | None:
    """Run ``trials`` queries; the first (1-based) that hits the planted optimum, or None."""
    found = None
    for query in range(1, trials + 1):
        proposal = strategy.ask()
        assert isinstance(proposal, Proposal)
        if found is None and [proposal.params[f"d{i}"] for i in range(len(PLANTED))] == PLANTED:
            found = query
        strategy.tell(proposal.id, Result(reward(proposal.params, noise)))
    return found


def _model_based(seed: int) -> Strategy:
    return create_strategy("model_based", PLANTED_SPACE, seed=seed, options={"initial_trials": 5})


def test_a_warm_started_model_based_search_finds_the_optimum_in_fewer_queries() -> None:
    cold, warm = [], []
    for seed in range(3):
        source = _model_based(seed)
        _search(source, 60, _planted(1.0, 0.0), random.Random(seed))
        cold.append(_search(_model_based(100 + seed), 60, _planted(40.0, -7.0), random.Random(seed)) or 61)
        target = _model_based(100 + seed)
        target.warm_start(json.loads(json.dumps(source.get_state())))
        warm.append(_search(target, 60, _planted(40.0, -7.0), random.Random(seed)) or 61)
    assert statistics.mean(warm) < statistics.mean(cold) / 2, (warm, cold)


def test_a_warm_start_still_finds_an_optimum_the_earlier_job_did_not_have() -> None:
    moved = [PLANTED[0], PLANTED[1], (PLANTED[2] + 2) % 5, PLANTED[3], (PLANTED[4] + 1) % 5, PLANTED[5]]

    def reward(params: dict[str, Any], noise: random.Random) -> float:
        hits = sum(params[f"d{i}"] == level for i, level in enumerate(moved))
        return hits / len(moved) + noise.gauss(0.0, 0.05)

    found = []
    for seed in range(3):
        source = _model_based(seed)
        _search(source, 60, _planted(1.0, 0.0), random.Random(seed))
        target = _model_based(100 + seed)
        target.warm_start(json.loads(json.dumps(source.get_state())))
        noise, hit = random.Random(seed), None
        for query in range(1, 81):
            proposal = target.ask()
            assert isinstance(proposal, Proposal)
            if hit is None and [proposal.params[f"d{i}"] for i in range(len(moved))] == moved:
                hit = query
            target.tell(proposal.id, Result(reward(proposal.params, noise)))
        found.append(hit)
    assert all(hit is not None for hit in found), found


def test_a_warm_start_keeps_the_earlier_model_and_history_but_not_its_policy() -> None:
    source = _model_based(0)
    _search(source, 40, _planted(1.0, 0.0), random.Random(0))
    assert max(max(p) for p in source.policy_probabilities()) > 0.5  # the source's policy has settled
    target = _model_based(1)
    target.warm_start(json.loads(json.dumps(source.get_state())))
    # a fresh, uniform policy: its draws keep this job's own data broad
    assert all(p == pytest.approx([0.2] * 5) for p in target.policy_probabilities())
    assert target.get_state()["model"] == source.get_state()["model"]


def test_a_warm_start_carries_no_pending_proposals_and_its_state_round_trips() -> None:
    source = _model_based(0)
    _search(source, 20, _planted(1.0, 0.0), random.Random(0))
    in_flight = [source.ask(), source.ask()]  # pending in the earlier job: never this job's
    target = _model_based(1)
    target.warm_start(source.get_state())
    assert target.pending == {} and target.next_id == 0 and not target.history and not target.seen
    first = target.ask()
    assert isinstance(first, Proposal) and first.id == 0
    state = json.loads(json.dumps(target.get_state()))
    assert [row for row, _ in state["prior"]] == [list(row) for row, _ in source.history]
    restored = _model_based(1)
    restored.set_state(state)
    assert restored.get_state() == state
    assert [restored.ask() for _ in range(3)] == [target.ask() for _ in range(3)]
    assert all(isinstance(p, Proposal) for p in in_flight)


def test_a_warm_started_evolution_proposes_the_earlier_best_members_first() -> None:
    options = {"population_size": 8, "sample_size": 3}
    source = create_strategy("evolution", PLANTED_SPACE, seed=0, options=options)
    _search(source, 30, _planted(1.0, 0.0), random.Random(0))
    best = sorted(source.population, key=lambda member: -member[1])[:4]
    target = create_strategy("evolution", PLANTED_SPACE, seed=1, options=options)
    target.warm_start(json.loads(json.dumps(source.get_state())))
    first = [target.ask() for _ in range(4)]
    assert [p.params for p in first if isinstance(p, Proposal)] == [params for params, _ in best]
    assert target.pending.keys() == {0, 1, 2, 3}
    restored = create_strategy("evolution", PLANTED_SPACE, seed=1, options=options)
    restored.set_state(json.loads(json.dumps(target.get_state())))
    assert restored.get_state() == target.get_state()
