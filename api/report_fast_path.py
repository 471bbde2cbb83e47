"""The fast path of ``POST /trials/{id}/report``: workers' per-epoch reports.

Every epoch of every running trial is one such request, so this route carries most of the
service's load. Through FastAPI's router and dependency solver a request costs close to a
millisecond of CPU (most of it matching the path against every route and solving dependencies),
which caps a core at a few hundred reports a second. This ASGI middleware answers the common
case itself: a well-formed intermediate report (a step, not final) with a Bearer token. It
validates the body with the same :class:`~api.schemas.TrialReport`, stores it through the same
service function as the route (:func:`l2l.service.jobs.report_step`, group-committed) and answers
with the same :class:`~api.schemas.ReportAccepted` document or the same ``{"detail": ...}`` refusals.

Everything else (final reports, a missing token, a body that does not validate or is not sent
as ``application/json``, anything odd) goes on, body included, to the FastAPI route in
:mod:`api.routes.trials`, which stays the one documented in the OpenAPI schema and the one that
answers those cases.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.routes.trials import bearer_token
from api.schemas import ReportAccepted, TrialPublic, TrialReport
from l2l.service import jobs as service
from l2l.service.step_writer import StepWriter
from l2l.store import NotFound, StorageError
from l2l.store.conversions import MAX_ID

log = logging.getLogger(__name__)

#: A report is a handful of numbers; a body bigger than this goes the slow way (and its limits).
MAX_BODY = 64 * 1024

_JSON = [(b"content-type", b"application/json")]


class ReportFastPath:
    """ASGI middleware: answers intermediate reports, passes every other request to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        trial_id = _report_trial_id(scope)
        if trial_id is None:
            await self.app(scope, receive, send)
            return
        token = bearer_token(_header(scope, b"authorization"))
        length = _header(scope, b"content-length")
        json_body = (_header(scope, b"content-type") or "").split(";")[
            0
        ].strip().lower() == "application/json"
        if token is None or not json_body or length is None or not length.isdigit() or int(length) > MAX_BODY:
            await self.app(scope, receive, send)
            return
        body, more, last = await _read_body(receive, int(length))
        report = _intermediate_report(body) if not more and len(body) == int(length) else None
        if report is None:
            await self.app(scope, _replay(body, more, last, receive), send)
            return
        status, document, headers = await _answer(scope["app"].state.step_writer, trial_id, token, report)
        await send({"type": "http.response.start", "status": status, "headers": _JSON + headers})
        await send({"type": "http.response.body", "body": document})


def _report_trial_id(scope: Scope) -> int | None:
    """The trial id of a ``POST /trials/{id}/report``, or None for any other request."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if not (path.startswith("/trials/") and path.endswith("/report")):
        return None
    text = path[len("/trials/") : -len("/report")]
    # A bigger id than the databases hold goes to the route, which refuses it its way.
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_ID:
        return None
    return int(text)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:  # ASGI servers send header names lower-cased
            return str(value.decode("latin-1"))
    return None


async def _read_body(receive: Receive, length: int) -> tuple[bytes, bool, Message | None]:
    """The body read so far, whether more of the stream is left, and a non-body message read."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(chunks), True, message
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False, None
        if size > length:
            return b"".join(chunks), True, None


def _intermediate_report(body: bytes) -> TrialReport | None:
    try:
        report = TrialReport.model_validate_json(body)
    except ValidationError:
        return None  # the route answers it, with FastAPI's own 422
    return report if not report.final and report.step is not None else None


def _replay(body: bytes, more: bool, last: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that hands the route the body already read, then the rest of the stream."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": more}]
    if last is not None:
        pending.append(last)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def _answer(
    writer: StepWriter, trial_id: int, token: str, report: TrialReport
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, JSON body and extra headers: as the route answers the same report."""
    assert report.step is not None
    try:
        outcome = await service.report_step(writer, trial_id, token, report.step, report.metrics)
    except NotFound:
        return 404, _detail(f"trial {trial_id} not found"), []
    except service.Forbidden as error:
        return 403, _detail(str(error)), []
    except service.NotRunning as error:
        return 409, _detail(str(error)), []
    except StorageError:
        log.exception("storing a report of trial %d failed", trial_id)
        # The report is idempotent: sending it again is safe, and the worker's client does.
        return 503, _detail("the database is not answering; send the report again"), [(b"retry-after", b"1")]
    accepted = ReportAccepted(
        trial=TrialPublic.of(outcome.trial),
        changed=outcome.changed,
        message=outcome.message,
        decision=outcome.decision,  # type: ignore[arg-type]
    )
    return 200, accepted.model_dump_json().encode(), []


def _detail(message: str) -> bytes:
    document: dict[str, Any] = {"detail": message}
    return json.dumps(document).encode()
