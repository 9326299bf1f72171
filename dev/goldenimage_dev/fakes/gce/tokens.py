"""Service-account keys, Google's OAuth token endpoint and the credentials the API accepts.

Keys are real RSA keys the fake makes and remembers by key id, so that what clients sign can be
checked for real: the JWT-bearer grant of `oauth2.googleapis.com/token` (Packer's Go client,
google-auth without self-signed JWTs) and the self-signed JWTs google-cloud-compute sends as
bearer tokens (AIP-4111), both RS256 signatures by a key of the claimed account.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import ApiError, unauthenticated

TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
COMPUTE = "https://www.googleapis.com/auth/compute"
COMPUTE_READONLY = "https://www.googleapis.com/auth/compute.readonly"
_WRITE_SCOPES = frozenset({CLOUD_PLATFORM, COMPUTE})
_READ_SCOPES = _WRITE_SCOPES | {COMPUTE_READONLY, "https://www.googleapis.com/auth/cloud-platform.read-only"}
_MAX_LIFETIME = 3600
_SKEW = 300  # seconds of clock difference Google tolerates
_MISSING = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or "
    "other valid authentication credential."
)
_INVALID = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
    "valid authentication credential."
)


class OAuthError(Exception):
    """An error of the token endpoint: `{"error": ..., "error_description": ...}` with 400."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True)
class Principal:
    """Who a request comes from, and what its credential allows."""

    email: str
    scopes: frozenset[str]

    def may(self, method: str) -> bool:
        return bool(self.scopes & (_READ_SCOPES if method in ("GET", "HEAD") else _WRITE_SCOPES))


@dataclass(frozen=True)
class _Key:
    email: str
    project: str
    public_key: rsa.RSAPublicKey


@dataclass
class Tokens:
    lifetime: int = 3600
    _keys: dict[str, _Key] = field(default_factory=dict)
    _access: dict[str, tuple[Principal, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create_key(self, project: str, account: str = "packer") -> dict[str, str]:
        """A new key for `account@project.iam.gserviceaccount.com`: the JSON document Google hands
        out (`type: service_account`), with a fresh 2048-bit RSA key."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        email = f"{account}@{project}.iam.gserviceaccount.com"
        with self._lock:
            self._keys[key_id] = _Key(email, project, key.public_key())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {
            "type": "service_account",
            "project_id": project,
            "private_key_id": key_id,
            "private_key": pem,
            "client_email": email,
            "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": TOKEN_URI,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
            "universe_domain": "googleapis.com",
        }

    def delete_keys(self, email: str) -> None:
        """Forget every key of `email`: what it signs is refused from now on."""
        with self._lock:
            for key_id in [k for k, v in self._keys.items() if v.email == email]:
                del self._keys[key_id]

    def accounts(self) -> list[str]:
        with self._lock:
            return sorted({key.email for key in self._keys.values()})

    def grant(self, form: Mapping[str, str]) -> dict[str, object]:
        """The token endpoint: an access token for a valid JWT-bearer assertion."""
        if form.get("grant_type") != JWT_BEARER:
            raise OAuthError("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}")
        try:
            claims = self._verify(form.get("assertion", ""), audience=TOKEN_URI)
        except jwt.InvalidTokenError as exc:
            raise OAuthError("invalid_grant", f"Invalid JWT: {exc}") from exc
        scopes = frozenset(str(claims.get("scope", "")).split())
        if not scopes:
            raise OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        token = "ya29.c." + secrets.token_urlsafe(48)
        with self._lock:
            self._access[token] = (Principal(str(claims["iss"]), scopes), time.time() + self.lifetime)
        return {"access_token": token, "expires_in": self.lifetime - 1, "token_type": "Bearer"}

    def authenticate(self, authorization: str | None, *, host: str) -> Principal:
        """The principal of an `Authorization` header: an access token this fake issued, or a
        self-signed JWT for `https://HOST/` or with scopes; 401 otherwise."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise unauthenticated(_MISSING)
        token = authorization[7:].strip()
        with self._lock:
            issued = self._access.get(token)
        if issued is not None:
            principal, expiry = issued
            if time.time() < expiry:
                return principal
            raise unauthenticated(_INVALID)
        try:
            claims = self._verify(token, audience=None)
        except jwt.InvalidTokenError as exc:
            raise unauthenticated(_INVALID) from exc
        scopes = frozenset(str(claims.get("scope", "")).split())
        if "aud" in claims:
            if claims["aud"] != f"https://{host}/":
                raise unauthenticated(_INVALID)
            scopes = _WRITE_SCOPES
        if not scopes:
            raise unauthenticated(_INVALID)
        return Principal(str(claims["iss"]), scopes)

    def check(self, principal: Principal, method: str) -> None:
        if not principal.may(method):
            raise ApiError(403, "insufficientPermissions", "Request had insufficient authentication scopes.")

    def _verify(self, token: str, *, audience: str | None) -> dict[str, object]:
        """The claims of an RS256 JWT signed by a key of its issuer, within Google's lifetime rules."""
        header = jwt.get_unverified_header(token)
        with self._lock:
            key = self._keys.get(str(header.get("kid", "")))
        if key is None:
            raise jwt.InvalidSignatureError("unknown key id")
        claims: dict[str, object] = jwt.decode(
            token,
            key.public_key,
            algorithms=["RS256"],
            audience=audience,
            leeway=_SKEW,
            options={"require": ["iss", "iat", "exp"], "verify_aud": audience is not None},
        )
        if claims["iss"] != key.email:
            raise jwt.InvalidIssuerError(f"the key belongs to {key.email}, not {claims['iss']}")
        if int(str(claims["exp"])) - int(str(claims["iat"])) > _MAX_LIFETIME:
            raise jwt.InvalidTokenError("Token must be a short-lived token (60 minutes)")
        return claims
