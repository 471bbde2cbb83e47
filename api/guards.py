"""What a request must pass before its body is read: a key, a size, a same-site origin.

:class:`RequestGuard` is an ASGI middleware, so it runs before FastAPI parses a body:

* a write (``POST``/``PUT``/``PATCH``/``DELETE``) to the team API (``/jobs``, ``/datasets``,
  ``/graphs``...) needs a valid team key, checked from the headers alone; without one the
  answer is 401 and the body is never read. Worker routes (a trial's report) need their
  ``Authorization`` header present; the route checks the token itself;
* a key sent only as the web login's cookie, on a write, must come with an ``Origin`` (or
  ``Referer``) of this same host when the browser sends one: a cross-site form is refused (403);
* every body has a size limit (uploads: the upload settings; anything else: small): a
  ``Content-Length`` over it is refused at once, and a body without one is counted while it
  streams, refused (413) as soon as it passes the limit;
* failed authentications are counted per client address (:class:`AuthFailures`); past the
  limit a client gets 429 with ``Retry-After`` and its key is not even looked up.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool

from l2l.service import jobs as service
from l2l.settings import Settings
from l2l.store import StorageError

logger = logging.getLogger(__name__)

#: What a client is told when the database is out (never the error itself: it may hold SQL).
OUTAGE = "the service's database is unavailable right now; try again shortly"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The web login's cookie (also in api.deps, which imports this module's neighbours).
KEY_COOKIE = "l2l_key"

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Routes a worker calls with its per-trial (or final-model) token, not a team key.
WORKER_ROUTES = re.compile(r"^/(trials/[^/]+/(report|placement)|jobs/[^/]+/model/report)/?$")
#: The team API: writes here need a valid team key before the body is read.
TEAM_ROUTES = re.compile(r"^/(jobs|datasets|graphs)(/|$)")
#: Slack for a multipart body's boundaries and form fields around the file itself.
MULTIPART_SLACK = 64 * 1024


class AuthFailures:
    """Failed authentications per client address in a sliding minute (thread-safe)."""

    def __init__(self, per_minute: int, window_seconds: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window_seconds
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int | None:
        """Seconds this client must wait before its next try, or None if it may try now."""
        now = time.monotonic()
        with self._lock:
            failures = self._failures.get(client)
            if failures is None:
                return None
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if not failures:
                del self._failures[client]
                return None
            if len(failures) < self.per_minute:
                return None
            return max(1, int(failures[0] + self.window - now) + 1)

    def failed(self, client: str) -> None:
        with self._lock:
            if len(self._failures) > 100_000:  # a flood of addresses must not grow this forever
                self._failures.clear()
            self._failures.setdefault(client, deque()).append(time.monotonic())


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def body_limit(settings: Settings, path: str) -> int:
    """The most bytes a request body to ``path`` may have."""
    mb = settings.api.max_body_mb
    if path.startswith("/datasets") or path.endswith("/predict/file"):
        mb = settings.api.max_upload_mb
    elif path.startswith("/graphs"):
        mb = settings.placement.max_graph_mb
    elif WORKER_ROUTES.match(path) and "/model/" in path:
        mb = settings.api.max_model_mb
    return int(mb * (1 << 20)) + MULTIPART_SLACK


class BodyTooLarge(Exception):
    pass


class RequestGuard:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: ASGIApp, settings: Settings, failures: AuthFailures) -> None:
        self.app = app
        self.settings = settings
        self.failures = failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = _headers(scope)
        refusal = await self._refusal(scope, path, headers)
        if refusal is not None:
            await _send_json(send, *refusal)
            return
        limit = body_limit(self.settings, path)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await _send_json(send, 413, _too_large(limit))
            return
        await self._with_counted_body(scope, receive, send, limit)

    async def _refusal(
        self, scope: Scope, path: str, headers: dict[str, str]
    ) -> tuple[int, str, dict[str, str]] | None:
        """(status, detail, headers) if the request is refused before its body is read."""
        client = client_address(scope)
        bearer = _bearer(headers.get("authorization", ""))
        if WORKER_ROUTES.match(path):
            if bearer is None:
                return 401, "send the trial's report token as 'Authorization: Bearer <token>'", {}
            return None
        cookie = None if bearer else _cookie(headers.get("cookie", ""), KEY_COOKIE)
        if cookie is not None and not _same_origin(headers):
            return 403, "a cross-site request with the login cookie is refused; send a Bearer key", {}
        if not TEAM_ROUTES.match(path):
            return None
        wait = self.failures.retry_after(client)
        if wait is not None:
            return 429, "too many failed authentications from this address; wait", {"Retry-After": str(wait)}
        store = scope["app"].state.store
        try:
            team = await run_in_threadpool(service.authenticate, store, bearer or cookie)
        except service.Unauthorized as error:
            self.failures.failed(client)
            return 401, str(error), {"WWW-Authenticate": "Bearer"}
        except StorageError:
            logger.exception("the database failed while checking a key")
            retry = str(self.settings.security.retry_after_seconds)
            return 503, OUTAGE, {"Retry-After": retry}
        scope.setdefault("state", {})["team"] = team  # the route's TeamDep uses it, not a 2nd lookup
        return None

    async def _with_counted_body(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        exceeded = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                # The app turned our exception into its own error answer; answer 413 instead.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _send_json(send, 413, _too_large(limit))
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            if not started:
                await _send_json(send, 413, _too_large(limit))


def _too_large(limit: int) -> str:
    return f"the request body is larger than {limit / (1 << 20):.1f} MB, this route's limit"


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}


def _bearer(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def _same_origin(headers: dict[str, str]) -> bool:
    """True unless the browser says the request came from another site (Origin, else Referer)."""
    source = headers.get("origin") or headers.get("referer")
    if not source or source == "null" and "origin" not in headers:
        return True
    if source == "null":
        return False
    return urlsplit(source).netloc.lower() == headers.get("host", "").lower()


async def _send_json(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    raw.append((b"connection", b"close"))  # the unread body is not waited for
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
