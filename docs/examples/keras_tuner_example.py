"""KerasTuner with one of our strategies as the oracle, resumed once (the README's example, verbatim)."""

import keras
import keras_tuner
from sklearn.datasets import load_digits

from l2l.integrations.keras_tuner_oracle import StrategyOracle


def build(hp):
    model = keras.Sequential([keras.Input((64,))])
    for i in range(hp.Int("layers", 1, 3)):  # units_1, units_2 appear only when drawn
        model.add(keras.layers.Dense(hp.Int(f"units_{i}", 16, 64, step=16), activation="relu"))
    model.add(keras.layers.Dense(10, activation="softmax"))
    learning_rate = hp.Float("lr", 1e-4, 1e-2, sampling="log")
    loss = "sparse_categorical_crossentropy"
    model.compile(keras.optimizers.Adam(learning_rate), loss=loss, metrics=["accuracy"])
    return model


def tuner(max_trials, overwrite):
    oracle = StrategyOracle("model_based", objective="val_accuracy", max_trials=max_trials, seed=0)
    return keras_tuner.Tuner(
        oracle=oracle, hypermodel=build, directory="kt", project_name="digits", overwrite=overwrite
    )


x, y = load_digits(return_X_y=True)
tuner(3, overwrite=True).search(x / 16.0, y, validation_split=0.25, epochs=3, verbose=0)
resumed = tuner(6, overwrite=False)  # later, or after a crash: three more; the strategy resumes too
resumed.search(x / 16.0, y, validation_split=0.25, epochs=3, verbose=0)
best = resumed.oracle.get_best_trials(1)[0]
print(f"{len(resumed.oracle.trials)} trials; best val_accuracy {best.score:.3f}")
