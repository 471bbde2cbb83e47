"""One frozen config dataclass per strategy, and the checks that keep options sane.

This module imports no TensorFlow: the API process validates a job's options with
:func:`controller.check_options` long before any worker builds a strategy.

Every field has a default, so ``{}`` is always a valid set of options. A config
checks its own value ranges in ``__post_init__`` and raises :class:`StrategyError`
with a message that names the option and says what values it takes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class StrategyError(ValueError):
    """An unknown strategy or a bad option for one. The message says what to fix."""


@dataclass(frozen=True)
class RandomConfig:
    """Random search has no options: every proposal is an independent ``space.sample``."""


@dataclass(frozen=True)
class EvolutionConfig:
    """Regularized ("aging") evolution, Real et al. 2019, run asynchronously."""

    population_size: int = 20
    """How many of the most recent successful trials stay alive; the first
    ``population_size`` proposals are random, after that each one mutates a parent."""

    sample_size: int = 5
    """Tournament size: how many population members are drawn to pick the parent (the
    best of them). Larger means greedier; 1 is random walk. Clipped to the population
    while it is still filling."""

    def __post_init__(self) -> None:
        _require(
            2 <= self.population_size <= 100_000,
            "population_size",
            "an integer in [2, 100000]",
            self.population_size,
        )
        _require(
            1 <= self.sample_size <= self.population_size,
            "sample_size",
            f"an integer in [1, population_size={self.population_size}]",
            self.sample_size,
        )


@dataclass(frozen=True)
class ReinforceConfig:
    """An autoregressive LSTM policy trained with REINFORCE (Zoph & Le 2017, as in ENAS)."""

    hidden_size: int = 64
    """Units of the single LSTM layer that reads the previous decisions."""

    embedding_size: int = 32
    """Width of the learned start token and of each decision's level embeddings."""

    learning_rate: float = 0.001
    """Adam step size. ENAS used 3.5e-4 over tens of thousands of updates; a job here
    sees a few hundred trials, so the policy has to move faster. With 1e-3 a planted
    6 x 5 problem is solved in about 300 trials; 5e-3 solves it in 50 but risks
    settling early on noisy rewards."""

    adam_beta1: float = 0.9
    """Adam's decay of the first-moment (mean gradient) estimate."""

    adam_beta2: float = 0.999
    """Adam's decay of the second-moment (squared gradient) estimate."""

    adam_epsilon: float = 1e-8
    """Added to Adam's denominator so a near-zero second moment cannot blow a step up."""

    baseline_decay: float = 0.95
    """The baseline is an exponential moving average of rewards:
    ``b <- decay * b + (1 - decay) * reward``. It starts at the first reward."""

    entropy_weight: float = 0.001
    """Bonus for the policy's entropy (summed over decisions); keeps it exploring a
    little longer. 0 turns it off."""

    grad_clip_norm: float = 5.0
    """Gradients are rescaled so their global norm is at most this; 0 turns clipping off."""

    temperature: float = 1.0
    """Logits are divided by this before the tanh; higher means a flatter policy."""

    tanh_constant: float = 2.5
    """Logits become ``tanh_constant * tanh(logits / temperature)`` so no option's
    probability collapses to 0 (ENAS used 2.5). 0 turns the clipping off."""

    batch_size: int = 1
    """How many results are collected before one policy update (their loss is averaged)."""

    failure_reward: float | None = None
    """What a failed trial teaches. ``None`` (default): nothing, it is skipped, since a
    failure says more about the infrastructure than the architecture. A number: it
    is treated as that reward, e.g. the worst reward you expect, to steer the policy
    away from configurations that fail."""

    max_pending: int = 64
    """At most this many proposals may wait for results; beyond it ``ask()`` returns
    WAIT so the policy is never far behind the results it has been told."""

    def __post_init__(self) -> None:
        _require(1 <= self.hidden_size <= 1024, "hidden_size", "an integer in [1, 1024]", self.hidden_size)
        _require(
            1 <= self.embedding_size <= 1024, "embedding_size", "an integer in [1, 1024]", self.embedding_size
        )
        _require(_positive(self.learning_rate), "learning_rate", "a number > 0", self.learning_rate)
        for name in ("adam_beta1", "adam_beta2", "baseline_decay"):
            value = getattr(self, name)
            _require(0.0 <= value < 1.0, name, "a number in [0, 1)", value)
        _require(_positive(self.adam_epsilon), "adam_epsilon", "a number > 0", self.adam_epsilon)
        _require(_nonnegative(self.entropy_weight), "entropy_weight", "a number >= 0", self.entropy_weight)
        _require(_nonnegative(self.grad_clip_norm), "grad_clip_norm", "a number >= 0", self.grad_clip_norm)
        _require(_positive(self.temperature), "temperature", "a number > 0", self.temperature)
        _require(_nonnegative(self.tanh_constant), "tanh_constant", "a number >= 0", self.tanh_constant)
        _require(1 <= self.batch_size <= 1024, "batch_size", "an integer in [1, 1024]", self.batch_size)
        _require(
            self.failure_reward is None or math.isfinite(self.failure_reward),
            "failure_reward",
            "null or a finite number",
            self.failure_reward,
        )
        _require(self.max_pending >= 1, "max_pending", "an integer >= 1", self.max_pending)


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _nonnegative(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def _require(ok: bool, option: str, expected: str, value: object) -> None:
    if not ok:
        raise StrategyError(f"option {option!r} must be {expected}, got {value!r}")


#: The most ``whole_space_limit`` may say (the controller also caps the one-hot rows it keeps
#: for a whole-space pick, whatever the limit).
_WHOLE_SPACE_LIMIT = 1 << 20


@dataclass(frozen=True)
class ModelBasedConfig:
    """Model-based REINFORCE: a per-decision softmax policy proposes candidates, an ensemble
    of small MLPs trained on the results so far picks which one to try (see
    :mod:`controller.model_based`)."""

    initial_trials: int = 30
    """Results to collect before the reward model picks every proposal; until then proposals
    are draws from the (at first uniform) policy, but see ``interleave_from``. On
    NAS-Bench-201 30 beat 10, 15 and 20: a model that starts from a broader sample is less
    often drawn into a good but not the best region."""

    interleave_from: int | None = 10
    """From this many results on, until ``initial_trials``, every second proposal is the reward
    model's pick instead of a policy draw (``None``: none is). The model's early picks find good
    cells sooner; the draws between them keep its training data broad. On NAS-Bench-201 (100
    seeds) 10 cut the queries to match Optuna's 100-query score from 55/52/52 to 51/47/46
    (CIFAR-10/100/ImageNet16) at about the same final score; 8, 12 and 16 did worse. In a
    warm-started job the model takes every second proposal from the first one on."""

    policy_candidates: int = 100
    """Candidates drawn from the policy for each proposal."""

    mutation_candidates: int = 300
    """Candidates made for each proposal by mutating one of the best ``parents`` trials."""

    parents: int = 20
    """How many of the best trials so far the mutations start from."""

    whole_space_limit: int = 16_384
    """In a space of at most this many configurations (NAS-Bench-201's cell has 15,625) some of
    the reward model's picks score every configuration not proposed yet, instead of the policy
    draws and mutations (0: never). Mutations and policy draws stay close to what the search
    has seen; on NAS-Bench-201 about one run in seven settles in a basin four decisions from
    the best cell, and only a candidate that far away gets it out. Such a pick costs about
    0.6 ms per 1,000 configurations here (10 ms for NAS-Bench-201's), so the default keeps a
    proposal under 20 ms."""

    whole_space_from: int = 30
    """Results before the whole space is scored. Earlier, the model's Thompson draws over
    15,625 cells pick too many uncertain cells while it knows little: scoring the whole space
    for every model pick from the 10th result on (harness, seeds 0-99) gave 88.95 / 60.61 on
    CIFAR-10 / CIFAR-100 but reached Optuna's score at query 51 / 68 (without it: 51 / 47)."""

    whole_space_every: int = 2
    """From ``whole_space_from`` results on, every this-many-th proposal (counted in
    proposals) is picked from the whole space, the others from policy draws and mutations,
    which keep refining the best cells found. On NAS-Bench-201 (harness, seeds 0-199)
    every second proposal lifted the 100-query test accuracy of the pick from 88.88 / 60.54 /
    37.80 to 88.90 / 60.58 / 37.90 (CIFAR-10 / CIFAR-100 / ImageNet16-120), at about the same
    queries to match Optuna's 100-query score (52 / 55 / 45 against 54 / 54 / 46)."""

    double_mutation: float = 0.5
    """Probability that a mutation moves a second decision as well."""

    canonical_forms: bool = True
    """Use the space's canonical form, where it names one (``SearchSpace.canonical``): the
    reward model sees each configuration's form, and a network already proposed under
    another name is proposed again only when no new network is left. False treats every
    configuration as a network of its own. On NAS-Bench-201 the forms cut the queries to
    Optuna's 100-query score from 51 / 55 to 48 / 44 (CIFAR-10 / CIFAR-100)."""

    acquisition: str = "thompson"
    """How the ensemble scores a candidate: ``"thompson"``, a draw from
    N(mean, (``exploration`` * std)^2) of the members' predictions; ``"ucb"``,
    mean + ``exploration`` * std."""

    exploration: float = 1.0
    """How much the ensemble's spread counts: the std is multiplied by this, in the
    Thompson draw as in UCB. 0 is greedy on the mean prediction."""

    ensemble_size: int = 5
    """MLPs in the reward model; their disagreement is its uncertainty."""

    hidden_size: int = 32
    """Units per hidden layer of each MLP."""

    hidden_layers: int = 2
    """Hidden ReLU layers of each MLP."""

    model_learning_rate: float = 0.003
    """Adam step size of the reward model."""

    weight_decay: float = 0.0001
    """L2 penalty on the reward model's weights."""

    train_steps: int = 20
    """Adam steps the reward model takes after each result (incremental, so a step costs
    the same at 10 trials as at 10,000)."""

    train_batch: int = 32
    """Rows per member per step, drawn with replacement from every result so far."""

    policy_learning_rate: float = 0.05
    """Adam step size of the policy's logits."""

    baseline_decay: float = 0.9
    """The REINFORCE baseline is an exponential moving average of the rewards."""

    entropy_weight: float = 0.0
    """Bonus for the policy's entropy; 0 turns it off."""

    dream_batch: int = 32
    """After each result the policy also takes a REINFORCE step on this many of its own
    draws scored by the reward model (0 turns it off)."""

    dream_weight: float = 1.0
    """Scale of the model-scored advantages relative to real ones."""

    failure_reward: float | None = None
    """What a failed trial teaches: ``None`` skips it; a number is used as its reward."""

    warm_prior_halflife: float | None = 5.0
    """A warm start's prior (the earlier job's ranked history) fades as this job's own results
    come in: its targets are scaled by ``h / (h + own results)``, so after ``h`` results it counts
    half, and this job's own best trials take over as parents of mutations. ``None``: it never
    fades. On NAS-Bench-201 CIFAR-10 -> CIFAR-100, 5 let runs whose CIFAR-10 search had missed
    the best cell still find CIFAR-100's; 2 did no better, 10 and 20 worse."""

    fidelity_input: bool = False
    """Learn from results at every fidelity (early stopping): the reward model gets the
    result's fidelity (the share of the full training it reached) as one more input, learns
    how rewards grow along the curves, and scores candidates at fidelity 1. A stopped
    trial's low-fidelity reward then teaches what its configuration is likely to reach
    instead of counting as a final one. Jobs with ``early_stopping`` turn it on unless they
    say otherwise. The policy's REINFORCE step on real rewards uses full-fidelity results
    only (a partial reward is lower by nature, not because its configuration is worse)."""

    def __post_init__(self) -> None:
        for name in (
            "initial_trials",
            "policy_candidates",
            "mutation_candidates",
            "dream_batch",
            "train_steps",
            "whole_space_from",
        ):
            value = getattr(self, name)
            _require(0 <= value <= 100_000, name, "an integer in [0, 100000]", value)
        _require(
            self.interleave_from is None or 2 <= self.interleave_from <= 100_000,
            "interleave_from",
            "null or an integer in [2, 100000]",
            self.interleave_from,
        )
        _require(
            self.policy_candidates + self.mutation_candidates >= 1,
            "policy_candidates",
            "at least 1 together with mutation_candidates",
            self.policy_candidates,
        )
        _require(
            0 <= self.whole_space_limit <= _WHOLE_SPACE_LIMIT,
            "whole_space_limit",
            f"an integer in [0, {_WHOLE_SPACE_LIMIT}]",
            self.whole_space_limit,
        )
        _require(
            1 <= self.whole_space_every <= 100_000,
            "whole_space_every",
            "an integer in [1, 100000]",
            self.whole_space_every,
        )
        for name in ("parents", "ensemble_size", "hidden_size", "train_batch"):
            value = getattr(self, name)
            _require(1 <= value <= 4096, name, "an integer in [1, 4096]", value)
        _require(1 <= self.hidden_layers <= 8, "hidden_layers", "an integer in [1, 8]", self.hidden_layers)
        _require(
            0.0 <= self.double_mutation <= 1.0, "double_mutation", "a number in [0, 1]", self.double_mutation
        )
        _require(
            self.acquisition in ("thompson", "ucb"), "acquisition", "'thompson' or 'ucb'", self.acquisition
        )
        for name in (
            "exploration",
            "weight_decay",
            "entropy_weight",
            "dream_weight",
        ):
            value = getattr(self, name)
            _require(_nonnegative(value), name, "a number >= 0", value)
        _require(
            self.warm_prior_halflife is None or _positive(self.warm_prior_halflife),
            "warm_prior_halflife",
            "null or a number > 0",
            self.warm_prior_halflife,
        )
        for name in ("model_learning_rate", "policy_learning_rate"):
            value = getattr(self, name)
            _require(_positive(value), name, "a number > 0", value)
        _require(
            0.0 <= self.baseline_decay < 1.0, "baseline_decay", "a number in [0, 1)", self.baseline_decay
        )
        _require(
            self.failure_reward is None or math.isfinite(self.failure_reward),
            "failure_reward",
            "null or a finite number",
            self.failure_reward,
        )


@dataclass(frozen=True)
class OptunaTPEConfig:
    """Optuna's TPE sampler (``optuna_tpe``); needs the ``bench`` extra. ``None`` keeps Optuna's default."""

    n_startup_trials: int = 10
    """Proposals sampled at random before TPE models the results (Optuna's default 10)."""

    n_ei_candidates: int = 24
    """Candidates drawn from the good-results density to pick the best expected improvement from."""

    multivariate: bool | None = None
    """Model the decisions jointly. ``None``: Optuna's default (joint for one objective since Optuna 4)."""

    group: bool = False
    """Split the decisions into groups that always occur together (needs ``multivariate``)."""

    def __post_init__(self) -> None:
        _require(
            1 <= self.n_startup_trials <= 100_000,
            "n_startup_trials",
            "an integer in [1, 100000]",
            self.n_startup_trials,
        )
        _require(
            1 <= self.n_ei_candidates <= 10_000,
            "n_ei_candidates",
            "an integer in [1, 10000]",
            self.n_ei_candidates,
        )
        _require(
            not (self.group and self.multivariate is False),
            "group",
            "false when multivariate is false",
            self.group,
        )


@dataclass(frozen=True)
class OptunaTPEMultivariateConfig(OptunaTPEConfig):
    """``optuna_tpe_mv``: TPE with ``multivariate=True, group=True``."""

    multivariate: bool | None = True
    group: bool = True


@dataclass(frozen=True)
class KerasTunerBOConfig:
    """KerasTuner's ``BayesianOptimizationOracle`` (a Gaussian process over the decisions)."""

    num_initial_points: int | None = None
    """Random proposals before the GP is used; ``None``: KerasTuner's default, 3 per decision."""

    alpha: float = 1e-4
    """Noise added to the GP kernel's diagonal (KerasTuner's default)."""

    beta: float = 2.6
    """Exploration weight of the upper-confidence-bound acquisition (KerasTuner's default)."""

    def __post_init__(self) -> None:
        _require(
            self.num_initial_points is None or self.num_initial_points >= 1,
            "num_initial_points",
            "null or an integer >= 1",
            self.num_initial_points,
        )
        _require(_positive(self.alpha), "alpha", "a number > 0", self.alpha)
        _require(_nonnegative(self.beta), "beta", "a number >= 0", self.beta)
