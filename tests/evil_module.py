"""A module no test may import: importing it would mean the service imported a team's name."""

raise RuntimeError("tests.evil_module was imported: a request's module reference reached importlib")


def build(hp):  # pragma: no cover - never reached
    return None
