"""l2l: learning to learn as a service (the engine)."""

__version__ = "0.1.0"
