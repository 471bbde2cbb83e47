"""The search-space registry, its spec formats and the Keras builders behind them.

Builder tests really train for an epoch on a small slice of the data; they share
datasets through module fixtures to keep the whole file within seconds.
"""

from __future__ import annotations

import csv
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from l2l.service.datasets import Dataset, load_dataset
from search_spaces import (
    SpaceError,
    batch_size_for,
    check_space_fits_data,
    check_space_spec,
    get_space,
    load_space_file,
    space_names,
)
from search_spaces.nb201 import EDGE_NAMES, OPS, arch_str, params_from_arch_str
from search_spaces.spec import DataInfo, FloatRange, IntRange, SearchSpace

REPO_ROOT = Path(__file__).resolve().parents[1]
NB201_TABLE = Path("/work/shared/data/nb201/nb201_12ep.csv")
KT_REFERENCE = "tests.kt_build_example:build"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
# Zero nodes feeding a sum with a convolution and a pooling: every kind of layer the cell uses.
MIXED_WITH_ZEROS = "|none~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"


# -- pure Python: the registry and the spec formats -------------------------------------------------


def test_importing_the_registry_loads_no_deep_learning_framework() -> None:
    code = (
        "import search_spaces, l2l.service.datasets, sys;"
        f"search_spaces.check_space_spec({{'keras_tuner': {KT_REFERENCE!r}}});"
        "search_spaces.check_space_spec('nb201_cell');"
        "l2l.service.datasets.check_dataset_spec('digits');"
        "loaded = [m for m in sys.modules if m.split('.')[0] in {'keras', 'tensorflow', 'keras_tuner'}];"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)


def test_built_in_spaces_round_trip_through_their_stored_form() -> None:
    assert space_names() == ["mlp", "nb201_cell"]
    for name in space_names():
        space = get_space(name)
        assert get_space(space.to_dict()) == space
        assert get_space(json.loads(json.dumps(space.to_dict()))) == space
        assert check_space_spec(name) == space.to_dict()
        assert check_space_spec(space.to_dict()) == space.to_dict()


def test_mlp_offers_the_documented_decisions() -> None:
    space = get_space("mlp")
    assert space.names == ("num_layers", "units", "activation", "dropout", "learning_rate", "batch_size")
    assert space.input_kinds == {"tabular", "image"}
    params = space.sample(random.Random(0))
    assert space.validate(params) == params


def test_settings_override_the_defaults_and_unknown_settings_are_refused() -> None:
    space = get_space({"name": "nb201_cell", "settings": {"channels": 16}})
    assert space.settings["channels"] == 16
    assert space.settings["cells_per_stage"] == 1
    with pytest.raises(SpaceError, match=r"no settings \['width'\]; allowed: batch_size, cells_per_stage"):
        get_space({"name": "nb201_cell", "settings": {"width": 3}})
    with pytest.raises(SpaceError, match="channels=0 .* must be a positive integer"):
        get_space({"name": "nb201_cell", "settings": {"channels": 0}})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("foo", "unknown search space 'foo'; choose one of mlp, nb201_cell, or give a template/keras_tuner"),
        ({"name": "foo"}, "unknown search space 'foo'"),
        (42, "a search space is a name or a mapping"),
        ({"settings": {}}, "needs 'name'"),
        ({"name": "mlp", "decisions": []}, "give a 'template'"),
        ({"keras_tuner": "no_colon"}, "'no_colon' is not registered on this service; registered: .*kt_ex"),
        ({"keras_tuner": "missing_pkg.models:build"}, "'missing_pkg.models:build' is not registered"),
        ({"keras_tuner": "os:system"}, "keras_tuner build function 'os:system' is not registered"),
        ({"keras_tuner": 7}, "must be the name of a registered build"),
        ({"keras_tuner": KT_REFERENCE, "decisions": []}, "takes only 'keras_tuner' and 'name'"),
        (
            {"name": "s", "builder": "no_such_module:build", "decisions": [{"name": "a", "options": [1]}]},
            "builder 'no_such_module:build' is not registered on this service",
        ),
    ],
)
def test_bad_descriptions_say_what_to_fix(spec: object, message: str) -> None:
    with pytest.raises(SpaceError, match=message):
        check_space_spec(spec)  # type: ignore[arg-type]


def test_keras_tuner_reference_is_checked_only_for_shape_and_module() -> None:
    spec = {"keras_tuner": KT_REFERENCE}
    assert check_space_spec(spec) == {"keras_tuner": KT_REFERENCE, "name": KT_REFERENCE}
    # A registered name stands for its reference.
    by_name = check_space_spec({"keras_tuner": "kt_example"})
    assert by_name == {"keras_tuner": KT_REFERENCE, "name": "kt_example"}


def test_space_must_fit_the_kind_of_data() -> None:
    check_space_fits_data(get_space("nb201_cell"), "image")
    check_space_fits_data(get_space("mlp"), "tabular")
    with pytest.raises(SpaceError, match="'nb201_cell' takes image data, but the dataset is tabular"):
        check_space_fits_data(check_space_spec("nb201_cell"), "tabular")
    check_space_fits_data(check_space_spec({"keras_tuner": KT_REFERENCE}), "tabular")


def test_batch_size_comes_from_params_then_the_fixed_values_then_the_settings() -> None:
    mlp = get_space("mlp")
    assert batch_size_for(mlp, {"batch_size": 64}) == 64
    assert batch_size_for(get_space({"name": "nb201_cell", "settings": {"batch_size": 16}}), {}) == 16
    custom = get_space({"name": "c", "template": "mlp", "decisions": [{"name": "units", "options": [8]}]})
    assert batch_size_for(custom, {"units": 8}) == 32


def test_spec_fixes_non_finite_integers_grid_levels_and_max_levels() -> None:
    with pytest.raises(SpaceError, match="must be an integer"):
        IntRange("n", 1, 10).check(float("nan"))
    wide = IntRange("n", 0, 1000, step=7, max_levels=5)
    assert all(level % 7 == 0 and 0 <= level <= 1000 for level in wide.levels())
    space = SearchSpace("s", (wide, FloatRange("lr", 1e-4, 1e-1, log=True, max_levels=3)), "m:f")
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    assert space.cardinalities[1] == 3


# -- NAS-Bench-201 arch strings -------------------------------------------------------------------


def test_nb201_decisions_sort_in_the_edge_order_of_arch_strings() -> None:
    space = get_space("nb201_cell")
    assert space.names == EDGE_NAMES == tuple(sorted(EDGE_NAMES))
    assert all(decision.levels() == OPS for decision in space.decisions)
    params = params_from_arch_str(MIXED_WITH_ZEROS)
    assert [params[name] for name in EDGE_NAMES] == [
        "none",
        "none",
        "none",
        "skip_connect",
        "nor_conv_1x1",
        "avg_pool_3x3",
    ]


def test_arch_strings_of_the_benchmark_table_round_trip() -> None:
    with NB201_TABLE.open(newline="") as handle:
        arches = [row["arch_str"] for row in csv.DictReader(handle)]
    assert len(arches) == 15625
    space = get_space("nb201_cell")
    for arch in arches[::37]:
        params = params_from_arch_str(arch)
        assert space.validate(params) == params
        assert arch_str(params) == arch


@pytest.mark.parametrize(
    "arch",
    [
        "|none~0|+|none~0|none~1|",
        "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~0|+|none~0|+|none~0|none~1|none~2|",
    ],
)
def test_malformed_arch_strings_are_refused(arch: str) -> None:
    with pytest.raises(SpaceError):
        params_from_arch_str(arch)


def test_arch_str_needs_every_edge() -> None:
    with pytest.raises(SpaceError, match="missing"):
        arch_str({"edge_1_0": "none"})


# -- custom spaces ----------------------------------------------------------------------------------

CUSTOM_MLP = {
    "name": "small-mlp",
    "template": "mlp",
    "decisions": [
        {"name": "units", "type": "choice", "options": [32, 64]},
        {"name": "num_layers", "type": "int", "low": 1, "high": 3},
        {"name": "learning_rate", "type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    ],
    "settings": {"batch_norm": True},
}

CUSTOM_NB201_YAML = """
name: convs-only
template: nb201_cell
decisions:
  - {name: edge_3_2, type: choice, options: [nor_conv_1x1, nor_conv_3x3]}
  - {name: edge_3_1, options: [none, skip_connect]}
settings:
  channels: 4
"""


def test_custom_space_from_json_searches_only_the_listed_decisions(tmp_path: Path) -> None:
    path = tmp_path / "space.json"
    path.write_text(json.dumps(CUSTOM_MLP))
    assert load_space_file(path) == CUSTOM_MLP
    space = get_space(load_space_file(path))
    assert space.name == "small-mlp"
    assert space.names == ("units", "num_layers", "learning_rate")
    assert space.builder == "search_spaces.mlp_builder:build"
    assert space.settings["batch_norm"] is True
    assert space.settings["fixed_params"] == {"activation": "relu", "dropout": 0.0, "batch_size": 32}
    assert get_space(space.to_dict()) == space
    assert check_space_spec(CUSTOM_MLP) == space.to_dict()


def test_custom_space_from_yaml_fixes_the_other_edges(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(CUSTOM_NB201_YAML)
    space = get_space(load_space_file(path))
    assert space.names == ("edge_3_2", "edge_3_1")
    assert space.input_kinds == {"image"}
    assert space.settings["channels"] == 4
    arch = arch_str({"edge_3_2": "nor_conv_1x1", "edge_3_1": "none"}, space.settings)
    assert arch == "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"template": "resnet"}, "unknown template 'resnet'; choose one of mlp, nb201_cell"),
        (
            {"decisions": [{"name": "width", "options": [1, 2]}]},
            "no decision 'width'; choose from num_layers, units, activation, dropout, learning_rate, batch_",
        ),
        ({"decisions": [{"name": "units", "options": [0, 8]}]}, r"\[0\] not allowed; .* positive integer"),
        ({"decisions": [{"name": "activation", "options": ["wobble"]}]}, "'wobble'.* not allowed"),
        ({"decisions": [{"name": "dropout", "type": "float", "low": 0.0, "high": 1.5}]}, r"\[1\.5\] not"),
        ({"decisions": [{"name": "num_layers", "type": "float", "low": 1, "high": 3}]}, "use type 'int'"),
        ({"decisions": [{"name": "num_layers", "type": "int", "low": 1.5, "high": 3}]}, "not an integer"),
        ({"decisions": []}, "needs a non-empty list 'decisions'"),
        ({"name": ""}, "needs a non-empty 'name'"),
        ({"settings": {"channels": 8}}, r"no settings \['channels'\]; allowed: batch_norm"),
        ({"extra": 1}, r"unknown keys \['extra'\]"),
    ],
)
def test_bad_custom_spaces_say_what_to_fix(change: dict[str, object], message: str) -> None:
    with pytest.raises(SpaceError, match=message):
        check_space_spec({**CUSTOM_MLP, **change})


def test_space_files_with_errors_are_named(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="cannot read search space file .*missing.yaml"):
        load_space_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(SpaceError, match="broken.yaml.* not valid JSON/YAML"):
        load_space_file(broken)
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    with pytest.raises(SpaceError, match="list.json.* must hold a mapping"):
        load_space_file(listing)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**CUSTOM_MLP, "template": "resnet"}))
    with pytest.raises(SpaceError, match="wrong.json.*unknown template"):
        load_space_file(wrong)


# -- Keras builders -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def breast_cancer() -> Dataset:
    return load_dataset("breast_cancer", seed=0)


def _train_briefly(model, data: Dataset, rows: int = 160) -> dict[str, float]:
    model.fit(data.x_train[:rows], data.y_train[:rows], epochs=1, batch_size=32, verbose=0)
    return model.evaluate(data.x_val[:64], data.y_val[:64], verbose=0, return_dict=True)


def _build(space: SearchSpace, params: dict, info: DataInfo):
    return space.load_builder()(space.validate(params), info, space.settings)


@pytest.mark.parametrize(
    ("space_name", "dataset_name"),
    [("mlp", "digits"), ("mlp", "breast_cancer"), ("nb201_cell", "digits")],
)
def test_builders_make_compiled_models_that_train(space_name: str, dataset_name: str, request) -> None:
    data: Dataset = request.getfixturevalue(dataset_name)
    space = get_space(space_name)
    check_space_fits_data(space, data.info.kind)
    model = _build(space, space.sample(random.Random(3)), data.info)
    assert model.output_shape == (None, data.info.num_classes)
    assert model.loss == "sparse_categorical_crossentropy"
    metrics = _train_briefly(model, data)
    assert math.isfinite(metrics["accuracy"]) and 0 <= metrics["accuracy"] <= 1
    assert math.isfinite(metrics["loss"])


def test_mlp_regression_has_a_linear_output_and_mse(breast_cancer: Dataset) -> None:
    info = DataInfo(input_shape=breast_cancer.info.input_shape, num_classes=1, task="regression")
    space = get_space({"name": "mlp", "settings": {"batch_norm": True}})
    model = _build(space, {**space.sample(random.Random(0)), "dropout": 0.1}, info)
    assert model.output_shape == (None, 1)
    assert model.loss == "mse"
    # Any real-valued column will do as a target: the test is about the head, loss and metric.
    x_train, x_val = breast_cancer.x_train[:160], breast_cancer.x_val[:32]
    model.fit(x_train, x_train[:, 0], epochs=1, verbose=0)
    metrics = model.evaluate(x_val, x_val[:, 0], verbose=0, return_dict=True)
    assert math.isfinite(metrics["mae"])


def test_nb201_refuses_tabular_data(breast_cancer: Dataset) -> None:
    space = get_space("nb201_cell")
    with pytest.raises(SpaceError, match="needs image data"):
        _build(space, params_from_arch_str(MIXED_WITH_ZEROS), breast_cancer.info)


def test_nb201_cell_of_only_none_edges_still_builds_and_trains(digits: Dataset) -> None:
    space = get_space("nb201_cell")
    model = _build(space, params_from_arch_str(ALL_NONE), digits.info)
    with pytest.warns(UserWarning, match="Gradients do not exist"):  # The stem feeds only zeros.
        metrics = _train_briefly(model, digits, rows=64)
    assert math.isfinite(metrics["loss"])


def test_nb201_model_survives_keras_save_and_load(digits: Dataset, tmp_path: Path) -> None:
    import keras
    import numpy as np

    space = get_space({"name": "nb201_cell", "settings": {"channels": 4, "cells_per_stage": 2}})
    model = _build(space, params_from_arch_str(MIXED_WITH_ZEROS), digits.info)
    _train_briefly(model, digits, rows=64)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    batch = digits.x_val[:8]
    np.testing.assert_allclose(restored.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-5)


def test_custom_space_builds_with_its_fixed_values(digits: Dataset) -> None:
    import keras

    space = get_space(CUSTOM_MLP)
    model = _build(space, {"units": 32, "num_layers": 3, "learning_rate": 1e-3}, digits.info)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [32, 32, 32, 10]
    assert all(layer.get_config()["activation"] == "relu" for layer in dense[:-1])
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 3
    assert math.isfinite(_train_briefly(model, digits, rows=64)["accuracy"])


# -- KerasTuner interop ---------------------------------------------------------------------------------


def test_keras_tuner_build_becomes_a_space_that_builds_and_trains(digits: Dataset) -> None:
    from search_spaces.keras_tuner_space import space_from_build

    space = space_from_build(KT_REFERENCE)
    assert get_space({"keras_tuner": KT_REFERENCE}) == space
    assert get_space(json.loads(json.dumps(space.to_dict()))) == space
    by_name = {decision.name: decision.to_dict() for decision in space.decisions}
    assert by_name == {
        "activation": {"name": "activation", "type": "choice", "options": ["relu", "tanh"]},
        "num_layers": {"name": "num_layers", "type": "int", "low": 1, "high": 2, "step": 1, "log": False},
        "units": {"name": "units", "type": "int", "low": 16, "high": 64, "step": 16, "log": False},
        "dropout_rate": {"name": "dropout_rate", "type": "choice", "options": [0.1, 0.3, 0.5]},
        "dropout": {"name": "dropout", "type": "choice", "options": [False, True]},
        "learning_rate": {"name": "learning_rate", "type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    }
    assert space.settings["fixed_params"] == {"classes": 10}
    params = {
        "activation": "tanh",
        "num_layers": 2,
        "units": 48,
        "dropout_rate": 0.3,
        "dropout": True,
        "learning_rate": 3e-3,
    }
    model = _build(space, params, digits.info)
    assert [layer.units for layer in model.layers if hasattr(layer, "units")] == [48, 48, 10]
    assert math.isfinite(_train_briefly(model, digits, rows=64)["accuracy"])


def test_keras_tuner_build_must_compile_and_match_the_data(digits: Dataset) -> None:
    from search_spaces.keras_tuner_space import space_from_build

    uncompiled = space_from_build("tests.kt_build_example:build_uncompiled")
    with pytest.raises(SpaceError, match="must compile the model"):
        _build(uncompiled, {"activation": "relu"}, digits.info)
    space = space_from_build(KT_REFERENCE)
    binary = DataInfo(input_shape=(8, 8, 1), num_classes=2, kind="image")
    with pytest.raises(SpaceError, match="10 outputs; this data needs 2"):
        _build(space, space.sample(random.Random(0)), binary)
    with pytest.raises(SpaceError, match="cannot load keras_tuner build function"):
        space_from_build("tests.kt_build_example:missing")


@pytest.mark.parametrize("spec", ["mlp", "nb201_cell", CUSTOM_MLP, {"keras_tuner": KT_REFERENCE}])
def test_any_space_maps_onto_keras_tuner_hyperparameters(spec: object) -> None:
    from search_spaces.keras_tuner_space import to_hyperparameters

    space = get_space(spec)  # type: ignore[arg-type]
    hp = to_hyperparameters(space)
    assert [h.name for h in hp.space] == list(space.names)
    for seed in range(5):
        # What a KerasTuner oracle would propose must be a valid point of our space.
        proposal = {h.name: h.random_sample(seed) for h in hp.space}
        space.validate(proposal)
