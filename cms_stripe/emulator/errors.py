"""Stripe-shaped API errors raised inside the emulator and turned into `{"error": {...}}` bodies."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error response: HTTP status plus Stripe's error object fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            err["param"] = self.param
        return {"error": err}


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, code=code, param=param)


def missing_resource(kind: str, obj_id: str, *, param: str = "id", status: int = 404) -> ApiError:
    return ApiError(status, f"No such {kind}: '{obj_id}'", code="resource_missing", param=param)


def unsupported(param: str) -> ApiError:
    """A parameter Stripe accepts but the emulator deliberately does not model; fail loudly, never ignore."""
    return ApiError(
        400,
        f"The Stripe emulator does not support `{param}`.",
        code="emulator_unsupported_parameter",
        param=param,
    )
