"""Device placement: which device runs each operation of a model's training step.

Plain data (:mod:`.graph`, :mod:`.cluster`), a fast step-time simulator
(:mod:`.simulator`), baselines and a lower bound (:mod:`.baselines`), graphs built from
Keras models (:mod:`.keras_graph`, :mod:`.benchmarks`), calibration against real devices
(:mod:`.calibration`) and the search driver that runs a placement strategy against the
simulator (:mod:`.search`). The learned placers are strategies in :mod:`controller`.
"""
