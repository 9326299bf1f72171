"""Compute Engine's error responses, in the shape google-api-core and Packer's Go client parse:
`{"error": {"code", "message", "errors": [{"message", "domain", "reason"}]}}`."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the API answers with; `reason` is what clients branch on (notFound, ...)."""

    def __init__(self, code: int, reason: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
            }
        }


def not_found(resource: str) -> ApiError:
    return ApiError(404, "notFound", f"The resource '{resource}' was not found")


def already_exists(resource: str) -> ApiError:
    return ApiError(409, "alreadyExists", f"The resource '{resource}' already exists")


def invalid(message: str, reason: str = "invalid") -> ApiError:
    return ApiError(400, reason, message)


def invalid_field(field: str, value: object, why: str) -> ApiError:
    return invalid(f"Invalid value for field '{field}': '{value}'. {why}")


def required(field: str) -> ApiError:
    return ApiError(400, "required", f"Required field '{field}' not specified")


def forbidden(permission: str, resource: str) -> ApiError:
    return ApiError(403, "forbidden", f"Required '{permission}' permission for '{resource}'")


def in_use(resource: str, user: str) -> ApiError:
    return invalid(f"The {resource} is already being used by '{user}'", "resourceInUseByAnotherResource")


def stale_fingerprint(message: str) -> ApiError:
    """412: the client's fingerprint is not the resource's (someone changed it meanwhile)."""
    return ApiError(412, "conditionNotMet", message)


def unauthenticated(message: str) -> ApiError:
    return ApiError(
        401, "authError", message, headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}
    )


def method_not_found(method: str, path: str) -> ApiError:
    return ApiError(404, "notFound", f"The requested URL {path} was not found on this server ({method}).")
