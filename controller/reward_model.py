"""A small reward model for model-based search: an ensemble of MLPs in numpy.

Every member is a ``layers``-deep ReLU network with a linear output, trained by Adam
on squared error. The members share nothing but the data: each starts from its own
random weights and draws its own minibatches, and their disagreement is the
uncertainty the acquisition function uses.

Training is incremental: :meth:`MlpEnsemble.train` takes a few Adam steps on the
data it is given and keeps the weights, so a search can refresh the model after
every result at a cost that does not grow with the number of trials. The member
axis is a batch axis of every array, so one step updates all members at once.

Everything is float32 and comes out of :meth:`MlpEnsemble.arrays`, weights and Adam's
moments alike, so saving the arrays (and the step counter) restores the model exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

_ADAM_BETA1, _ADAM_BETA2, _ADAM_EPSILON = 0.9, 0.999, 1e-8
_TINY = np.float32(1e-30)
_PREDICT_BLOCK = 1024


class MlpEnsemble:
    """``members`` MLPs ``inputs -> hidden (x layers) -> 1`` with their Adam state.

    The weights, and Adam's two moments, each live in one flat float32 vector; the
    per-layer arrays are views into it, so an Adam step is a handful of vector ops
    however many layers there are.
    """

    def __init__(
        self,
        inputs: int,
        hidden: int,
        layers: int,
        members: int,
        learning_rate: float,
        weight_decay: float,
        rng: np.random.Generator,
    ) -> None:
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.members = members
        self.num_layers = layers + 1
        self.step = 0
        widths = [inputs] + [hidden] * layers + [1]
        self.shapes: dict[str, tuple[int, ...]] = {}
        for layer, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            self.shapes[f"w{layer}"] = (members, fan_in, fan_out)
            self.shapes[f"b{layer}"] = (members, 1, fan_out)
        size = sum(int(np.prod(shape)) for shape in self.shapes.values())
        self.params = np.zeros(size, np.float32)
        self.moment1 = np.zeros(size, np.float32)
        self.moment2 = np.zeros(size, np.float32)
        self._grad = np.zeros(size, np.float32)
        self.weights = self._views(self.params)
        self._grads = self._views(self._grad)
        for name, shape in self.shapes.items():
            if name.startswith("w"):  # He initialisation for the ReLU layers; biases start at 0
                self.weights[name][...] = rng.standard_normal(shape) * np.sqrt(2.0 / shape[1])

    def _views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        views, start = {}, 0
        for name, shape in self.shapes.items():
            size = int(np.prod(shape))
            views[name] = flat[start : start + size].reshape(shape)
            start += size
        return views

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Each member's prediction for the rows of ``x`` (``n x inputs``): shape ``members x n``."""
        x = x.astype(np.float32, copy=False)
        out = np.empty((self.members, len(x)), np.float32)
        # in blocks of rows whose activations stay in cache, written into two buffers made
        # once per call: scoring a whole space of 15,625 configurations this way takes half
        # the time of one piece, whose temporaries are fresh memory (page faults) every time
        rows = min(len(x), _PREDICT_BLOCK)
        buffers = [np.empty((self.members, rows, self.shapes["w0"][2]), np.float32) for _ in range(2)]
        last = self.num_layers - 1
        for start in range(0, len(x), _PREDICT_BLOCK):
            h = x[start : start + _PREDICT_BLOCK]
            count = len(h)
            for layer in range(last):
                h = np.matmul(h, self.weights[f"w{layer}"], out=buffers[layer % 2][:, :count])
                h += self.weights[f"b{layer}"]
                np.maximum(h, 0.0, out=h)
            out[:, start : start + _PREDICT_BLOCK] = (
                h @ self.weights[f"w{last}"] + self.weights[f"b{last}"]
            )[..., 0]
        return out

    def train(self, x: np.ndarray, y: np.ndarray, steps: int, batch: int, rng: np.random.Generator) -> float:
        """``steps`` Adam steps, each member on its own minibatch of ``batch`` rows drawn
        with replacement from ``(x, y)``; returns the mean squared error of the last step."""
        loss = 0.0
        x = x.astype(np.float32)
        y = y.astype(np.float32)
        for _ in range(steps):
            rows = rng.integers(0, len(x), size=(self.members, batch))
            loss = self._step(x[rows], y[rows])
        return loss

    def _step(self, x: np.ndarray, y: np.ndarray) -> float:
        # forward, keeping each layer's input
        inputs, h = [], x
        for layer in range(self.num_layers):
            inputs.append(h)
            h = h @ self.weights[f"w{layer}"] + self.weights[f"b{layer}"]
            if layer < self.num_layers - 1:
                h = np.maximum(h, 0.0)
        error = h[..., 0] - y  # members x batch
        grad = (2.0 / y.shape[1]) * error[..., None]
        for layer in reversed(range(self.num_layers)):
            weight = self.weights[f"w{layer}"]
            np.matmul(inputs[layer].transpose(0, 2, 1), grad, out=self._grads[f"w{layer}"])
            self._grads[f"b{layer}"][...] = grad.sum(axis=1, keepdims=True)
            if layer:
                grad = (grad @ weight.transpose(0, 2, 1)) * (inputs[layer] > 0)
        g = self._grad + self.weight_decay * self.params
        self.step += 1
        self.moment1 *= _ADAM_BETA1
        self.moment1 += (1.0 - _ADAM_BETA1) * g
        self.moment2 *= _ADAM_BETA2
        self.moment2 += (1.0 - _ADAM_BETA2) * g * g
        # a weight whose gradient stays 0 (a dead unit) has moments that decay into float32's
        # subnormal range, where arithmetic is many times slower: flush them to 0
        self.moment1[np.abs(self.moment1) < _TINY] = 0.0
        self.moment2[self.moment2 < _TINY] = 0.0
        rate = self.learning_rate * np.sqrt(1.0 - _ADAM_BETA2**self.step) / (1.0 - _ADAM_BETA1**self.step)
        self.params -= np.float32(rate) * self.moment1 / (np.sqrt(self.moment2) + np.float32(_ADAM_EPSILON))
        return float(np.mean(error * error))

    def add_inputs(self, count: int) -> None:
        """Take ``count`` more inputs, after the others, with zero weights and zero Adam moments:
        every prediction stays what it was until training moves the new weights."""
        if count <= 0:
            return
        old = {name: self._views(flat) for name, flat in self.arrays().items()}
        members, fan_in, fan_out = self.shapes["w0"]
        self.shapes["w0"] = (members, fan_in + count, fan_out)
        size = sum(int(np.prod(shape)) for shape in self.shapes.values())
        for name in ("params", "moment1", "moment2"):
            flat = np.zeros(size, np.float32)
            for layer, view in self._views(flat).items():
                source = old[name][layer]
                view[:, : source.shape[1]] = source
            setattr(self, name, flat)
        self._grad = np.zeros(size, np.float32)
        self.weights = self._views(self.params)
        self._grads = self._views(self._grad)

    def arrays(self) -> dict[str, np.ndarray]:
        """What :meth:`load` needs besides the step counter: weights and Adam's moments."""
        return {"params": self.params, "moment1": self.moment1, "moment2": self.moment2}

    def load(self, arrays: Mapping[str, np.ndarray], step: int) -> None:
        """Restore arrays saved from a model of the same shape; raises ValueError otherwise."""
        if set(arrays) != {"params", "moment1", "moment2"} or any(
            np.shape(array) != self.params.shape for array in arrays.values()
        ):
            raise ValueError("the saved reward model does not fit this space and config")
        self.params[...] = arrays["params"]
        self.moment1[...] = arrays["moment1"]
        self.moment2[...] = arrays["moment2"]
        self.step = int(step)
