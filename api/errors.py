"""How errors leave the API: one schema per status, no SQL, no traceback, no echoed input.

* 422: ``{"detail": str | [{loc, msg, type}]}`` (:class:`api.schemas.ValidationProblem`); the
  request's own values are not echoed (they may be huge, or not JSON at all: ``NaN``).
* 400 from the framework (a body it could not parse) becomes 422: the request is what is wrong.
* the database failing (:class:`StorageError`, or any SQLAlchemy error that escaped) is a 503
  with ``Retry-After`` and a fixed message; the error itself goes to the log.
* a value the database refuses (:class:`InvalidValue`, e.g. a NUL character) is a 422.
* anything else unexpected is logged and answered 500 with a fixed message, never a traceback.

:func:`document_errors` makes the OpenAPI document say so for every operation.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from api.guards import OUTAGE
from api.schemas import Problem, ValidationProblem
from l2l.store import InvalidValue, StorageError

logger = logging.getLogger("l2l.api")


def install(app: FastAPI, retry_after_seconds: int) -> None:
    """Register the handlers and the OpenAPI post-processing on ``app``."""

    def outage(error: Exception) -> JSONResponse:
        logger.error("the database failed: %s", error)
        return JSONResponse(
            {"detail": OUTAGE},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(retry_after_seconds)},
        )

    @app.exception_handler(InvalidValue)
    async def invalid_value(_request: Request, error: InvalidValue) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(StorageError)
    async def storage_error(_request: Request, error: StorageError) -> JSONResponse:
        return outage(error)

    @app.exception_handler(SQLAlchemyError)
    async def sqlalchemy_error(_request: Request, error: SQLAlchemyError) -> JSONResponse:
        return outage(error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        items = [
            {
                "loc": [part if isinstance(part, int) else str(part) for part in item.get("loc", ())],
                "msg": str(item.get("msg", "")),
                "type": str(item.get("type", "value_error")),
            }
            for item in error.errors()
        ]
        return JSONResponse({"detail": items}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = error.status_code
        if code == status.HTTP_400_BAD_REQUEST:  # the framework could not parse the body
            code = status.HTTP_422_UNPROCESSABLE_CONTENT
        detail = error.detail if isinstance(error.detail, str) else jsonable_encoder(error.detail)
        headers = dict(getattr(error, "headers", None) or {})
        if code == status.HTTP_405_METHOD_NOT_ALLOWED:
            # Starlette lists the methods of the first route on the path only; list them all.
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return JSONResponse({"detail": detail}, status_code=code, headers=headers or None)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error answering a request")
        return JSONResponse({"detail": "the service failed unexpectedly; the error is in its log"}, 500)

    app.openapi = lambda: document_errors(app)  # type: ignore[method-assign]


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods
    return sorted(methods)


#: Answers any team route may give besides its own (documented once, here).
_COMMON = {
    "422": ("ValidationProblem", "The request cannot be used; the detail says why."),
    "503": ("Problem", "The database is out; retry after the Retry-After header's seconds."),
}
_AUTHENTICATED = {
    "401": ("Problem", "No API key, or one the service does not know."),
    "429": ("Problem", "Too many failed authentications from this address; see Retry-After."),
}
_WITH_BODY = {"413": ("Problem", "The body is over this route's size limit.")}


def document_errors(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document with every 422 in one schema and the common errors on every operation."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        routes=app.routes,
        description=app.description,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, ValidationProblem):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            extra = dict(_COMMON)
            if path != "/health":
                extra |= _AUTHENTICATED
            if method in ("post", "put", "patch"):
                extra |= _WITH_BODY
            for code, (model_name, description) in extra.items():
                given = responses.get(code, {})
                responses[code] = {
                    "description": given.get("description", description),
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{model_name}"}}
                    },
                }
                if code in ("429", "503"):
                    responses[code]["headers"] = {
                        "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
                    }
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    app.openapi_schema = schema
    return schema
