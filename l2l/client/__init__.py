"""The clients: the REST client (:mod:`.rest`), the ``l2l`` command line (:mod:`.cli`, with the
team commands in :mod:`.commands`) and the demo (:mod:`.demo`)."""

from l2l.client.rest import ApiError, Client

__all__ = ["ApiError", "Client"]
