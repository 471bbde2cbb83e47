"""Op graphs from Keras models: costs by hand, the unrolled structure, and the benchmark cache."""

from __future__ import annotations

import keras
import pytest
from keras import layers

from l2l.placement.benchmarks import BENCHMARK_GRAPHS, benchmark_graph, graph_summary
from l2l.placement.graph import GraphError, OpGraph
from l2l.placement.keras_graph import graph_from_keras

BATCH = 3


def by_name(graph: OpGraph) -> dict[str, int]:
    return {op.name: i for i, op in enumerate(graph.ops)}


def input_names(graph: OpGraph, name: str) -> set[str]:
    op = graph.ops[by_name(graph)[name]]
    return {graph.ops[i].name for i in op.inputs}


def assert_well_formed(graph: OpGraph) -> None:
    assert len({op.name for op in graph.ops}) == len(graph)
    for i, op in enumerate(graph.ops):
        assert all(j < i for j in op.inputs), op.name


def test_sequential_dense_costs_by_hand() -> None:
    model = keras.Sequential(
        [keras.Input((8,)), layers.Dense(4, name="hidden"), layers.Dense(2, activation="relu", name="out")]
    )
    graph = graph_from_keras(model, BATCH, name="mlp")
    assert graph.name == "mlp"
    assert [op.kind for op in graph.ops] == ["Input", "Dense", "Dense"]
    source, hidden, out = graph.ops
    assert (source.flops, source.output_bytes) == (0.0, BATCH * 8 * 4)
    # a multiply-add per weight and example, plus the bias (and the relu) per output
    assert hidden.flops == 2 * BATCH * 8 * 4 + BATCH * 4
    assert out.flops == 2 * BATCH * 4 * 2 + 2 * BATCH * 2
    assert (hidden.param_bytes, out.param_bytes) == ((8 * 4 + 4) * 4, (4 * 2 + 2) * 4)
    assert (hidden.output_bytes, out.output_bytes) == (BATCH * 4 * 4, BATCH * 2 * 4)
    assert hidden.inputs == (0,) and out.inputs == (1,) and out.layer == "out"
    assert graph_from_keras(model, BATCH, dtype_bytes=2).ops[1].output_bytes == BATCH * 4 * 2


@pytest.mark.parametrize(("padding", "side"), [("same", 5), ("valid", 4)])
def test_functional_conv2d_flops_follow_strides_and_padding(padding: str, side: int) -> None:
    images = keras.Input((10, 10, 3))
    features = layers.Conv2D(5, 3, strides=2, padding=padding, name="conv")(images)
    pooled = layers.GlobalAveragePooling2D(name="pool")(features)
    graph = graph_from_keras(keras.Model(images, pooled), BATCH)
    conv = graph.ops[by_name(graph)["conv"]]
    outputs = BATCH * side * side * 5
    assert conv.flops == 2 * outputs * 3 * 3 * 3 + outputs
    assert conv.output_bytes == outputs * 4
    assert conv.param_bytes == (3 * 3 * 3 * 5 + 5) * 4
    assert graph.ops[by_name(graph)["pool"]].flops == outputs


def lstm_model(steps: int = 4, return_sequences: bool = True) -> keras.Model:
    tokens = keras.Input((steps,), dtype="int32", name="tokens")
    x = layers.Embedding(30, 6, name="embed")(tokens)
    x = layers.LSTM(5, return_sequences=True, name="lstm_a")(x)
    x = layers.LSTM(5, return_sequences=return_sequences, name="lstm_b")(x)
    return keras.Model(tokens, layers.Dense(7, name="head")(x))


def test_lstm_unrolls_one_op_per_step_reading_the_previous_step_and_its_input() -> None:
    graph = graph_from_keras(lstm_model(steps=4), BATCH)
    assert_well_formed(graph)
    assert graph.layers == ["tokens", "embed", "lstm_a", "lstm_b", "head"]
    assert len(graph) == 5 * 4
    for k in range(4):
        assert input_names(graph, f"embed/t{k}") == {f"tokens/t{k}"}
        previous = {f"lstm_b/t{k - 1}"} if k else set()
        assert input_names(graph, f"lstm_b/t{k}") == {f"lstm_a/t{k}"} | previous
        assert input_names(graph, f"head/t{k}") == {f"lstm_b/t{k}"}  # Dense on 3-D acts per step
    step = graph.ops[by_name(graph)["lstm_a/t2"]]
    assert step.kind == "LSTM step"
    assert step.flops == 2 * BATCH * 4 * 5 * (6 + 5) + BATCH * 5 * 10
    assert step.output_bytes == BATCH * 5 * 4
    # the weights sit on the layer's first op, so parameters add up to the model's
    lstm_params = [op.param_bytes for op in graph.ops if op.layer == "lstm_a"]
    assert lstm_params == [(4 * 5 * (6 + 5) + 4 * 5) * 4, 0, 0, 0]


def test_last_step_feeds_consumers_of_a_layer_without_return_sequences() -> None:
    graph = graph_from_keras(lstm_model(steps=3, return_sequences=False), BATCH)
    assert input_names(graph, "head") == {"lstm_b/t2"}


def test_without_unrolling_a_recurrent_layer_is_one_op_with_every_step_in_it() -> None:
    unrolled = graph_from_keras(lstm_model(steps=4), BATCH)
    whole = graph_from_keras(lstm_model(steps=4), BATCH, unroll=False)
    assert len(whole) == 5
    assert whole.total_flops == pytest.approx(unrolled.total_flops)
    assert sum(op.param_bytes for op in whole.ops) == sum(op.param_bytes for op in unrolled.ops)


def test_encoder_decoder_attention_reads_every_encoder_step() -> None:
    steps = 3
    source = keras.Input((steps,), dtype="int32", name="source")
    target = keras.Input((steps,), dtype="int32", name="target")
    encoded, h, c = layers.LSTM(4, return_sequences=True, return_state=True, name="encoder")(
        layers.Embedding(20, 4, name="source_embed")(source)
    )
    decoded = layers.LSTM(4, return_sequences=True, name="decoder")(
        layers.Embedding(20, 4, name="target_embed")(target), initial_state=[h, c]
    )
    context = layers.Attention(name="attention")([decoded, encoded])
    mixed = layers.Concatenate(name="mix")([decoded, context])
    attended = layers.MultiHeadAttention(2, 3, name="self_attention")(mixed, mixed)
    graph = graph_from_keras(keras.Model([source, target], attended), BATCH)
    assert_well_formed(graph)
    assert graph.layers[:3] == ["source", "source_embed", "encoder"]  # program order: encoder first
    every_encoder_step = {f"encoder/t{k}" for k in range(steps)}
    assert input_names(graph, "decoder/t0") == {"target_embed/t0", f"encoder/t{steps - 1}"}
    for k in range(steps):
        assert input_names(graph, f"attention/t{k}") == every_encoder_step | {f"decoder/t{k}"}
        assert input_names(graph, f"mix/t{k}") == {f"decoder/t{k}", f"attention/t{k}"}
        # self-attention: the query goes step by step, the value is read whole
        assert input_names(graph, f"self_attention/t{k}") == {f"mix/t{j}" for j in range(steps)}
    query_pairs = BATCH * steps * steps
    attention = graph.ops[by_name(graph)["attention/t0"]]
    scores, softmax, weighted_sum = 2 * query_pairs * 4, 5 * query_pairs, 2 * query_pairs * 4
    assert attention.flops * steps == pytest.approx(scores + softmax + weighted_sum)


def test_bidirectional_runs_both_directions_and_merges_them_per_step() -> None:
    steps = 3
    sequence = keras.Input((steps, 2), name="sequence")
    both = layers.Bidirectional(layers.GRU(4, return_sequences=True), name="bi")(sequence)
    graph = graph_from_keras(keras.Model(sequence, layers.Dense(1, name="head")(both)), BATCH)
    assert_well_formed(graph)
    assert input_names(graph, "bi/fwd/t1") == {"sequence/t1", "bi/fwd/t0"}
    assert input_names(graph, "bi/bwd/t1") == {"sequence/t1", "bi/bwd/t2"}
    assert input_names(graph, "head/t1") == {"bi/fwd/t1", "bi/bwd/t1"}


def test_a_layer_reducing_over_time_reads_every_step() -> None:
    tokens = keras.Input((4,), dtype="int32")
    x = layers.LSTM(3, return_sequences=True, name="lstm")(layers.Embedding(10, 3)(tokens))
    graph = graph_from_keras(keras.Model(tokens, layers.GlobalAveragePooling1D(name="mean")(x)), BATCH)
    assert input_names(graph, "mean") == {f"lstm/t{k}" for k in range(4)}


def test_inputs_not_feeding_a_recurrence_stay_whole() -> None:
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    pooled = layers.GlobalAveragePooling1D()(layers.Embedding(10, 3, name="embed")(tokens))
    graph = graph_from_keras(keras.Model(tokens, pooled), BATCH)
    assert [op.name for op in graph.ops][:2] == ["tokens", "embed"]


class Doubling(layers.Layer):
    """A layer the estimator has never heard of."""

    def call(self, x):
        return x * 2.0


def test_nested_models_shared_layers_and_unknown_layers_do_not_crash() -> None:
    inner = keras.Sequential([keras.Input((8,)), layers.Dense(4), layers.Dense(8)], name="inner")
    images = keras.Input((8,), name="x")
    x = inner(images)
    x = Doubling(name="double")(x)
    x = inner(x)  # called twice: the second call holds no weights
    x = keras.ops.add(x, x)
    graph = graph_from_keras(keras.Model(images, x), BATCH)
    assert_well_formed(graph)
    names = [op.name for op in graph.ops]
    assert names[:4] == ["x", "inner", "double", "inner/call1"]
    first, second = graph.ops[1], graph.ops[3]
    assert first.flops == second.flops == (2 * BATCH * 8 * 4 + BATCH * 4) + (2 * BATCH * 4 * 8 + BATCH * 8)
    assert first.param_bytes == (8 * 4 + 4 + 4 * 8 + 8) * 4 and second.param_bytes == 0
    assert second.layer == "inner"
    assert graph.ops[2].flops == BATCH * 8  # unknown layer: one FLOP per output element


def test_subclassed_models_have_no_graph_to_walk() -> None:
    class Subclassed(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense = layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model(keras.ops.zeros((1, 3)))
    with pytest.raises(GraphError, match="symbolic graph"):
        graph_from_keras(model, BATCH)


def test_json_round_trip_keeps_the_graph() -> None:
    graph = graph_from_keras(lstm_model(steps=3), BATCH)
    assert OpGraph.from_json(graph.to_json()) == graph


def test_benchmark_graph_builds_a_small_nmt_and_caches_it(tmp_path, monkeypatch) -> None:
    assert set(BENCHMARK_GRAPHS) == {"inception_v3", "resnet50", "nasnet", "rnnlm", "nmt"}
    sizes = {"layers": 2, "seq_len": 3, "hidden": 8, "vocab": 20, "batch_size": 2}
    graph = benchmark_graph("nmt", cache_dir=tmp_path, **sizes)
    assert_well_formed(graph)
    # per step: encoder input, embedding, 2 LSTMs; decoder input, embedding, LSTM 1,
    # attention, concat, LSTM 2, softmax
    assert len(graph) == 11 * 3
    assert input_names(graph, "decoder_1/t0") == {"decoder_embedding/t0", "encoder_2/t2"}
    assert len(list(tmp_path.glob("nmt-*.json"))) == 1

    def no_building(*args, **kwargs):
        raise AssertionError("a cached graph must not be rebuilt")

    monkeypatch.setattr("l2l.placement.benchmarks._build", no_building)
    assert benchmark_graph("nmt", cache_dir=tmp_path, **sizes) == graph
    summary = graph_summary(graph)
    assert summary["ops"] == 33 and summary["layers"] == 11
    assert summary["gflops"] == round(graph.total_flops / 1e9, 2)
    with pytest.raises(ValueError, match="no size"):
        benchmark_graph("nmt", depth=3)
    with pytest.raises(ValueError, match="unknown benchmark"):
        benchmark_graph("alexnet")
