"""The REINFORCE controller's policy: an autoregressive LSTM written with raw TensorFlow ops.

No Keras: the weights and Adam's moments are plain ``tf.Variable`` objects kept in
dicts by name, so saving and restoring them is a loop over arrays. The network
(Zoph & Le 2017, as in ENAS) emits one decision per step:

* step 0 reads a learned start embedding; step ``i > 0`` reads the embedding of the
  level chosen at step ``i - 1`` (one embedding table per decision);
* one LSTM cell carries the state from step to step;
* decision ``i`` has its own softmax head over its ``cardinalities[i]`` levels, with
  logits ``tanh_constant * tanh(logits / temperature)`` so no level ever dies.

The graph code (:class:`_Network`) holds no variables: the ``tf.function`` s take them
as arguments, so they are traced once per process for each (space shape, config)
pair and shared by every policy of that shape. Tracing the update costs over a
second; a call to it costs about two milliseconds.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from controller.config import ReinforceConfig

#: Initial weights are uniform in [-INIT_RANGE, INIT_RANGE] (as in ENAS); biases start at 0.
INIT_RANGE = 0.1


Variables = dict[str, tf.Variable]


class LstmPolicy:
    """The policy's variables (weights and Adam's moments) and the calls that use them."""

    def __init__(self, cardinalities: Sequence[int], config: ReinforceConfig, seed: int | None) -> None:
        self.cardinalities = tuple(int(k) for k in cardinalities)
        self.config = config
        hidden, embed = config.hidden_size, config.embedding_size
        init = np.random.default_rng(seed)

        def uniform(*shape: int) -> np.ndarray:
            return init.uniform(-INIT_RANGE, INIT_RANGE, size=shape).astype(np.float32)

        initial: dict[str, np.ndarray] = {
            "lstm/kernel": uniform(embed + hidden, 4 * hidden),
            "lstm/bias": np.zeros(4 * hidden, np.float32),
            "start": uniform(1, embed),
        }
        # the last decision's choice is never fed back, so it needs no embedding table
        for i, levels in enumerate(self.cardinalities[:-1]):
            initial[f"embedding/{i}"] = uniform(levels, embed)
        for i, levels in enumerate(self.cardinalities):
            initial[f"head/{i}/kernel"] = uniform(hidden, levels)
            initial[f"head/{i}/bias"] = np.zeros(levels, np.float32)

        self.weights: Variables = {name: tf.Variable(value, name=name) for name, value in initial.items()}
        self.adam_m: Variables = {name: tf.Variable(np.zeros_like(v)) for name, v in initial.items()}
        self.adam_v: Variables = {name: tf.Variable(np.zeros_like(v)) for name, v in initial.items()}
        self.adam_step = tf.Variable(0.0, dtype=tf.float32)
        self._network = _network(self.cardinalities, config)

    def sample(self, uniforms: Sequence[float]) -> list[int]:
        """One level index per decision, drawn by inverse CDF from the given U[0, 1) numbers.

        The caller supplies the randomness, so its own seeded RNG decides the draw.
        """
        actions = self._network.sample(self.weights, tf.constant(uniforms, tf.float32, [len(uniforms)]))
        return [int(a) for a in actions.numpy()]

    def greedy_probabilities(self) -> list[list[float]]:
        """Each decision's distribution along the greedy path (each step fed the argmax before)."""
        return [[float(p) for p in probs.numpy()] for probs in self._network.greedy(self.weights)]

    def update(self, actions: Sequence[Sequence[int]], advantages: Sequence[float]) -> dict[str, float]:
        """One REINFORCE step on a batch of sampled level indices and their advantages."""
        metrics = self._network.update(
            self.weights,
            self.adam_m,
            self.adam_v,
            self.adam_step,
            tf.constant(actions, tf.int32),
            tf.constant(advantages, tf.float32),
        )
        return {name: float(value) for name, value in metrics.items()}

    def arrays(self) -> dict[str, np.ndarray]:
        """Weights and Adam moments as float32 arrays, keyed ``weights/…``, ``adam_m/…``, ``adam_v/…``."""
        out: dict[str, np.ndarray] = {}
        for group, variables in self._groups():
            out.update({f"{group}/{name}": v.numpy() for name, v in variables.items()})
        return out

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Assign what :meth:`arrays` returned; raise ValueError if names or shapes differ."""
        mine = self.arrays()
        if set(arrays) != set(mine):
            raise ValueError(
                f"saved policy does not fit this space: missing {sorted(set(mine) - set(arrays))}, "
                f"unexpected {sorted(set(arrays) - set(mine))}"
            )
        for key, value in arrays.items():
            if value.shape != mine[key].shape:
                raise ValueError(f"saved policy {key} has shape {value.shape}, expected {mine[key].shape}")
        for group, variables in self._groups():
            for name, variable in variables.items():
                variable.assign(arrays[f"{group}/{name}"])

    def _groups(self) -> tuple[tuple[str, Variables], ...]:
        return (("weights", self.weights), ("adam_m", self.adam_m), ("adam_v", self.adam_v))


def _network(cardinalities: tuple[int, ...], config: ReinforceConfig) -> _Network:
    # Options the graph never reads are reset, so policies that differ only in them
    # share one trace.
    graph_config = dataclasses.replace(
        config, baseline_decay=0.0, batch_size=1, failure_reward=None, max_pending=1
    )
    return _cached_network(cardinalities, graph_config)


@functools.lru_cache(maxsize=16)
def _cached_network(cardinalities: tuple[int, ...], config: ReinforceConfig) -> _Network:
    return _Network(cardinalities, config)


class _Network:
    """The graph code for one space shape and config; variables come in as arguments."""

    def __init__(self, cardinalities: tuple[int, ...], config: ReinforceConfig) -> None:
        self.cardinalities = cardinalities
        self.config = config
        # Callers always pass the same shapes (uniforms [n], actions [batch_size, n]), so
        # each function is traced once; reduce_retracing guards against a stray shape.
        self.sample = tf.function(self._sample, reduce_retracing=True)
        self.greedy = tf.function(self._greedy, reduce_retracing=True)
        self.update = tf.function(self._update, reduce_retracing=True)

    def _lstm(self, w: Variables, x: tf.Tensor, h: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        z = tf.matmul(tf.concat([x, h], axis=1), w["lstm/kernel"]) + w["lstm/bias"]
        input_gate, forget_gate, candidate, output_gate = tf.split(z, 4, axis=1)
        c = tf.sigmoid(forget_gate) * c + tf.sigmoid(input_gate) * tf.tanh(candidate)
        h = tf.sigmoid(output_gate) * tf.tanh(c)
        return h, c

    def _logits(self, w: Variables, i: int, h: tf.Tensor) -> tf.Tensor:
        logits = (tf.matmul(h, w[f"head/{i}/kernel"]) + w[f"head/{i}/bias"]) / self.config.temperature
        if self.config.tanh_constant > 0:
            logits = self.config.tanh_constant * tf.tanh(logits)
        return logits

    def _start(self, w: Variables, batch: tf.Tensor | int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        zeros = tf.zeros([batch, self.config.hidden_size])
        return tf.tile(w["start"], [batch, 1]), zeros, zeros

    def _sample(self, w: Variables, uniforms: tf.Tensor) -> tf.Tensor:
        x, h, c = self._start(w, 1)
        actions = []
        for i, levels in enumerate(self.cardinalities):
            h, c = self._lstm(w, x, h, c)
            cdf = tf.cumsum(tf.nn.softmax(self._logits(w, i, h))[0])
            # the first level whose cumulative probability passes u (scaled by cdf[-1] so
            # rounding can never leave u above the total)
            below = tf.reduce_sum(tf.cast(cdf < uniforms[i] * cdf[-1], tf.int32))
            action = tf.minimum(below, levels - 1)
            actions.append(action)
            if i + 1 < len(self.cardinalities):
                x = tf.gather(w[f"embedding/{i}"], action[None])
        return tf.stack(actions)

    def _greedy(self, w: Variables) -> tuple[tf.Tensor, ...]:
        x, h, c = self._start(w, 1)
        distributions = []
        for i in range(len(self.cardinalities)):
            h, c = self._lstm(w, x, h, c)
            probs = tf.nn.softmax(self._logits(w, i, h))[0]
            distributions.append(probs)
            if i + 1 < len(self.cardinalities):
                x = tf.gather(w[f"embedding/{i}"], tf.argmax(probs, output_type=tf.int32)[None])
        return tuple(distributions)

    def _log_prob_and_entropy(self, w: Variables, actions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Per sample: the summed log-probability of ``actions`` and the summed entropy,
        with the sampled choices fed back (teacher forcing)."""
        batch = tf.shape(actions)[0]
        x, h, c = self._start(w, batch)
        log_prob = tf.zeros([batch])
        entropy = tf.zeros([batch])
        for i in range(len(self.cardinalities)):
            h, c = self._lstm(w, x, h, c)
            log_probs = tf.nn.log_softmax(self._logits(w, i, h))
            log_prob += tf.gather(log_probs, actions[:, i], axis=1, batch_dims=1)
            entropy -= tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=1)
            if i + 1 < len(self.cardinalities):
                x = tf.gather(w[f"embedding/{i}"], actions[:, i])
        return log_prob, entropy

    def _update(
        self,
        w: Variables,
        adam_m: Variables,
        adam_v: Variables,
        adam_step: tf.Variable,
        actions: tf.Tensor,
        advantages: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        cfg = self.config
        names = list(w)
        with tf.GradientTape() as tape:
            log_prob, entropy = self._log_prob_and_entropy(w, actions)
            policy_loss = -tf.reduce_mean(advantages * log_prob)
            entropy_mean = tf.reduce_mean(entropy)
            loss = policy_loss - cfg.entropy_weight * entropy_mean
        # embedding gradients come back as IndexedSlices; Adam wants dense tensors
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, [w[n] for n in names])]
        grad_norm = tf.linalg.global_norm(grads)
        if cfg.grad_clip_norm > 0:
            grads, _ = tf.clip_by_global_norm(grads, cfg.grad_clip_norm, use_norm=grad_norm)

        # Adam, with the bias correction folded into the step size (Kingma & Ba 2015, sec. 2)
        step = adam_step.assign_add(1.0)
        lr = cfg.learning_rate * tf.sqrt(1.0 - cfg.adam_beta2**step) / (1.0 - cfg.adam_beta1**step)
        for name, grad in zip(names, grads, strict=True):
            m = adam_m[name].assign(cfg.adam_beta1 * adam_m[name] + (1.0 - cfg.adam_beta1) * grad)
            v = adam_v[name].assign(cfg.adam_beta2 * adam_v[name] + (1.0 - cfg.adam_beta2) * tf.square(grad))
            w[name].assign_sub(lr * m / (tf.sqrt(v) + cfg.adam_epsilon))
        return {"loss": loss, "policy_loss": policy_loss, "entropy": entropy_mean, "grad_norm": grad_norm}
