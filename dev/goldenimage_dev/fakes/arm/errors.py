"""Errors in Azure Resource Manager's shape: `{"error": {"code", "message"}}` with the HTTP status
and the codes the real service uses, so that SDKs raise the same exception types."""

from __future__ import annotations

from typing import Any

from .ids import ResourceId


class ArmError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        details: list[ArmError] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.details = details or []

    def error(self) -> dict[str, Any]:
        """The inner object, as nested in deployments and operation results."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target:
            out["target"] = self.target
        if self.details:
            out["details"] = [d.error() for d in self.details]
        return out

    def body(self) -> dict[str, Any]:
        return {"error": self.error()}


def not_found(rid: ResourceId) -> ArmError:
    """A missing resource: ARM's own answer for a top-level type, the provider's for a nested one
    whose parent exists."""
    if len(rid.types) > 1:
        return ArmError(404, "NotFound", f"The entity '{rid.type}/{'/'.join(rid.names)}' was not found.")
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{rid.type}/{rid.name}' under resource group '{rid.group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def group_not_found(name: str) -> ArmError:
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")


def subscription_not_found(subscription: str) -> ArmError:
    return ArmError(404, "SubscriptionNotFound", f"The subscription '{subscription}' could not be found.")


def authorization_failed(client_id: str, object_id: str, action: str, scope: str) -> ArmError:
    return ArmError(
        403,
        "AuthorizationFailed",
        f"The client '{client_id}' with object id '{object_id}' does not have authorization to perform action "
        f"'{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh "
        "your credentials.",
    )


def invalid_parameter(message: str, target: str | None = None) -> ArmError:
    return ArmError(400, "InvalidParameter", message, target=target)


def bad_request(code: str, message: str) -> ArmError:
    return ArmError(400, code, message)


def conflict(code: str, message: str) -> ArmError:
    return ArmError(409, code, message)


def unsupported(what: str) -> ArmError:
    """Something real ARM does that this fake does not: said plainly rather than half-done."""
    return ArmError(400, "NotSupportedByFake", f"{what} is not supported by the local Azure Resource Manager fake.")
