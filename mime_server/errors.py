"""API errors: one exception type that carries status, code and the offending value, rendered as JSON."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse


class ApiError(Exception):
    """A client-visible failure: HTTP status, a stable machine code, a human detail and the bad value."""

    def __init__(self, status: int, code: str, detail: str, value: Any = None) -> None:
        super().__init__(f"{status} {code}: {detail} (value={value!r})")
        self.status = status
        self.code = code
        self.detail = detail
        self.value = value

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "detail": self.detail}
        if self.value is not None:
            body["value"] = self.value
        return body


def error_response(status: int, code: str, detail: str, value: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """Build the JSON error body every endpoint of both services answers with."""
    return JSONResponse(ApiError(status, code, detail, value).to_json(), status_code=status, headers=headers)


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Starlette exception handler turning an ApiError into its JSON response."""
    assert isinstance(exc, ApiError), exc
    return JSONResponse(exc.to_json(), status_code=exc.status)
