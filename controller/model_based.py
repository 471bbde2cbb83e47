"""Model-based REINFORCE: a policy proposes, a learned reward model chooses.

Reads top to bottom:

1. ``ask()``: until ``initial_trials`` results are in, propose a draw from the policy
   (uniform at first), or from ``interleave_from`` results on every second time the
   reward model's pick (in a warm-started job from the first proposal on). For the
   model's picks build a pool of candidates, ``policy_candidates`` draws from the policy plus
   ``mutation_candidates`` mutations (one or two decisions moved) of the best ``parents``
   trials so far, drop every configuration that builds a network already proposed (by
   the space's canonical form, if it names one: see below), and let the reward model
   pick one: each candidate's score is a draw from ``N(mean, (exploration * std)^2)`` of
   the ensemble's predictions (independent Thompson sampling), or ``mean + exploration *
   std`` (UCB); the best score is proposed. In a small space (``whole_space_limit``),
   from ``whole_space_from`` results on every ``whole_space_every``-th proposal scores
   every configuration not proposed yet instead: policy draws and mutations stay near
   what the search has seen, and a search settled in a good basin needs a candidate
   several decisions away to leave it.
2. ``tell()``: the result joins the history (a failure is skipped, or scored
   ``failure_reward``). The reward model takes ``train_steps`` Adam steps on the whole
   history (targets are the rewards turned into normal scores of their ranks, so a few
   broken trials cannot squash the differences at the top). The policy, one softmax
   per decision, takes a REINFORCE step on the real reward,
       advantage = (reward - baseline) / spread of the rewards so far,
   and ``dream_batch`` more on its own draws scored by the reward model.

The policy works on the discrete view (``space.cardinalities``), the model on the
one-hot encoding of each decision's level, so any space works. A configuration is
never proposed twice; when every one has been, ``ask()`` returns FINISHED.

Where the space names a canonical form (``SearchSpace.canonical``: on NAS-Bench-201,
edges that no input-to-output path uses are written ``none`` and interchangeable middle
nodes are ordered), the model sees each configuration's form, so what one name of a
network teaches holds for all its names, and a configuration whose form was proposed
before (the same network, trained again) is proposed only when no new network is left.
On NAS-Bench-201 that cut the queries to Optuna's 100-query score by 3 to 7 (see the
README).

Warm start (:meth:`warm_start`) from an earlier job on the same decisions carries over
its reward-model weights and keeps its history as a *prior*: each configuration with the
normal score of its reward's rank within that job (another dataset's rewards are on
another scale, ranks are not). The prior joins the reward model's training data and the
parents of mutations, and its best ``parents`` configurations are candidates too, so the
model decides whether they are worth re-evaluating here; the job's own history, pending
proposals and "seen" set start empty. The prior's targets fade as the job's own results
come in (``warm_prior_halflife``). The earlier job's policy is *not* carried over, and
until ``initial_trials`` own results the model picks only every second proposal (the
first included) and uniform policy draws fill the others: the earlier job's favourites
are a good start, but this dataset's best cells may lie elsewhere, and a search that
only exploits the earlier job's knowledge stays where that job was (on NAS-Bench-201
CIFAR-10 -> CIFAR-100 the runs whose CIFAR-10 search had stalled stalled again).

All randomness comes from ``self.rng``: each ``ask`` and ``tell`` seeds a numpy
generator from it, so the state (history, policy and model arrays, rng) pins down
every future proposal.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from controller.base import FINISHED, Ask, Proposal, Result, Strategy
from controller.canonical_forms import canonical_forms
from controller.config import ModelBasedConfig
from controller.reward_model import MlpEnsemble
from search_spaces.spec import SearchSpace

Indices = tuple[int, ...]

#: Below this many configurations the space is enumerated when random draws keep
#: hitting configurations already proposed.
_ENUMERATE_LIMIT = 1 << 18

#: The most one-hot cells (configurations x encoding width) a whole-space pick keeps in
#: memory, 32 MB: a space of few configurations can still have decisions of many levels.
_GRID_CELLS = 1 << 23

_ADAM_BETA1, _ADAM_BETA2, _ADAM_EPSILON = 0.9, 0.999, 1e-8


class ModelBasedController(Strategy):
    """A per-decision softmax policy trained by REINFORCE, steered by an MLP-ensemble reward model."""

    name = "model_based"

    def __init__(
        self, space: SearchSpace, seed: int | None = None, config: ModelBasedConfig | None = None
    ) -> None:
        super().__init__(space, seed)
        self.config = config or ModelBasedConfig()
        cfg = self.config
        self._shape_from_space()
        init = np.random.default_rng(self.rng.getrandbits(63))
        # with fidelity_input, one more input column: the result's fidelity (1 for candidates)
        self._fidelity_column = 1 if cfg.fidelity_input else 0
        self.model = MlpEnsemble(
            self.width + self._fidelity_column,
            cfg.hidden_size,
            cfg.hidden_layers,
            cfg.ensemble_size,
            cfg.model_learning_rate,
            cfg.weight_decay,
            init,
        )
        #: the policy: one logit per level of every decision, side by side, and Adam's moments
        self.logits = np.zeros(self.width)
        self.logits_m = np.zeros(self.width)
        self.logits_v = np.zeros(self.width)
        self.policy_step = 0
        self.baseline: float | None = None
        #: every configuration ever proposed (told, failed or pending), in order
        self.proposed: list[Indices] = []
        self.seen: set[Indices] = set()
        # the forms of everything proposed: a configuration whose form was proposed builds a
        # network already trained, so it is proposed only once no other is left
        self._seen_forms: set[Indices] = set()
        #: (configuration, reward) of every result that teaches something, in order told
        self.history: list[tuple[Indices, float]] = []
        #: the fidelity of each history entry (1: fully trained), in step with it
        self.fidelities: list[float] = []
        # the history as arrays (level indices, model inputs, rewards), kept in step with it
        self._rows = np.empty((0, len(self.cardinalities)), dtype=np.int64)
        self._x = np.empty((0, self.width + self._fidelity_column), dtype=np.float32)
        self._y = np.empty(0)
        # the warm start's prior: level indices, one-hot rows and normal-score targets
        self._prior_rows = self._rows.copy()
        self._prior_x = self._x.copy()
        self._prior_t = self._y.copy()

    def _shape_from_space(self) -> None:
        """What follows from ``self.space``: per-decision levels, one-hot layout, space size, forms."""
        self.cardinalities = np.array(self.space.cardinalities, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.cardinalities)[:-1]]).astype(np.int64)
        self.width = int(self.cardinalities.sum())
        self.size = math.prod(int(k) for k in self.cardinalities)
        self._radix = np.concatenate([np.cumprod(self.cardinalities[::-1])[::-1][1:], [1]]).astype(np.int64)
        # the space's canonical forms (None: every configuration is its own)
        self._forms = canonical_forms(self.space) if self.config.canonical_forms else None
        # every configuration (one-hot rows) and the code of its form, built on the first
        # pick that scores them all
        self._grid_x: np.ndarray | None = None
        self._grid_form_codes: np.ndarray | None = None

    # ---- growing and adopted configurations --------------------------------------------

    def adopt(self, params: Mapping[str, Any]) -> Proposal:
        """A configuration chosen elsewhere, proposed as is (and never proposed again)."""
        proposal = self._propose(dict(params))
        row = tuple(self.space.to_indices(proposal.params))
        self.proposed.append(row)
        self.seen.add(row)
        self._seen_forms.add(self._form(row))
        return proposal

    def extend_space(self, space: SearchSpace, fill: Mapping[str, Any] | None = None) -> None:
        """New decisions: their one-hot inputs start with zero weights in the reward model and
        their logits at 0 (uniform), and every configuration seen so far is read as having had
        each new decision at its fill level, so what was learned holds unchanged."""
        old_count, old_width = len(self.space.decisions), self.width
        values = self._grow(space, fill)
        extra = tuple(space.to_indices({**space.from_indices([0] * len(space.decisions)), **values}))
        extra = extra[old_count:]
        self._shape_from_space()
        added = self.width - old_width
        self.model.add_inputs(added)
        self.logits, self.logits_m, self.logits_v = (
            np.concatenate([array, np.zeros(added)]) for array in (self.logits, self.logits_m, self.logits_v)
        )
        self.proposed = [row + extra for row in self.proposed]
        self.seen = set(self.proposed)
        self._seen_forms = {self._form(row) for row in self.proposed}
        self.history = [(row + extra, reward) for row, reward in self.history]
        self._rows = _with_columns(self._rows, extra)
        self._x = self._one_hot(self._rows)
        self._prior_rows = _with_columns(self._prior_rows, extra)
        self._prior_x = self._one_hot(self._prior_rows)

    # ---- ask ---------------------------------------------------------------------------

    def ask(self) -> Ask:
        if len(self.seen) >= self.size:
            return FINISHED
        rng = np.random.default_rng(self.rng.getrandbits(63))
        if self._model_picks():
            choice = self._choose(rng)
        else:
            choice = self._first_unseen(self._sample_policy(rng, max(self.config.policy_candidates, 1)))
        if choice is None:
            choice = self._random_unseen(rng)
        proposal = self._propose(self.space.from_indices(list(choice)))
        self.proposed.append(choice)
        self.seen.add(choice)
        self._seen_forms.add(self._form(choice))
        return proposal

    def _form(self, row: Indices) -> Indices:
        return row if self._forms is None else self._forms.form(row)

    def _is_new(self, row: Indices) -> bool:
        """Whether ``row`` builds a network not proposed yet (its form is new)."""
        return self._form(row) not in self._seen_forms

    def _model_picks(self) -> bool:
        """Whether the reward model picks the next proposal rather than a policy draw."""
        cfg = self.config
        results = len(self.history)
        if results >= max(cfg.initial_trials, 2):
            return True
        if len(self._prior_t):  # warm: the model knows the prior, so it takes turns from the start
            return results % 2 == 0
        start = cfg.interleave_from
        return start is not None and results >= start and (results - start) % 2 == 0

    def _choose(self, rng: np.random.Generator) -> Indices | None:
        """The candidate the reward model likes best, or None if every candidate was seen."""
        cfg = self.config
        if self._scores_whole_space():
            return self._choose_from_whole_space(rng)
        pool = [self._sample_policy(rng, cfg.policy_candidates), self._mutate_best(rng)]
        if len(self._prior_t):
            pool.append(self._prior_rows[np.argsort(-self._prior_t, kind="stable")[: cfg.parents]])
        rows = np.concatenate(pool)
        forms = self._form_rows(rows)
        keep = self._new_network_indices(forms)
        if not keep:
            return None
        candidates = rows[keep]
        score = self._acquisition(self.model.predict(self._with_fidelity(self._encode(forms[keep]))), rng)
        return tuple(int(i) for i in candidates[int(np.argmax(score))])

    def _scores_whole_space(self) -> bool:
        """Whether this pick's candidates are every configuration not proposed yet.

        Counted in proposals, not results, so that proposals made while others are in
        flight still take turns, and a restored state takes the same turns.
        """
        cfg = self.config
        return (
            self.size <= cfg.whole_space_limit
            and self.size * self.width <= _GRID_CELLS
            and len(self.history) >= cfg.whole_space_from
            and len(self.proposed) % cfg.whole_space_every == 0
        )

    def _choose_from_whole_space(self, rng: np.random.Generator) -> Indices:
        """The best-scored configuration of the whole space not proposed yet (``ask`` has
        already returned FINISHED if there is none).

        Mutations and policy draws stay near what the search has seen: a search that has
        settled in a good basin needs a candidate several decisions away to leave it, and
        the reward model's Thompson draw over every configuration is what finds one.
        """
        if self._grid_x is None or self._grid_form_codes is None:
            forms = self._form_rows(self._grid())
            self._grid_x = self._with_fidelity(self._encode(forms))
            self._grid_form_codes = self._codes(forms)
        score = self._acquisition(self.model.predict(self._grid_x), rng)
        taken = np.isin(self._grid_form_codes, self._codes(self._as_rows(self._seen_forms)))
        if taken.all():  # every network was proposed: take another name of one
            taken = np.zeros(self.size, bool)
            taken[self._codes(self._as_rows(self.proposed))] = True
        score[taken] = -np.inf
        code = int(np.argmax(score))
        return tuple(int(i) for i in (code // self._radix) % self.cardinalities)

    def _acquisition(self, predictions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Each candidate's score from the members' predictions (``members x candidates``)."""
        cfg = self.config
        mean, std = predictions.mean(axis=0, dtype=np.float64), predictions.std(axis=0, dtype=np.float64)
        if cfg.acquisition == "thompson":
            return mean + cfg.exploration * std * rng.standard_normal(len(mean))
        return mean + cfg.exploration * std

    def _grid(self) -> np.ndarray:
        """Every configuration, row ``code`` being the one whose mixed-radix code is ``code``."""
        codes = np.arange(self.size, dtype=np.int64)
        return (codes[:, None] // self._radix) % self.cardinalities

    def _codes(self, rows: np.ndarray) -> np.ndarray:
        return rows @ self._radix

    def _as_rows(self, configurations: Sequence[Indices] | set[Indices]) -> np.ndarray:
        return np.array(list(configurations), dtype=np.int64).reshape(-1, len(self.cardinalities))

    def _sample_policy(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` draws from the policy, one row of level indices each."""
        rows = np.empty((count, len(self.cardinalities)), dtype=np.int64)
        uniforms = rng.random((count, len(self.cardinalities)))
        for d, (start, levels) in enumerate(zip(self.offsets, self.cardinalities, strict=True)):
            cdf = np.cumsum(_softmax(self.logits[start : start + levels]))
            rows[:, d] = np.minimum(np.searchsorted(cdf, uniforms[:, d], side="right"), levels - 1)
        return rows

    def _mutate_best(self, rng: np.random.Generator) -> np.ndarray:
        """``mutation_candidates`` copies of the best ``parents`` trials, each with one decision
        (or, with probability ``double_mutation``, two) moved to another level."""
        cfg = self.config
        count = cfg.mutation_candidates
        if not count or not (self.history or len(self._prior_t)):
            return np.empty((0, len(self.cardinalities)), dtype=np.int64)
        parents = self._best_rows(cfg.parents)
        rows = parents[rng.integers(0, len(parents), size=count)]
        for repeat in range(2):
            mutate = np.ones(count, bool) if repeat == 0 else rng.random(count) < cfg.double_mutation
            which = rng.integers(0, len(self.cardinalities), size=count)
            levels = self.cardinalities[which]
            # a shift in [1, levels) always lands on a different level (a 1-level decision stays)
            shift = np.where(levels > 1, 1 + (rng.random(count) * (levels - 1)).astype(np.int64), 0)
            picked = np.arange(count)[mutate]
            rows[picked, which[mutate]] = (rows[picked, which[mutate]] + shift[mutate]) % levels[mutate]
        return rows

    def _best_rows(self, count: int) -> np.ndarray:
        """The ``count`` best configurations of the prior and the own history, best first.

        With ``fidelity_input`` a configuration is judged by the model's prediction fully
        trained, not by a reward a stopped trial reached early."""
        _, scores = self._training_data()
        rows = np.concatenate([self._prior_rows, self._rows])
        if self._fidelity_column and len(rows):
            scores = self.model.predict(self._inputs(rows)).mean(axis=0).astype(np.float64)
        return rows[np.argsort(-scores, kind="stable")[:count]]

    def _unseen_rows(self, rows: np.ndarray) -> np.ndarray:
        """The rows that build networks not proposed yet, one row per network."""
        return rows[self._new_network_indices(self._form_rows(rows))]

    def _new_network_indices(self, forms: np.ndarray) -> list[int]:
        """Where in ``forms`` (rows' canonical forms) a network not proposed yet first appears."""
        keep, fresh = [], set()
        for i, form in enumerate(map(tuple, forms.tolist())):
            if form not in self._seen_forms and form not in fresh:
                fresh.add(form)
                keep.append(i)
        return keep

    def _first_unseen(self, rows: np.ndarray) -> Indices | None:
        for row in map(tuple, rows.tolist()):
            if self._is_new(row):
                return row
        return None

    def _random_unseen(self, rng: np.random.Generator) -> Indices:
        """A uniformly drawn configuration not proposed before (the space is not exhausted),
        one that builds a new network while there is one."""
        for _ in range(64):
            row = tuple(int(i) for i in (rng.random(len(self.cardinalities)) * self.cardinalities))
            if self._is_new(row):
                return row
        if self.size <= _ENUMERATE_LIMIT:
            grid = self._grid()
            unseen = self._unseen_rows(grid)
            if not len(unseen):  # every network was proposed: another name of one
                unseen = grid[[tuple(row) not in self.seen for row in grid.tolist()]]
            return tuple(int(i) for i in unseen[int(rng.integers(0, len(unseen)))])
        while True:  # a space this large cannot be nearly exhausted in practice
            row = tuple(int(i) for i in (rng.random(len(self.cardinalities)) * self.cardinalities))
            if row not in self.seen:
                return row

    # ---- tell --------------------------------------------------------------------------

    def tell(self, proposal_id: int, result: Result) -> None:
        self._learn(self._settle(proposal_id), result)

    def observe(self, params: Mapping[str, Any], result: Result) -> None:
        """A promoted trial's result at a higher fidelity: one more point of its curve (with
        ``fidelity_input``; without it, the later result replaces nothing and is learned as is)."""
        self._learn(dict(params), result)

    def _learn(self, params: Mapping[str, Any], result: Result) -> None:
        reward = self.config.failure_reward if result.reward is None else result.reward
        if reward is None:
            return
        indices = tuple(self.space.to_indices(params))
        fidelity = result.fidelity if self._fidelity_column else 1.0
        self._remember([(indices, float(reward))], [fidelity])
        rng = np.random.default_rng(self.rng.getrandbits(63))
        if fidelity >= 1.0:
            full = self._y[np.asarray(self.fidelities) >= 1.0]
            self._reinforce(np.array([indices]), np.array([self._advantage(float(reward), full)]))
        if len(self.history) + len(self._prior_t) < 2:
            return
        x, targets = self._training_data()
        self.model.train(x, targets, self.config.train_steps, self.config.train_batch, rng)
        if self.config.dream_batch and len(self.history) >= self.config.initial_trials:
            dreams = self._sample_policy(rng, self.config.dream_batch)
            predicted = self.model.predict(self._inputs(dreams)).mean(axis=0).astype(np.float64)
            self._reinforce(dreams, (predicted - predicted.mean()) * self.config.dream_weight)

    def _training_data(self) -> tuple[np.ndarray, np.ndarray]:
        """(one-hot rows, normal-score targets) of the warm start's prior, then the own history."""
        own = _normal_scores(self._y) if len(self._y) else self._y
        targets = np.concatenate([self._prior_t * self._prior_weight(), own])
        return np.concatenate([self._prior_x, self._x]), targets

    def _prior_weight(self) -> float:
        """The warm start prior's share now: 1 at first, 1/2 after ``warm_prior_halflife`` own results."""
        halflife = self.config.warm_prior_halflife
        return 1.0 if halflife is None else halflife / (halflife + len(self.history))

    def _remember(self, results: Sequence[tuple[Indices, float]], fidelities: Sequence[float]) -> None:
        if not results:
            return
        self.history.extend(results)
        self.fidelities.extend(fidelities)
        rows = np.array([row for row, _ in results], dtype=np.int64)
        self._rows = np.concatenate([self._rows, rows])
        self._x = np.concatenate([self._x, self._inputs(rows, np.asarray(fidelities, dtype=np.float32))])
        self._y = np.concatenate([self._y, [reward for _, reward in results]])

    def _advantage(self, reward: float, rewards: np.ndarray) -> float:
        decay = self.config.baseline_decay
        baseline = reward if self.baseline is None else self.baseline
        self.baseline = decay * baseline + (1 - decay) * reward
        spread = float(rewards.std()) if len(rewards) > 1 else 0.0
        return (reward - baseline) / spread if spread > 0 else 0.0

    def _reinforce(self, rows: np.ndarray, advantages: np.ndarray) -> None:
        """One Adam ascent step on ``mean(advantage * log pi(row))`` plus the entropy bonus."""
        cfg = self.config
        grad = np.zeros(self.width)
        for d, (start, levels) in enumerate(zip(self.offsets, self.cardinalities, strict=True)):
            probs = _softmax(self.logits[start : start + levels])
            counts = np.bincount(rows[:, d], weights=advantages, minlength=levels)
            grad[start : start + levels] = (counts - advantages.sum() * probs) / len(rows)
            if cfg.entropy_weight:
                log_probs = np.log(probs)
                entropy = -(probs * log_probs).sum()
                grad[start : start + levels] -= cfg.entropy_weight * probs * (log_probs + entropy)
        self.policy_step += 1
        self.logits_m = _ADAM_BETA1 * self.logits_m + (1 - _ADAM_BETA1) * grad
        self.logits_v = _ADAM_BETA2 * self.logits_v + (1 - _ADAM_BETA2) * grad * grad
        m_hat = self.logits_m / (1 - _ADAM_BETA1**self.policy_step)
        v_hat = self.logits_v / (1 - _ADAM_BETA2**self.policy_step)
        self.logits = self.logits + cfg.policy_learning_rate * m_hat / (np.sqrt(v_hat) + _ADAM_EPSILON)

    def _one_hot(self, rows: np.ndarray) -> np.ndarray:
        """The one-hot levels of each row's canonical form, so that what the reward model
        learns from one name of a network holds for all of them."""
        return self._encode(self._form_rows(rows))

    def _inputs(self, rows: np.ndarray, fidelities: np.ndarray | None = None) -> np.ndarray:
        """The reward model's input for ``rows``: their one-hot forms, and with
        ``fidelity_input`` their fidelities (default 1: a candidate is scored fully trained)."""
        return self._with_fidelity(self._one_hot(rows), fidelities)

    def _with_fidelity(self, x: np.ndarray, fidelities: np.ndarray | None = None) -> np.ndarray:
        if not self._fidelity_column:
            return x
        column = np.ones((len(x), 1), np.float32) if fidelities is None else fidelities.reshape(-1, 1)
        return np.concatenate([x, column.astype(np.float32)], axis=1)

    def _form_rows(self, rows: np.ndarray) -> np.ndarray:
        return rows if self._forms is None else self._forms.forms(rows)

    def _encode(self, rows: np.ndarray) -> np.ndarray:
        """The one-hot levels of ``rows`` as they are."""
        x = np.zeros((len(rows), self.width), dtype=np.float32)
        x[np.arange(len(rows))[:, None], self.offsets + rows] = 1.0
        return x

    def policy_probabilities(self) -> list[list[float]]:
        """Per decision, the policy's probability of each level."""
        return [
            _softmax(self.logits[start : start + levels]).tolist()
            for start, levels in zip(self.offsets, self.cardinalities, strict=True)
        ]

    # ---- warm start --------------------------------------------------------------------

    def warm_start(self, previous_state: Mapping[str, Any]) -> None:
        """Carry over an earlier job's reward model and (ranked) history; see the module."""
        self.model.load(
            {name: _decode(data) for name, data in previous_state["model"].items()},
            previous_state["model_step"],
        )
        # the earlier policy is not used (the policy starts uniform: see the module docstring);
        # the model's load above already refuses a state saved for another space
        self._set_prior([(row, reward) for row, reward in previous_state["history"]], ranked=True)

    def _set_prior(self, pairs: Sequence[tuple[Sequence[int], float]], ranked: bool) -> None:
        """The prior from (configuration, reward) pairs, or (configuration, target) if not ``ranked``."""
        rows = np.array([list(row) for row, _ in pairs], dtype=np.int64).reshape(-1, len(self.cardinalities))
        if len(rows) and (rows.min() < 0 or (rows >= self.cardinalities).any()):
            raise ValueError("the earlier job's history does not fit this space")
        values = np.array([value for _, value in pairs], dtype=np.float64)
        self._prior_rows = rows
        self._prior_x = self._inputs(rows)
        self._prior_t = _normal_scores(values) if ranked and len(values) else values

    # ---- state -------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state.update(
            model={name: _encode(array) for name, array in self.model.arrays().items()},
            model_step=self.model.step,
            policy={
                "logits": _encode(self.logits),
                "m": _encode(self.logits_m),
                "v": _encode(self.logits_v),
                "step": self.policy_step,
            },
            baseline=self.baseline,
            proposed=[list(row) for row in self.proposed],
            history=[[list(row), reward] for row, reward in self.history],
            fidelities=list(self.fidelities),
            prior=[[row, float(t)] for row, t in zip(self._prior_rows.tolist(), self._prior_t, strict=True)],
        )
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        # the model first: it refuses a state saved for another space or config, and
        # then nothing has been changed yet
        self.model.load({name: _decode(data) for name, data in state["model"].items()}, state["model_step"])
        logits = _decode(state["policy"]["logits"])
        if logits.shape != (self.width,):
            raise ValueError("the saved policy does not fit this space")
        super().set_state(state)
        self.logits = logits
        self.logits_m = _decode(state["policy"]["m"])
        self.logits_v = _decode(state["policy"]["v"])
        self.policy_step = int(state["policy"]["step"])
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.proposed = [tuple(int(i) for i in row) for row in state["proposed"]]
        self.seen = set(self.proposed)
        self._seen_forms = {self._form(row) for row in self.proposed}
        self.history = []
        self.fidelities = []
        self._rows = self._rows[:0]
        self._x = self._x[:0]
        self._y = self._y[:0]
        fidelities = state.get("fidelities") or [1.0] * len(state["history"])  # saved before fidelities
        self._remember(
            [(tuple(int(i) for i in row), float(reward)) for row, reward in state["history"]],
            [float(f) for f in fidelities],
        )
        self._set_prior(state.get("prior", []), ranked=False)


def _with_columns(rows: np.ndarray, values: Indices) -> np.ndarray:
    """``rows`` with the same ``values`` appended to each row."""
    return np.concatenate([rows, np.tile(np.array(values, dtype=np.int64), (len(rows), 1))], axis=1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


def _normal_scores(values: np.ndarray) -> np.ndarray:
    """Each value's rank turned into a standard normal quantile (ties share their mean rank)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    unique, inverse = np.unique(values, return_inverse=True)
    if len(unique) < len(values):
        ranks = (np.bincount(inverse, weights=ranks) / np.bincount(inverse))[inverse]
    return _normal_quantile((ranks + 0.5) / len(values))


# Acklam's rational approximation of the standard normal quantile (error below 1e-8)
_A = np.array(
    [
        -3.969683028665376e01,
        2.209460984245205e02,
        -2.759285104469687e02,
        1.383577518672690e02,
        -3.066479806614716e01,
        2.506628277459239e00,
    ]
)
_B = np.array(
    [
        -5.447609879822406e01,
        1.615858368580409e02,
        -1.556989798598866e02,
        6.680131188771972e01,
        -1.328068155288572e01,
        1.0,
    ]
)
_C = np.array(
    [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e00,
        -2.549732539343734e00,
        4.374664141464968e00,
        2.938163982698783e00,
    ]
)
_D = np.array([7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00, 1.0])


def _normal_quantile(p: np.ndarray) -> np.ndarray:
    """The standard normal quantile of each probability in ``p`` (all in (0, 1))."""
    out = np.empty_like(p)
    tail = np.minimum(p, 1.0 - p) < 0.02425
    q = p[~tail] - 0.5
    out[~tail] = q * np.polyval(_A, q * q) / np.polyval(_B, q * q)
    t = np.sqrt(-2.0 * np.log(np.minimum(p[tail], 1.0 - p[tail])))
    out[tail] = np.where(p[tail] < 0.5, 1.0, -1.0) * np.polyval(_C, t) / np.polyval(_D, t)
    return out


def _encode(array: np.ndarray) -> dict[str, Any]:
    """An array as JSON: dtype, shape and the base64 of its raw little-endian bytes (exact)."""
    dtype = "<f4" if array.dtype == np.float32 else "<f8"
    array = np.ascontiguousarray(array, dtype=dtype)
    return {"dtype": dtype, "shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}


def _decode(data: Mapping[str, Any]) -> np.ndarray:
    if data.get("dtype") not in ("<f4", "<f8"):
        raise ValueError(f"saved arrays must be <f4 or <f8, got {data.get('dtype')!r}")
    flat = np.frombuffer(base64.b64decode(data["data"]), dtype=data["dtype"])
    return flat.reshape([int(d) for d in data["shape"]]).copy()
