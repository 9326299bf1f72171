"""The operator's exceptions, in two families: permanent (retrying cannot help: a condition says
what to change) and retryable (may pass: the reconcile is tried again later)."""

from __future__ import annotations


class GoldenImageError(Exception):
    """Base of the operator's own errors."""


class PermanentError(GoldenImageError):
    """Retrying cannot help until the spec, a referenced object or the cloud changes."""


class RetryableError(GoldenImageError):
    """May pass (throttling, an outage, an object not readable yet): try again later."""


# -- clouds ------------------------------------------------------------------------------------


class CloudError(RetryableError):
    """A cloud call failed in a way that may pass."""


class CloudRefusedError(PermanentError):
    """The cloud refused the call for a reason that waiting does not fix (permissions, quota,
    a project or location that does not exist); the message says which."""


class SourceNotFoundError(PermanentError):
    """A source selector matches no image: waiting will not help until the spec or cloud changes."""


class ForeignArtifactError(PermanentError):
    """An artifact on record does not carry the build's identity: it is never touched."""


class CredentialsUnavailableError(RetryableError):
    """The credentials a recipe names cannot be read now. Never fall back to the operator's own
    identity then: in another account everything would look missing."""


# -- the cluster -------------------------------------------------------------------------------


class ConflictError(RetryableError):
    """The object changed since it was read: re-read and re-plan."""


class GoneError(GoldenImageError):
    """The object is gone: the reconcile ends quietly."""


class OwnedByAnotherError(PermanentError):
    """An object of the name being created exists and has another controlling owner."""


class RetryLaterError(RetryableError):
    """What the reconcile needs cannot be read now; try again in a while."""
