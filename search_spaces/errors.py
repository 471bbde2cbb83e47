"""The search spaces' one error type (a module of its own, so that every module can raise it)."""


class SpaceError(ValueError):
    """A search space, or a set of values for one, is invalid. The message says what to fix."""
