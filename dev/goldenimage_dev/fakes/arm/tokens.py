"""Microsoft Entra ID for the fake: the token endpoints Packer (v1, `resource`) and azure-identity
(v2, `scope`, after the discovery documents MSAL reads first) call, for the service principals a
test registers. Client secrets are checked; workload-identity client assertions are matched on
their issuer, subject and audience (their signature is not checked: the fake trusts the test's
token issuer). Access tokens are RS256 JWTs carrying `oid`, `tid` and `appid`; the fake's
management endpoint verifies them with the same key."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.wrappers import Request, Response

from .wsgi import json_response

LOGIN = "https://login.microsoftonline.com"
ASSERTION_AUDIENCE = "api://AzureADTokenExchange"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LIFETIME = 3599


@dataclass(frozen=True)
class Principal:
    """A service principal (an application's identity in one tenant)."""

    tenant: str
    client_id: str
    object_id: str
    secret: str | None = None
    federated: tuple[tuple[str, str], ...] = ()  # (issuer, subject) pairs of accepted client assertions


@dataclass(frozen=True)
class Caller:
    """Who an access token says is calling."""

    tenant: str
    client_id: str
    object_id: str


class BadTokenError(Exception):
    """An access token the management endpoint does not accept; the message says why."""


class Tokens:
    """The principals of every tenant, and the key that signs and verifies access tokens."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._principals: dict[tuple[str, str], Principal] = {}
        self.tenants: set[str] = set()
        self.issued: list[tuple[str, str, str]] = []  # (tenant, client id, audience)

    def add(self, principal: Principal) -> Principal:
        with self._lock:
            self._principals[(principal.tenant.lower(), principal.client_id.lower())] = principal
            self.tenants.add(principal.tenant.lower())
        return principal

    def principal(self, tenant: str, client_id: str) -> Principal | None:
        with self._lock:
            return self._principals.get((tenant.lower(), client_id.lower()))

    def issue(self, principal: Principal, audience: str) -> str:
        now = int(time.time())
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{principal.tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + LIFETIME + 1,
            "oid": principal.object_id,
            "sub": principal.object_id,
            "tid": principal.tenant,
            "appid": principal.client_id,
            "idtyp": "app",
            "ver": "1.0",
        }
        with self._lock:
            self.issued.append((principal.tenant, principal.client_id, audience))
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid})

    def verify(self, token: str, audiences: Iterable[str]) -> Caller:
        try:
            claims = jwt.decode(token, self._key.public_key(), algorithms=["RS256"], audience=list(audiences))
        except jwt.ExpiredSignatureError as exc:
            raise BadTokenError("The token is expired.") from exc
        except jwt.InvalidTokenError as exc:
            raise BadTokenError(f"The access token is invalid: {exc}.") from exc
        return Caller(str(claims["tid"]), str(claims["appid"]), str(claims["oid"]))

    def jwks(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self._kid, "use": "sig", "kty": "RSA"}]}

    # --- the requests to login.microsoftonline.com (Arm.login is the WSGI app) ---

    def dispatch(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        low = [p.lower() for p in parts]
        if low[:3] == ["common", "discovery", "instance"] or low[1:3] == ["discovery", "instance"]:
            return json_response(200, _instance_discovery(request.args.get("authorization_endpoint", "")))
        if not parts:
            return _oauth_error(404, "invalid_request", 90002, "No tenant in the request path.")
        tenant = parts[0]
        rest = low[1:]
        if rest[-1:] == ["keys"]:
            return json_response(200, self.jwks())
        if not self._known_tenant(tenant):
            return _oauth_error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
            )
        if rest in (["v2.0", ".well-known", "openid-configuration"], [".well-known", "openid-configuration"]):
            return json_response(200, _openid_configuration(tenant, v2=rest[0] == "v2.0"))
        if request.method == "POST" and rest in (["oauth2", "token"], ["oauth2", "v2.0", "token"]):
            return self._token(request, tenant, v2=rest[1] == "v2.0")
        return _oauth_error(404, "invalid_request", 90027, f"No such endpoint: {request.path}")

    def _known_tenant(self, tenant: str) -> bool:
        with self._lock:
            return tenant.lower() in self.tenants or tenant.lower() in ("common", "organizations")

    def _token(self, request: Request, tenant: str, *, v2: bool) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.get_data(as_text=True)).items()}
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The grant type '{form.get('grant_type')}' is not supported here.",
            )
        client_id = form.get("client_id", "")
        principal = self.principal(tenant, client_id)
        if principal is None:
            return _oauth_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen "
                "if the application has not been installed by the administrator of the tenant.",
            )
        failure = self._authenticate(principal, form)
        if failure is not None:
            return failure
        if v2:
            scope = form.get("scope", "")
            audience = scope.split()[0].removesuffix("/.default") if scope else ""
        else:
            audience = form.get("resource", "")
        if not audience:
            return _oauth_error(400, "invalid_request", 900144, "The request body must contain 'scope' or 'resource'.")
        token = self.issue(principal, audience)
        now = int(time.time())
        body: dict[str, Any] = {"token_type": "Bearer", "access_token": token}
        if v2:
            body.update({"expires_in": LIFETIME, "ext_expires_in": LIFETIME})
        else:  # the v1 endpoint answers with strings, and Packer's parser expects them
            body.update(
                {
                    "expires_in": str(LIFETIME),
                    "ext_expires_in": str(LIFETIME),
                    "expires_on": str(now + LIFETIME),
                    "not_before": str(now),
                    "resource": audience,
                }
            )
        return json_response(200, body)

    def _authenticate(self, principal: Principal, form: dict[str, str]) -> Response | None:
        if "client_assertion" in form:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                return _oauth_error(400, "invalid_request", 50027, "Unsupported client_assertion_type.")
            try:
                claims = jwt.decode(form["client_assertion"], options={"verify_signature": False})
            except jwt.InvalidTokenError:
                return _oauth_error(400, "invalid_client", 50027, "The client assertion is not a valid JWT.")
            audience = claims.get("aud")
            audiences = audience if isinstance(audience, list) else [audience]
            if (str(claims.get("iss")), str(claims.get("sub"))) in principal.federated and (
                ASSERTION_AUDIENCE in audiences
            ):
                return None
            return _oauth_error(
                400,
                "invalid_client",
                70021,
                f"No matching federated identity record found for presented assertion. Assertion Issuer: "
                f"'{claims.get('iss')}'. Assertion Subject: '{claims.get('sub')}'. Assertion Audience: '{audience}'.",
            )
        if principal.secret is None or form.get("client_secret") != principal.secret:
            return _oauth_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{principal.client_id}'.",
            )
        return None


def _openid_configuration(tenant: str, *, v2: bool) -> dict[str, Any]:
    base = f"{LOGIN}/{tenant}"
    version = "/v2.0" if v2 else ""
    return {
        "token_endpoint": f"{base}/oauth2{version}/token",
        "authorization_endpoint": f"{base}/oauth2{version}/authorize",
        "device_authorization_endpoint": f"{base}/oauth2{version}/devicecode",
        "issuer": f"{LOGIN}/{tenant}/v2.0" if v2 else f"https://sts.windows.net/{tenant}/",
        "jwks_uri": f"{base}/discovery{version}/keys",
        "end_session_endpoint": f"{base}/oauth2{version}/logout",
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
    }


def _instance_discovery(authorization_endpoint: str) -> dict[str, Any]:
    tenant = authorization_endpoint.removeprefix(LOGIN + "/").split("/", 1)[0] or "common"
    return {
        "tenant_discovery_endpoint": f"{LOGIN}/{tenant}/v2.0/.well-known/openid-configuration",
        "api-version": "1.1",
        "metadata": [
            {
                "preferred_network": "login.microsoftonline.com",
                "preferred_cache": "login.windows.net",
                "aliases": ["login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net"],
            }
        ],
    }


def _oauth_error(status: int, error: str, code: int, description: str) -> Response:
    return json_response(
        status,
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description}",
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        },
    )
