"""The operator's own configuration, read once from the environment at start-up."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from . import __version__

DEFAULT_RUNNER_IMAGE = f"ghcr.io/goldenimage/packer-runner:{__version__}"
_PREFIX = re.compile(r"/([a-zA-Z0-9_.\-]+/)*")


class ConfigurationError(ValueError):
    pass


def parameter_prefix(template: str | None, namespace: str) -> str | None:
    """The prefix of the SSM parameters `namespace` may publish to; None: any."""
    return None if template is None else template.replace("{namespace}", namespace)


@dataclass(frozen=True)
class Config:
    # The image and command of build and validation Jobs. The image pins Packer and its plugins,
    # so it is part of every build's fingerprint: changing it rebuilds.
    runner_image: str = DEFAULT_RUNNER_IMAGE
    runner_command: tuple[str, ...] = ("goldenimage-runner",)
    # Plain environment for every runner Job (proxies, endpoints). Never credentials: those come
    # from workload identity or the GoldenImage's credentials Secret.
    runner_env: Mapping[str, str] = field(default_factory=dict)
    # A custom EC2/SSM endpoint (VPC endpoints, or an emulator) for the operator and the builds.
    aws_endpoint_url: str | None = None
    # "none" builds without connecting to instances (emulated clouds, where nothing boots);
    # provisioners are rendered and validated but not run.
    packer_communicator: Literal["ssh", "none"] = "ssh"
    job_ttl: timedelta = timedelta(days=1)
    termination_grace: timedelta = timedelta(minutes=15)  # Packer's clean-up after SIGTERM
    retry_base: timedelta = timedelta(seconds=30)
    retry_cap: timedelta = timedelta(minutes=30)
    resync: timedelta = timedelta(seconds=60)
    # How often a validated build's artifacts are checked for existence (they vanish only when
    # deleted outside the operator), and how often publication is written again to correct drift.
    artifact_check: timedelta = timedelta(minutes=10)
    republish: timedelta = timedelta(minutes=10)
    # Networks validation checks may connect to; an instance address outside them fails the
    # validation instead of being probed. Empty: any.
    validation_networks: tuple[str, ...] = ()
    # SSM parameter paths a namespace's channels may publish to: a prefix in which {namespace}
    # stands for the channel's namespace, e.g. "/{namespace}/". None: any path (the platform
    # should set it: without it a channel may claim any parameter no other channel owns).
    ssm_parameter_prefix: str | None = None

    def parameter_prefix(self, namespace: str) -> str | None:
        return parameter_prefix(self.ssm_parameter_prefix, namespace)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env

        def seconds(name: str, default: timedelta) -> timedelta:
            raw = env.get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigurationError(f"{name} must be a number of seconds, not {raw!r}") from None
            if value <= 0:
                raise ConfigurationError(f"{name} must be positive")
            return timedelta(seconds=value)

        communicator = env.get("GOLDENIMAGE_PACKER_COMMUNICATOR", "ssh")
        if communicator not in ("ssh", "none"):
            raise ConfigurationError(f"GOLDENIMAGE_PACKER_COMMUNICATOR must be ssh or none, not {communicator!r}")
        runner_env: dict[str, str] = {}
        if raw_env := env.get("GOLDENIMAGE_RUNNER_ENV"):
            try:
                parsed = json.loads(raw_env)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"GOLDENIMAGE_RUNNER_ENV must be a JSON object: {exc}") from None
            if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
                raise ConfigurationError("GOLDENIMAGE_RUNNER_ENV must be a JSON object of strings")
            runner_env = parsed
        command = tuple(env.get("GOLDENIMAGE_RUNNER_COMMAND", "goldenimage-runner").split())
        networks = tuple(n.strip() for n in env.get("GOLDENIMAGE_VALIDATION_NETWORKS", "").split(",") if n.strip())
        for network in networks:
            try:
                ipaddress.ip_network(network)
            except ValueError:
                raise ConfigurationError(
                    f"GOLDENIMAGE_VALIDATION_NETWORKS: {network!r} is not a network such as 10.0.0.0/8"
                ) from None
        prefix = env.get("GOLDENIMAGE_SSM_PARAMETER_PREFIX") or None
        if prefix is not None:
            bare = prefix.replace("{namespace}", "namespace")
            # A prefix ending within a name ("/team") would let namespace "team" publish to "/team-b/...".
            if not prefix.startswith("/") or not prefix.endswith("/") or not _PREFIX.fullmatch(bare):
                raise ConfigurationError(
                    "GOLDENIMAGE_SSM_PARAMETER_PREFIX must be an SSM path that begins and ends with '/', such as "
                    f"/{{namespace}}/ or /golden/{{namespace}}/, not {prefix!r}"
                )
        return cls(
            runner_image=env.get("GOLDENIMAGE_RUNNER_IMAGE", DEFAULT_RUNNER_IMAGE),
            runner_command=command or ("goldenimage-runner",),
            runner_env=runner_env,
            aws_endpoint_url=env.get("GOLDENIMAGE_AWS_ENDPOINT_URL") or None,
            packer_communicator="none" if communicator == "none" else "ssh",
            job_ttl=seconds("GOLDENIMAGE_JOB_TTL_SECONDS", cls.job_ttl),
            termination_grace=seconds("GOLDENIMAGE_TERMINATION_GRACE_SECONDS", cls.termination_grace),
            retry_base=seconds("GOLDENIMAGE_RETRY_BASE_SECONDS", cls.retry_base),
            retry_cap=seconds("GOLDENIMAGE_RETRY_CAP_SECONDS", cls.retry_cap),
            resync=seconds("GOLDENIMAGE_RESYNC_SECONDS", cls.resync),
            artifact_check=seconds("GOLDENIMAGE_ARTIFACT_CHECK_SECONDS", cls.artifact_check),
            republish=seconds("GOLDENIMAGE_REPUBLISH_SECONDS", cls.republish),
            validation_networks=networks,
            ssm_parameter_prefix=prefix,
        )
