"""Benchmarks that run the real service code (strategies, job loop, store) on cheap trials.

:mod:`l2l.bench.nb201` searches tabular NAS-Bench-201; :mod:`l2l.bench.plot` draws its
best-so-far curves; :mod:`l2l.bench.cli` is ``l2l bench``.
"""
