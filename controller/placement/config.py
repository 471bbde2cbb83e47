"""Options of the placement strategies, one dataclass each (a docstring per field)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RandomPlacementConfig:
    """Uniformly random devices; no options."""


@dataclass(frozen=True)
class HierarchicalConfig:
    """The hierarchical planner of Mirhoseini et al. 2018: a grouper puts ops into groups, a
    sequence-to-sequence placer with attention puts groups on devices; both are trained
    together with REINFORCE on ``-sqrt(step time)``."""

    groups: int = 64
    """Groups the grouper may use; the placer decodes one device per group."""

    hidden_size: int = 64
    """Width of the grouper's op embeddings and of the placer's LSTMs."""

    message_passing: int = 2
    """Rounds in which each op's embedding mixes in its inputs' and consumers' (graph structure)."""

    batch_size: int = 32
    """Placements sampled per policy update; their mean reward is the update's baseline."""

    learning_rate: float = 0.003
    """Adam step size."""

    entropy_weight: float = 0.01
    """Bonus for the entropy of both policies; keeps them exploring."""

    grad_clip_norm: float = 1.0
    """Gradients are rescaled so their global norm is at most this; 0 turns clipping off."""

    try_hints: bool = True
    """Propose the space's cheap hints (one device, expert, METIS) before sampling the policy."""

    start_from_baseline: bool = True
    """Before REINFORCE, fit the policy to the best of the cheap baselines (single device,
    expert, METIS) by maximum likelihood, so learning starts from the placement a person
    would pick and improves on it (as a person would start from their own split)."""

    imitation_steps: int = 150
    """Maximum-likelihood steps of that start."""

    xla: bool = True
    """Compile the policy with XLA: faster updates, but a compile of its own for every new search
    (minutes on a loaded 2-core host); off for short searches such as the benchmark's."""

    polish_after: int = 0
    """After this many proposals (hints and policy samples together), stop sampling the policy
    and polish the best placement seen with local search: rounds of ``polish_batch`` neighbour
    moves (a layer, a run of a layer's ops, one op), simulated annealing on the step time.
    0 never polishes (pure REINFORCE)."""

    polish_batch: int = 16
    """Neighbours proposed per local-search round; the best of them may replace the current."""

    polish_temperature: float = 0.02
    """Starting annealing temperature (relative step-time loss accepted with probability 1/e);
    it falls by ``polish_cooling`` every round."""

    polish_cooling: float = 0.97
    """Factor on the temperature after each local-search round."""

