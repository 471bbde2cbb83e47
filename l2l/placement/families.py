"""Coarse op families (conv, dense, recurrent, ...) from an op's ``kind``: what placers and the
hand-made baselines may know about an op without its framework."""

from __future__ import annotations

import re

#: Coarse op families; an op's ``kind`` (the Keras layer class) is mapped onto one of them.
OP_FAMILIES = (
    "input",
    "conv",
    "dense",
    "recurrent",
    "embedding",
    "attention",
    "norm",
    "pool",
    "merge",
    "activation",
    "other",
)
_FAMILY_PATTERNS = (
    ("input", r"input"),
    ("recurrent", r"lstm|gru|rnn"),
    ("attention", r"attention"),
    ("embedding", r"embedding"),
    ("conv", r"conv"),
    ("dense", r"dense|matmul|einsum"),
    ("norm", r"norm"),
    ("pool", r"pool"),
    ("merge", r"add|concat|multiply|average|maximum|subtract"),
    ("activation", r"activation|relu|softmax|dropout|sigmoid|tanh"),
)


def op_family(kind: str) -> str:
    lowered = kind.lower()
    for family, pattern in _FAMILY_PATTERNS:
        if re.search(pattern, lowered):
            return family
    return "other"
