"""KerasTuner with one of our strategies as the oracle, on the classic build(hp); resumed once."""

import keras
import keras_tuner
from sklearn.datasets import load_digits

from l2l.integrations.keras_tuner_oracle import StrategyOracle


def build(hp):
    model = keras.Sequential([keras.Input((64,))])
    for i in range(hp.Int("layers", 1, 3)):  # units_1, units_2 appear only when drawn
        model.add(keras.layers.Dense(hp.Int(f"units_{i}", 16, 64, step=16), activation="relu"))
    if hp.Boolean("dropout"):
        model.add(keras.layers.Dropout(0.25))
    model.add(keras.layers.Dense(10, activation="softmax"))
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-4, 1e-2, sampling="log")),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


x, y = load_digits(return_X_y=True)
x = x / 16.0


def tuner(max_trials, overwrite):
    return keras_tuner.Tuner(
        oracle=StrategyOracle("model_based", objective="val_accuracy", max_trials=max_trials, seed=0),
        hypermodel=build,
        directory="l2l_kt_example",
        project_name="digits",
        overwrite=overwrite,
    )


tuner(max_trials=3, overwrite=True).search(x, y, validation_split=0.25, epochs=3, verbose=0)
# Later, or after a crash: the same project, three trials more; the strategy resumes where it was.
resumed = tuner(max_trials=6, overwrite=False)
resumed.search(x, y, validation_split=0.25, epochs=3, verbose=0)
best = resumed.oracle.get_best_trials(1)[0]
print(f"{len(resumed.oracle.trials)} trials; best val_accuracy {best.score:.3f}")
print(best.hyperparameters.values)
