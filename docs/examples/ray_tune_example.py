"""Ray Tune with one of our strategies as the searcher (the README's example, verbatim)."""

from ray import tune
from sklearn.datasets import load_digits
from sklearn.model_selection import cross_val_score
from sklearn.neural_network import MLPClassifier

from l2l.integrations.ray_tune import StrategySearcher


def train(config):
    x, y = load_digits(return_X_y=True)
    model = MLPClassifier((config["width"],) * config["layers"], learning_rate_init=config["lr"], max_iter=30)
    return {"accuracy": cross_val_score(model, x / 16.0, y, cv=3).mean()}


space = {"layers": tune.randint(1, 4), "width": tune.qrandint(16, 64, 16), "lr": tune.loguniform(1e-4, 0.1)}
searcher = StrategySearcher("model_based", seed=0)  # the only line that differs from stock Ray Tune
config = tune.TuneConfig(search_alg=searcher, metric="accuracy", mode="max", num_samples=8)
best = tune.Tuner(train, param_space=space, tune_config=config).fit().get_best_result()
print(f"best accuracy {best.metrics['accuracy']:.3f} with {best.config}")
