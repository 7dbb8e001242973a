"""One error body for every failure the API reports, and the handlers that produce it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleetops.core.errors import ConfigError, FleetopsError, ServiceUnavailableError
from fleetops.core.errors import ValidationError as FleetopsValidationError

log = logging.getLogger("fleetops.api")


class ErrorDetail(BaseModel):
    code: str  # machine-readable: not_found, forbidden, invalid_request, …
    message: str  # for people
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """What every 4xx and 5xx response of the API carries."""

    error: ErrorDetail


class ApiError(Exception):
    """Raise from a handler to answer with ``status`` and the common error body."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def _doc(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# Documented on every API route; each router adds 404/409 where they can happen.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _doc("The request cannot be served as asked"),
    401: _doc("No valid credentials (session cookie or bearer token)"),
    403: _doc("Signed in, but the role lacks the permission, or the CSRF token is missing"),
    422: _doc("A parameter or body field is invalid"),
}
Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: _doc("No such resource")}
CONFLICT: Responses = {409: _doc("The change conflicts with the resource's state")}
UNAVAILABLE: Responses = {503: _doc("A store the endpoint needs is not configured or unreachable")}

_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(
        error=ErrorDetail(
            code=code or _CODES.get(status, "error"), message=message, details=details
        )
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


PageError = Callable[[Request, int, str], Response]


def install(app: FastAPI, page_error: PageError | None = None) -> None:
    """Route every error through :func:`error_response`; outside ``/api/`` (dashboard
    pages) through ``page_error`` instead, which renders HTML or redirects to sign in."""

    def respond(
        request: Request,
        status: int,
        message: str,
        code: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        if page_error is not None and not request.url.path.startswith("/api/"):
            return page_error(request, status, message)
        return error_response(status, message, code, details, headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return respond(request, exc.status, exc.message, exc.code, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail) if exc.detail else HTTPStatus(exc.status_code).phrase
        return respond(request, exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        details = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        return respond(request, 422, "the request has invalid fields", details=details)

    @app.exception_handler(FleetopsError)
    async def _fleetops(request: Request, exc: FleetopsError) -> Response:
        if isinstance(exc, ServiceUnavailableError):
            return respond(request, 503, str(exc))
        if isinstance(exc, FleetopsValidationError):
            return respond(request, 400, str(exc))
        if isinstance(exc, ConfigError):
            log.error("configuration problem serving %s: %s", request.url.path, exc)
            return respond(
                request, 503, "a store behind this endpoint cannot be used", "unavailable"
            )
        return respond(request, 500, "internal error", "internal_error")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error serving %s", request.url.path)
        return respond(request, 500, "internal error", "internal_error")
