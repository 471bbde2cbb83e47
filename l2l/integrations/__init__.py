"""Our strategies inside other tuners, without the service: Ray Tune and KerasTuner.

* :class:`l2l.integrations.ray_tune.StrategySearcher` — a ``ray.tune.search.Searcher``.
* :class:`l2l.integrations.keras_tuner_oracle.StrategyOracle` — a ``keras_tuner.Oracle``.

Both take any registered strategy name (default ``"reinforce"``) and a search space
(ours, or a description that :func:`search_spaces.get_space` understands).
"""
