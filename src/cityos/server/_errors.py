"""Mapping CityOS errors to HTTP answers, and the request body size limit: every refusal
is a 4xx with a JSON body saying what was wrong."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cityos.access import (
    AccessConflict,
    AccessNotFound,
    AuthenticationError,
    PermissionDenied,
    PolicyError,
)
from cityos.errors import (
    CityOSError,
    ConflictError,
    DatasetExists,
    DatasetNotFound,
    EngineError,
    QueryError,
    QueryTimeout,
    ValidationError,
)
from cityos.server.schemas import ErrorBody

__all__ = ["ERRORS", "BodyLimit", "install_error_handlers", "public_detail", "status_for"]

_STATUS: list[tuple[type[Exception], int]] = [
    (AuthenticationError, 401),
    (PermissionDenied, 403),
    (AccessNotFound, 404),
    (DatasetNotFound, 404),
    (AccessConflict, 409),
    (DatasetExists, 409),
    (ConflictError, 409),
    (PolicyError, 422),
    (ValidationError, 422),
    (QueryTimeout, 503),
    (QueryError, 422),
    (EngineError, 503),
]


def status_for(exc: Exception) -> int:
    """HTTP status for a CityOS error (400 for any other :class:`CityOSError`)."""
    for cls, code in _STATUS:
        if isinstance(exc, cls):
            return code
    return 400


def _body(detail: Any, error: str) -> dict[str, Any]:
    return {"detail": detail, "error": error}


def public_detail(exc: Exception) -> str:
    """The message of ``exc`` as any caller may see it: never the names of datasets the
    caller did not name. Every error answer goes through here, so routes need no care.

    Examples
    --------
    >>> public_detail(DatasetNotFound("nosuch", ["secret_cases", "taxis"]))
    "unknown dataset 'nosuch' (create it with `cityos dataset create`)"
    """
    if isinstance(exc, DatasetNotFound):
        return str(exc.public())
    text = str(exc)
    # a layer that wrapped a DatasetNotFound's text into its own message
    cut = text.find("; known datasets:")
    if cut >= 0:
        end = text.find(" (", cut)
        text = text[:cut] + (text[end:] if end >= 0 else "")
    return text


async def _cityos_error(_request: Request, exc: Exception) -> JSONResponse:
    code = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
    body = _body(public_detail(exc), type(exc).__name__)
    problems = getattr(exc, "problems", None)
    if isinstance(exc, ValidationError) and problems:
        body["problems"] = problems[:100]
    return JSONResponse(body, status_code=code, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return JSONResponse(_body("malformed JSON body", "MalformedJSON"), status_code=400)
    detail = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type")}
        for e in errors
    ]
    return JSONResponse(_body(detail, "RequestValidationError"), status_code=422)


async def _value_error(_request: Request, exc: Exception) -> JSONResponse:
    # raised by schema helpers such as Region.to_geometry after FastAPI's own validation
    return JSONResponse(_body(str(exc), "InvalidValue"), status_code=422)


async def _data_error(_request: Request, exc: Exception) -> JSONResponse:
    # the database refused a value the schema let through (an integer beyond its column,
    # text with NUL bytes): the caller's input, so a 4xx; the message never echoes the value
    return JSONResponse(
        _body("a value in the request is out of range for its field", "InvalidValue"),
        status_code=422,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn errors into JSON 4xx answers."""
    from sqlalchemy.exc import DataError

    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(CityOSError, _cityos_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ValueError, _value_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


class _TooLarge(HTTPException):
    # an HTTPException, so FastAPI's body parsing re-raises it instead of answering 400
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {max_bytes} bytes")


async def _refuse_nul(send: Send) -> None:
    body = json.dumps(_body("NUL bytes are not allowed in the path or query", "InvalidValue"))
    await send(
        {
            "type": "http.response.start",
            "status": 422,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


class BodyLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` with 413, whether the
    size is announced in ``Content-Length`` or only discovered while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # no text in a query string or path may hold a NUL byte (PostgreSQL cannot store
        # one, and no name or value of CityOS needs one): refused before any route runs
        if b"%00" in scope.get("query_string", b"") or "\x00" in scope.get("path", ""):
            await _refuse_nul(send)
            return
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    size = int(v)
                except ValueError:
                    size = self.max_bytes + 1
                if size > self.max_bytes:
                    await self._refuse(send)
                    return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        resp = JSONResponse(
            _body(
                f"request body exceeds the limit of {self.max_bytes} bytes; send less "
                "(or split large writes into batches)",
                "PayloadTooLarge",
            ),
            status_code=413,
        )
        await send({"type": "http.response.start", "status": 413, "headers": resp.raw_headers})
        await send({"type": "http.response.body", "body": resp.body})


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        _body(exc.detail, "HTTPError"),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


#: Error answers every route may give, for the OpenAPI document.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in [
        (400, "Malformed request"),
        (401, "Not authenticated"),
        (403, "Not allowed"),
        (404, "Not found"),
        (409, "Conflict"),
        (413, "Body too large"),
        (422, "Invalid input"),
        (503, "Query ran past its time budget, or an engine is unavailable"),
    ]
}
