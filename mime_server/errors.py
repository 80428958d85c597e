"""API errors: one exception type that carries status, code and the offending value, rendered as JSON."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse


class ApiError(Exception):
    """A client-visible failure: HTTP status, a stable machine code, a human detail, the bad value and
    any headers the answer needs (``Retry-After``, ``Connection: close``)."""

    def __init__(self, status: int, code: str, detail: str, value: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {detail} (value={value!r})")
        self.status = status
        self.code = code
        self.detail = detail
        self.value = value
        self.headers = headers

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "detail": self.detail}
        if self.value is not None:
            body["value"] = json_safe(self.value)
        return body

    def response(self) -> JSONResponse:
        return JSONResponse(self.to_json(), status_code=self.status, headers=self.headers)


def json_safe(value: Any) -> Any:
    """``value`` if strict JSON can carry it, else its repr (NaN and Infinity are not JSON)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def error_response(status: int, code: str, detail: str, value: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """Build the JSON error body every endpoint of both services answers with."""
    return ApiError(status, code, detail, value, headers).response()


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Starlette exception handler turning an ApiError into its JSON response."""
    assert isinstance(exc, ApiError), exc
    return exc.response()


# The router's own refusals, in the services' words.
ROUTER_CODES = {404: ("not_found", "no such route"), 405: ("method_not_allowed", "method not allowed on this route")}


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Starlette exception handler: the router's 404 and 405 (and any HTTPException) as the same JSON."""
    assert isinstance(exc, HTTPException), exc
    code, detail = ROUTER_CODES.get(exc.status_code, ("http_error", exc.detail))
    value = request.method if exc.status_code == 405 else request.url.path
    return error_response(exc.status_code, code, detail, value, dict(exc.headers or {}))


EXCEPTION_HANDLERS = {ApiError: api_error_handler, HTTPException: http_error_handler}
