"""Strategies that wrap other libraries' search algorithms (imported only when built).

* :mod:`controller.adapters.optuna_tpe` — Optuna's TPE sampler (``optuna_tpe``, ``optuna_tpe_mv``);
  needs the ``bench`` extra (``pip install 'l2l[bench]'``).
* :mod:`controller.adapters.keras_tuner_bo` — KerasTuner's Bayesian-optimisation oracle
  (``keras_tuner_bo``).
"""
