"""The hierarchical placement policy (Mirhoseini et al. 2018) in raw TensorFlow ops.

Grouper: each op's features go through a small network with a few rounds of message
passing over the graph's edges (so an op's embedding knows its neighbourhood), then a
softmax over ``groups``. Placer: the groups, embedded as the mean of their ops'
embeddings plus their size and share of the compute, are read by an LSTM encoder; an LSTM
decoder with additive attention over the encoder's outputs picks one device per group,
each choice conditioned on the previous one. A placement is ``device[group[op]]``.

Everything is compiled with XLA (``jit_compile``); sampling uses stateless random ops fed
with seeds drawn from the strategy's own RNG, so a seed gives the same placements.
Nothing here depends on the graph's size: weights trained on one graph place another.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

#: Logits are squashed to c * tanh(x) so no choice's probability collapses to exactly 0 (as in ENAS),
#: but with room to become near-certain: a placement of 1,000 ops cannot afford a 1% stray rate.
GROUP_LOGIT_LIMIT = 10.0
DEVICE_LOGIT_LIMIT = 6.0


class PlacementPolicy:
    def __init__(
        self,
        n_features: int,
        groups: int,
        devices: int,
        hidden: int,
        rounds: int,
        seed: int,
        *,
        xla: bool = True,
    ) -> None:
        """``xla``: compile sampling and updates with XLA (faster steps, a compile of minutes on a
        loaded host for every new policy); off, plain TensorFlow graphs that build in seconds."""
        self.groups, self.devices, self.hidden, self.rounds = groups, devices, hidden, rounds
        rng = np.random.default_rng(seed)

        def weight(*shape: int, scale: float = 1.0) -> tf.Variable:
            limit = scale * np.sqrt(6.0 / (shape[0] + shape[-1]))
            return tf.Variable(rng.uniform(-limit, limit, size=shape).astype(np.float32))

        def zeros(*shape: int) -> tf.Variable:
            return tf.Variable(np.zeros(shape, np.float32))

        h = hidden
        self.variables: dict[str, tf.Variable] = {
            "embed_w": weight(n_features, h),
            "embed_b": zeros(h),
            # output layers start small: the first samples spread over every group and device
            "group_w": weight(h, groups, scale=0.05),
            "group_b": zeros(groups),
            "group_embed_w": weight(h + 2, h),
            "group_embed_b": zeros(h),
            "encoder_w": weight(2 * h, 4 * h),
            "encoder_b": zeros(4 * h),
            "decoder_w": weight(3 * h, 4 * h),
            "decoder_b": zeros(4 * h),
            "device_embed": weight(devices + 1, h),
            "attend_encoder": weight(h, h),
            "attend_decoder": weight(h, h),
            "attend_v": weight(h, 1),
            "device_w": weight(2 * h, devices, scale=0.05),
            "device_b": zeros(devices),
        }
        for r in range(rounds):
            self.variables[f"pass{r}_self"] = weight(h, h)
            self.variables[f"pass{r}_in"] = weight(h, h)
            self.variables[f"pass{r}_out"] = weight(h, h)
            self.variables[f"pass{r}_b"] = zeros(h)
        self.names = sorted(self.variables)
        self.trainable = [self.variables[name] for name in self.names]
        self._adam_m = [tf.Variable(tf.zeros_like(v)) for v in self.trainable]
        self._adam_v = [tf.Variable(tf.zeros_like(v)) for v in self.trainable]
        self._adam_t = tf.Variable(0.0)
        self._sample = tf.function(self._sample_impl, jit_compile=xla, reduce_retracing=True)
        self._update = tf.function(self._update_impl, jit_compile=xla, reduce_retracing=True)

    # ----------------------------------------------------------------- the graph side

    def graph_inputs(self, features: np.ndarray, inputs: list[tuple[int, ...]], flops: np.ndarray) -> dict:
        """Per-graph constants: features, mean-over-inputs and mean-over-consumers matrices."""
        n = len(features)
        into = np.zeros((n, n), np.float32)  # dense: graphs are ~1,000 ops, XLA likes dense
        for i, sources in enumerate(inputs):
            for j in sources:
                into[i, j] = 1.0
        out_of = into.T.copy()
        into /= np.maximum(into.sum(axis=1, keepdims=True), 1.0)
        out_of /= np.maximum(out_of.sum(axis=1, keepdims=True), 1.0)
        share = flops / flops.sum() if flops.sum() > 0 else np.full(n, 1.0 / n)
        return {
            "features": tf.constant(features, tf.float32),
            "into": tf.constant(into),
            "out_of": tf.constant(out_of),
            "flops_share": tf.constant(share.astype(np.float32)),
            "log_n": tf.constant(np.float32(np.log(n + 1.0))),
        }

    def _op_embeddings(self, g: dict) -> tf.Tensor:
        v = self.variables
        h = tf.tanh(g["features"] @ v["embed_w"] + v["embed_b"])
        for r in range(self.rounds):
            h = tf.tanh(
                h @ v[f"pass{r}_self"]
                + (g["into"] @ h) @ v[f"pass{r}_in"]
                + (g["out_of"] @ h) @ v[f"pass{r}_out"]
                + v[f"pass{r}_b"]
            )
        return h

    def _group_logits(self, h: tf.Tensor) -> tf.Tensor:
        return GROUP_LOGIT_LIMIT * tf.tanh(h @ self.variables["group_w"] + self.variables["group_b"])

    def _group_embeddings(self, h: tf.Tensor, groups: tf.Tensor, g: dict) -> tuple[tf.Tensor, tf.Tensor]:
        v = self.variables
        members = tf.one_hot(groups, self.groups)  # (K, n, G)
        count = tf.reduce_sum(members, axis=1)  # (K, G)
        mean = tf.einsum("kng,nh->kgh", members, h) / tf.maximum(count, 1.0)[:, :, None]
        share = tf.einsum("kng,n->kg", members, g["flops_share"])
        size = tf.math.log1p(count) / g["log_n"]
        extra = tf.stack([size, share], axis=-1)
        embedded = tf.tanh(tf.concat([mean, extra], axis=-1) @ v["group_embed_w"] + v["group_embed_b"])
        return embedded, count

    @staticmethod
    def _lstm(x: tf.Tensor, state: tuple[tf.Tensor, tf.Tensor], w: tf.Variable, b: tf.Variable):
        h, c = state
        gates = tf.concat([x, h], axis=-1) @ w + b
        i, f, o, u = tf.split(gates, 4, axis=-1)
        c = tf.sigmoid(f + 1.0) * c + tf.sigmoid(i) * tf.tanh(u)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, (h, c)

    def _decode(self, embedded: tf.Tensor, devices: tf.Tensor | None, seed: tf.Tensor | None):
        """Run the placer; with ``devices`` given, score them (teacher forcing), else sample."""
        v = self.variables
        batch = tf.shape(embedded)[0]
        zero = tf.zeros([batch, self.hidden])
        # symbolic loops (not Python-unrolled): the compiled program stays small whatever ``groups`` is
        state = (zero, zero)
        outputs = tf.TensorArray(tf.float32, size=self.groups)
        for step in tf.range(self.groups):
            out, state = self._lstm(embedded[:, step], state, v["encoder_w"], v["encoder_b"])
            outputs = outputs.write(step, out)
        encoded = tf.transpose(outputs.stack(), [1, 0, 2])  # (K, G, H)
        keys = encoded @ v["attend_encoder"]
        previous = tf.fill([batch], self.devices)  # the start token
        chosen = tf.TensorArray(tf.int32, size=self.groups)
        log_probs = tf.TensorArray(tf.float32, size=self.groups)
        entropies = tf.TensorArray(tf.float32, size=self.groups)
        for step in tf.range(self.groups):
            x = tf.concat([tf.gather(v["device_embed"], previous), embedded[:, step]], axis=-1)
            out, state = self._lstm(x, state, v["decoder_w"], v["decoder_b"])
            scores = tf.squeeze(tf.tanh(keys + (out @ v["attend_decoder"])[:, None, :]) @ v["attend_v"], -1)
            context = tf.einsum("kg,kgh->kh", tf.nn.softmax(scores), encoded)
            logits = DEVICE_LOGIT_LIMIT * tf.tanh(
                tf.concat([out, context], axis=-1) @ v["device_w"] + v["device_b"]
            )
            log_p = tf.nn.log_softmax(logits)
            if devices is None:
                pick = tf.cast(
                    tf.squeeze(tf.random.stateless_categorical(logits, 1, seed + step), -1), tf.int32
                )
            else:
                pick = devices[:, step]
            chosen = chosen.write(step, pick)
            log_probs = log_probs.write(step, tf.gather(log_p, pick, batch_dims=1))
            entropies = entropies.write(step, -tf.reduce_sum(tf.exp(log_p) * log_p, axis=-1))
            previous = pick
        return (
            tf.transpose(chosen.stack()),
            tf.transpose(log_probs.stack()),
            tf.transpose(entropies.stack()),
        )

    # ----------------------------------------------------------------- compiled entry points

    def _sample_impl(self, g: dict, batch: tf.Tensor, seed: tf.Tensor):
        h = self._op_embeddings(g)
        logits = self._group_logits(h)
        groups = tf.transpose(tf.cast(tf.random.stateless_categorical(logits, batch, seed), tf.int32))
        embedded, _ = self._group_embeddings(h, groups, g)
        devices, _, _ = self._decode(embedded, None, seed + 1)
        return groups, devices

    def _log_probs(self, g: dict, groups: tf.Tensor, devices: tf.Tensor):
        h = self._op_embeddings(g)
        log_p = tf.nn.log_softmax(self._group_logits(h))  # (n, G)
        group_log_prob = tf.reduce_sum(tf.one_hot(groups, self.groups) * log_p[None], axis=[1, 2])  # (K,)
        group_entropy = tf.reduce_mean(-tf.reduce_sum(tf.exp(log_p) * log_p, axis=-1))
        embedded, count = self._group_embeddings(h, groups, g)
        _, device_log_probs, device_entropies = self._decode(embedded, devices, None)
        used = tf.cast(count > 0, tf.float32)  # an empty group's device changes nothing: no credit
        device_log_prob = tf.reduce_sum(device_log_probs * used, axis=-1)
        device_entropy = tf.reduce_sum(device_entropies * used) / tf.maximum(tf.reduce_sum(used), 1.0)
        return group_log_prob, device_log_prob, group_entropy, device_entropy

    def _update_impl(self, g, groups, devices, weights, entropy_weight, learning_rate, clip_norm):
        """One Adam step on ``-mean(weights * log p) - entropy_weight * entropy``."""
        with tf.GradientTape() as tape:
            group_lp, device_lp, group_ent, device_ent = self._log_probs(g, groups, devices)
            loss = -tf.reduce_mean(weights * (group_lp + device_lp)) - entropy_weight * (
                group_ent + device_ent
            )
        grads = tape.gradient(loss, self.trainable, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        grads = [tf.convert_to_tensor(grad) for grad in grads]  # the device embedding's are IndexedSlices
        grads, _ = tf.clip_by_global_norm(grads, tf.where(clip_norm > 0, clip_norm, 1e30))
        self._adam_t.assign_add(1.0)
        t = self._adam_t
        for var, grad, m, s in zip(self.trainable, grads, self._adam_m, self._adam_v, strict=True):
            m.assign(0.9 * m + 0.1 * grad)
            s.assign(0.999 * s + 0.001 * tf.square(grad))
            m_hat = m / (1.0 - tf.pow(0.9, t))
            s_hat = s / (1.0 - tf.pow(0.999, t))
            var.assign_sub(learning_rate * m_hat / (tf.sqrt(s_hat) + 1e-8))
        return loss

    # ----------------------------------------------------------------- what the strategy calls

    def sample(self, g: dict, batch: int, seed: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        groups, devices = self._sample(g, tf.constant(batch), tf.constant(seed, tf.int32))
        return groups.numpy(), devices.numpy()

    def update(self, g, groups, devices, weights, entropy_weight, learning_rate, clip_norm) -> float:
        return float(
            self._update(
                g,
                tf.constant(groups, tf.int32),
                tf.constant(devices, tf.int32),
                tf.constant(weights, tf.float32),
                tf.constant(entropy_weight, tf.float32),
                tf.constant(learning_rate, tf.float32),
                tf.constant(clip_norm, tf.float32),
            )
        )

    def get_state(self) -> dict[str, Any]:
        return {
            "weights": {name: self.variables[name].numpy().tolist() for name in self.names},
            "adam_m": [m.numpy().tolist() for m in self._adam_m],
            "adam_v": [s.numpy().tolist() for s in self._adam_v],
            "adam_t": float(self._adam_t.numpy()),
        }

    def set_state(self, state: dict[str, Any], optimizer: bool = True) -> None:
        for name in self.names:
            value = np.asarray(state["weights"][name], np.float32)
            if value.shape != tuple(self.variables[name].shape):
                raise ValueError(
                    f"saved policy weight {name!r} has shape {value.shape}, this policy needs "
                    f"{tuple(self.variables[name].shape)} (another number of groups or devices?)"
                )
            self.variables[name].assign(value)
        if optimizer:
            for m, saved in zip(self._adam_m, state["adam_m"], strict=True):
                m.assign(np.asarray(saved, np.float32))
            for s, saved in zip(self._adam_v, state["adam_v"], strict=True):
                s.assign(np.asarray(saved, np.float32))
            self._adam_t.assign(float(state["adam_t"]))
