"""Ray Tune with one of our strategies as the searcher: only `search_alg` changes."""

from ray import tune
from sklearn.datasets import load_digits
from sklearn.model_selection import cross_val_score
from sklearn.neural_network import MLPClassifier

from l2l.integrations.ray_tune import StrategySearcher


def train(config):
    x, y = load_digits(return_X_y=True)
    model = MLPClassifier(
        hidden_layer_sizes=(config["width"],) * config["layers"],
        activation=config["activation"],
        learning_rate_init=config["lr"],
        max_iter=30,
        random_state=0,
    )
    return {"accuracy": cross_val_score(model, x / 16.0, y, cv=3).mean()}


tuner = tune.Tuner(
    train,
    param_space={
        "layers": tune.randint(1, 4),
        "width": tune.qrandint(16, 64, 16),
        "activation": tune.choice(["relu", "tanh"]),
        "lr": tune.loguniform(1e-4, 1e-1),
    },
    tune_config=tune.TuneConfig(
        search_alg=StrategySearcher("model_based", seed=0),
        metric="accuracy",
        mode="max",
        num_samples=8,
    ),
)
best = tuner.fit().get_best_result()
print(f"best accuracy {best.metrics['accuracy']:.3f} with {best.config}")
