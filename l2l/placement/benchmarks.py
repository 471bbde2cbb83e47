"""The placement benchmarks of Mirhoseini et al. (2017, 2018) as op graphs, built from Keras models.

``benchmark_graph(name, **overrides)`` returns the :class:`OpGraph` of one training step;
overrides change the model's size (``benchmark_graph("nmt", layers=6, seq_len=50)``), which
is how generalisation to unseen, bigger members of a family is tested. Models are built
with ``weights=None`` and nothing is downloaded. Building the image models takes seconds,
so each graph is cached as JSON under ``$L2L_GRAPH_CACHE`` (default
``~/.cache/l2l/placement-graphs``), keyed by name, the full set of sizes and
:data:`GRAPH_VERSION`; a cache hit does not import Keras.

Sizes (the defaults; each is an override):

* ``inception_v3``: InceptionV3 at 299x299x3, batch 32.
* ``resnet50``: ResNet50 at 224x224x3, batch 32.
* ``nasnet``: NASNetLarge at 331x331x3, batch 16 (``variant="mobile"``: NASNetMobile at 224).
* ``rnnlm``: Embedding(32000, 2048) -> 2 x LSTM(2048) -> Dense(32000, softmax), 32 steps,
  batch 64 (the paper's 2-layer, 2048-unit language model, batch 64).
* ``nmt``: GNMT-like encoder-decoder with attention: 4 + 4 LSTM(1024), vocabulary 32000,
  40 source and 40 target steps, batch 128 (see :func:`_nmt`).

Run ``python -m l2l.placement.benchmarks`` to print each graph's size.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from l2l.placement.graph import OpGraph

#: Bump when graph extraction or a benchmark model changes, so cached graphs are rebuilt.
GRAPH_VERSION = 2

#: Default sizes per benchmark; every key may be overridden.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "inception_v3": {"batch_size": 32, "image_size": 299},
    "resnet50": {"batch_size": 32, "image_size": 224},
    # batch 16: activations alone (~18 GiB) overflow one 16 GiB GPU, so NASNet needs model parallelism
    "nasnet": {"batch_size": 16, "image_size": None, "variant": "large"},
    "rnnlm": {"batch_size": 64, "seq_len": 32, "hidden": 2048, "vocab": 32000, "layers": 2},
    "nmt": {"batch_size": 128, "seq_len": 40, "hidden": 1024, "vocab": 32000, "layers": 4},
}
BENCHMARK_GRAPHS: tuple[str, ...] = tuple(_DEFAULTS)


#: The largest value a benchmark's integer size may take (a request's options are data, bounded).
MAX_SIZE = 1 << 20


def check_benchmark_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise ValueError unless ``options`` override only ``name``'s sizes, each with a sane value.

    A request's options are sizes, nothing else: never a keyword such as ``cache_dir``.
    """
    if name not in _DEFAULTS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARK_GRAPHS)}")
    unknown = sorted(set(options) - set(_DEFAULTS[name]))
    if unknown:
        named = ", ".join(map(repr, unknown[:10]))
        raise ValueError(f"{name} has no size {named}; it takes {', '.join(_DEFAULTS[name])}")
    for key, value in options.items():
        default = _DEFAULTS[name][key]
        if isinstance(default, str):
            if not isinstance(value, str) or len(value) > 40:
                raise ValueError(f"{key} must be a short name like {default!r}")
        elif (value is not None or default is not None) and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE
        ):
            raise ValueError(f"{key} must be a whole number from 1 to {MAX_SIZE}")


def benchmark_graph(name: str, *, cache_dir: str | Path | None = None, **overrides: Any) -> OpGraph:
    """The op graph of benchmark ``name`` with ``overrides`` of its default sizes (cached).

    ``cache_dir=""`` turns the cache off. Raises ValueError for an unknown name or size.
    """
    if name not in _DEFAULTS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARK_GRAPHS)}")
    unknown = set(overrides) - set(_DEFAULTS[name])
    if unknown:
        raise ValueError(
            f"{name} has no size {', '.join(sorted(unknown))}; it takes {', '.join(_DEFAULTS[name])}"
        )
    sizes = {**_DEFAULTS[name], **overrides}
    path = _cache_path(name, sizes, cache_dir)
    if path is not None and path.exists():
        try:
            return OpGraph.from_json(path.read_text())
        except ValueError:  # a damaged cache file is rebuilt, not trusted
            pass
    graph = _build(name, sizes)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(graph.to_json())
        partial.replace(path)  # atomic: concurrent runs never read half a file
    return graph


def graph_summary(graph: OpGraph) -> dict[str, Any]:
    """Sizes worth printing: op and layer counts, forward GFLOPs, parameter and largest tensor MB."""
    return {
        "name": graph.name,
        "ops": len(graph),
        "layers": len(graph.layers),
        "edges": sum(len(op.inputs) for op in graph.ops),
        "gflops": round(graph.total_flops / 1e9, 2),
        "param_mb": round(sum(op.param_bytes for op in graph.ops) / 1e6, 1),
        "largest_tensor_mb": round(max(op.output_bytes for op in graph.ops) / 1e6, 2),
    }


def _cache_path(name: str, sizes: dict[str, Any], cache_dir: str | Path | None) -> Path | None:
    if cache_dir is None:
        cache_dir = os.environ.get("L2L_GRAPH_CACHE") or Path.home() / ".cache" / "l2l" / "placement-graphs"
    if cache_dir == "":
        return None
    key = json.dumps({"name": name, "sizes": sizes, "version": GRAPH_VERSION}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / f"{name}-{digest}.json"


def _build(name: str, sizes: dict[str, Any]) -> OpGraph:
    from l2l.placement.keras_graph import graph_from_keras

    batch_size = int(sizes["batch_size"])
    model_sizes = {k: v for k, v in sizes.items() if k != "batch_size"}
    with _fresh_layer_names():
        model = _BUILDERS[name](**model_sizes)
    changed = {k: v for k, v in sizes.items() if v != _DEFAULTS[name][k]}
    label = name + "".join(f"-{k}{v}" for k, v in sorted(changed.items()))
    return graph_from_keras(model, batch_size, name=label)


@contextlib.contextmanager
def _fresh_layer_names() -> Iterator[None]:
    """Build with Keras' automatic layer names counting from zero, then restore the counters.

    keras.applications leave many layers unnamed ("conv2d_17"); without this the op names
    of a benchmark would depend on what the process built before it.
    """
    try:
        from keras.src.backend.common import global_state
    except ImportError:  # pragma: no cover - private module moved: names are merely less stable
        yield
        return
    saved = global_state.get_global_attribute("object_name_uids")
    global_state.set_global_attribute("object_name_uids", collections.defaultdict(int))
    try:
        yield
    finally:
        global_state.set_global_attribute("object_name_uids", saved)


def _inception_v3(image_size: int) -> Any:
    import keras

    return keras.applications.InceptionV3(weights=None, input_shape=(image_size, image_size, 3))


def _resnet50(image_size: int) -> Any:
    import keras

    return keras.applications.ResNet50(weights=None, input_shape=(image_size, image_size, 3))


def _nasnet(image_size: int | None, variant: str) -> Any:
    import keras

    if variant not in ("large", "mobile"):
        raise ValueError(f"nasnet variant must be 'large' or 'mobile', got {variant!r}")
    build, default_size = (
        (keras.applications.NASNetLarge, 331)
        if variant == "large"
        else (keras.applications.NASNetMobile, 224)
    )
    size = image_size or default_size
    return build(weights=None, input_shape=(size, size, 3))


def _rnnlm(seq_len: int, hidden: int, vocab: int, layers: int) -> Any:
    """Embedding -> ``layers`` x LSTM -> Dense(vocab, softmax) over every step."""
    import keras
    from keras import layers as kl

    tokens = keras.Input((seq_len,), dtype="int32", name="tokens")
    # Only the shapes are read, so zeros stand in for real initialisers (orthogonal is slow at 2048).
    x = kl.Embedding(vocab, hidden, embeddings_initializer="zeros", name="embedding")(tokens)
    for i in range(layers):
        x = kl.LSTM(hidden, return_sequences=True, name=f"lstm_{i + 1}", **_ZERO_RNN)(x)
    probs = kl.Dense(vocab, activation="softmax", kernel_initializer="zeros", name="softmax")(x)
    return keras.Model(tokens, probs, name="rnnlm")


def _nmt(seq_len: int, hidden: int, vocab: int, layers: int) -> Any:
    """A GNMT-like translation model (Wu et al., 2016), without residuals or a bidirectional layer.

    Encoder: embedding -> ``layers`` x LSTM. Decoder: embedding -> LSTM 1, whose initial
    state is the top encoder layer's final state -> dot-product attention (query: decoder
    layer 1, value: encoder top) -> decoder layers 2.. each reading concat(previous decoder
    layer, context) -> Dense(vocab, softmax). Source and target both have ``seq_len`` steps.
    """
    import keras
    from keras import layers as kl

    source = keras.Input((seq_len,), dtype="int32", name="source")
    target = keras.Input((seq_len,), dtype="int32", name="target")
    x = kl.Embedding(vocab, hidden, embeddings_initializer="zeros", name="encoder_embedding")(source)
    for i in range(layers - 1):
        x = kl.LSTM(hidden, return_sequences=True, name=f"encoder_{i + 1}", **_ZERO_RNN)(x)
    encoded, state_h, state_c = kl.LSTM(
        hidden, return_sequences=True, return_state=True, name=f"encoder_{layers}", **_ZERO_RNN
    )(x)
    y = kl.Embedding(vocab, hidden, embeddings_initializer="zeros", name="decoder_embedding")(target)
    y = kl.LSTM(hidden, return_sequences=True, name="decoder_1", **_ZERO_RNN)(
        y, initial_state=[state_h, state_c]
    )
    context = kl.Attention(name="attention")([y, encoded])
    for i in range(2, layers + 1):
        y = kl.Concatenate(name=f"decoder_{i}_input")([y, context])
        y = kl.LSTM(hidden, return_sequences=True, name=f"decoder_{i}", **_ZERO_RNN)(y)
    probs = kl.Dense(vocab, activation="softmax", kernel_initializer="zeros", name="softmax")(y)
    return keras.Model([source, target], probs, name="nmt")


_ZERO_RNN = {"kernel_initializer": "zeros", "recurrent_initializer": "zeros"}

_BUILDERS: dict[str, Callable[..., Any]] = {
    "inception_v3": _inception_v3,
    "resnet50": _resnet50,
    "nasnet": _nasnet,
    "rnnlm": _rnnlm,
    "nmt": _nmt,
}


if __name__ == "__main__":
    for benchmark in BENCHMARK_GRAPHS:
        started = time.perf_counter()
        summary = graph_summary(benchmark_graph(benchmark))
        seconds = time.perf_counter() - started
        print(f"{benchmark:13s} " + " ".join(f"{k}={v}" for k, v in summary.items()) + f" ({seconds:.1f}s)")
