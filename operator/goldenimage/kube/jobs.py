"""The build Job of one target and attempt (pure).

One Job per target and attempt, never retried by Kubernetes (`backoffLimit: 0`: retries are the
operator's, as new attempts). Pods run under the restricted Pod Security profile with a
read-only root filesystem and no Kubernetes API token, with a long grace period so Packer can
clean up after SIGTERM. Secrets reach Packer only as environment variables from Secrets.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from ..api.durations import parse as parse_duration
from ..api.goldenimage import BuildPolicy, GoldenImageSpec, Target, Validation
from ..api.resources import ImageBuild
from ..config import Config
from ..packer import bundle as packer_bundle
from ..packer import inputs as packer_inputs
from ..packer import tags
from ..packer.render import template_name
from . import labels, names

INPUTS_DIR = "/etc/goldenimage/build"
WORK_DIR = "/work"
TERMINATION_LOG = "/dev/termination-log"
RUNNER_UID = 65532
# Environment variables that may hold credentials: never printed by the runner.
CREDENTIAL_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "ARM_CLIENT_SECRET")


def owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": "goldenimage.io/v1alpha1",
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def restricted_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUNNER_UID,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _credentials_env(recipe: GoldenImageSpec, target: Target) -> tuple[str | None, list[dict[str, Any]]]:
    """(service account, envFrom) for the target's cloud identity."""
    creds = getattr(recipe.credentials, target.cloud, None) if recipe.credentials else None
    if creds is None:
        return None, []
    if creds.secret_ref is not None:
        return None, [{"secretRef": {"name": creds.secret_ref.name}}]
    return creds.service_account_name, []


def _build_id(build: ImageBuild) -> str:
    return names.build_id(build.metadata.name, build.metadata.uid or "")


def _runner_job(
    *,
    name: str,
    job_labels: dict[str, str],
    build: ImageBuild,
    target: Target,
    args: list[str],
    env: list[dict[str, Any]],
    deadline_seconds: int,
    config: Config,
) -> dict[str, Any]:
    """A Job running the runner with the build's inputs mounted and the target's cloud identity."""
    meta = build.metadata
    base_env: list[dict[str, Any]] = [
        {"name": "HOME", "value": f"{WORK_DIR}/home"},
        {"name": "TMPDIR", "value": f"{WORK_DIR}/tmp"},
        {"name": "PACKER_CACHE_DIR", "value": f"{WORK_DIR}/packer-cache"},
        {"name": "CHECKPOINT_DISABLE", "value": "1"},
        {"name": "GOLDENIMAGE_BUILD_ID", "value": _build_id(build)},
        *({"name": k, "value": v} for k, v in sorted(config.runner_env.items())),
    ]
    if target.cloud == "aws" and config.aws_endpoint_url:
        base_env.append({"name": "GOLDENIMAGE_AWS_ENDPOINT_URL", "value": config.aws_endpoint_url})
    service_account, env_from = _credentials_env(build.spec.recipe, target)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": int(config.termination_grace.total_seconds()),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
            "fsGroup": RUNNER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "runner",
                "image": config.runner_image,
                "command": list(config.runner_command),
                "args": args,
                "env": [*base_env, *env],
                "envFrom": env_from,
                "securityContext": restricted_security_context(),
                "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "File",
                "volumeMounts": [
                    {"name": "inputs", "mountPath": INPUTS_DIR, "readOnly": True},
                    {"name": "work", "mountPath": WORK_DIR},
                ],
            }
        ],
        "volumes": [
            {"name": "inputs", "configMap": {"name": names.inputs(meta.name)}},
            {"name": "work", "emptyDir": {"sizeLimit": "10Gi"}},
        ],
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta.namespace,
            "labels": job_labels,
            "ownerReferences": [owner_reference("ImageBuild", meta.name, meta.uid or "")],
        },
        "spec": {
            "backoffLimit": 0,
            "parallelism": 1,
            "completions": 1,
            "activeDeadlineSeconds": deadline_seconds,
            "ttlSecondsAfterFinished": int(config.job_ttl.total_seconds()),
            "template": {"metadata": {"labels": job_labels}, "spec": pod_spec},
        },
    }


def _job_labels(build: ImageBuild, target: Target, attempt: int, role: str) -> dict[str, str]:
    return labels.for_job(build.spec.image, build.metadata.name, build.spec.version, target.name, attempt, role)


def build_job(build: ImageBuild, target: Target, attempt: int, config: Config) -> dict[str, Any]:
    recipe = build.spec.recipe
    timeout = parse_duration((recipe.build or BuildPolicy()).timeout)
    user_template = recipe.template is not None
    template = packer_inputs.USER_TEMPLATE if user_template else template_name(target)
    args = [
        "build",
        f"--template={INPUTS_DIR}/{template}",
        f"--inputs={INPUTS_DIR}",
        f"--work-dir={WORK_DIR}",
        f"--result={TERMINATION_LOG}",
        f"--var=attempt={attempt}",
    ]
    args += [f"--cloud={target.cloud}", f"--region={target.location}", f"--target={target.name}"]
    if target.aws is not None and target.aws.share_with is not None:
        args += [f"--share-org={arn}" for arn in target.aws.share_with.organization_arns]
    if recipe.template is not None:
        extra = {"build_id": _build_id(build), "target": target.name, "cloud": target.cloud, "region": target.location}
        args += ["--user-template", *(f"--var={k}={v}" for k, v in {**recipe.template.variables, **extra}.items())]
    env: list[dict[str, Any]] = []
    if target.cloud == "aws" and config.aws_endpoint_url:
        env.append({"name": "PKR_VAR_aws_endpoint", "value": config.aws_endpoint_url})
    sensitive = list(CREDENTIAL_ENV)
    for secret in recipe.secret_variables:
        variable = f"PKR_VAR_{secret.name}"
        env.append(
            {
                "name": variable,
                "valueFrom": {"secretKeyRef": {"name": secret.secret_key_ref.name, "key": secret.secret_key_ref.key}},
            }
        )
        sensitive.append(variable)
    args += [f"--sensitive-env={name}" for name in sensitive]
    return _runner_job(
        name=names.build_job(build.metadata.name, target.name, attempt),
        job_labels=_job_labels(build, target, attempt, "build"),
        build=build,
        target=target,
        args=args,
        env=env,
        deadline_seconds=int(timeout.total_seconds()),
        config=config,
    )


# Beyond the validation's own timeout (after which the runner terminates its instance), time for
# the clean-up before Kubernetes stops the Job.
VALIDATION_CLEANUP = timedelta(minutes=5)


def validation_job(
    build: ImageBuild, target: Target, region: str, artifact: str, attempt: int, config: Config
) -> dict[str, Any]:
    recipe, meta = build.spec.recipe, build.metadata
    timeout = parse_duration((recipe.validation or Validation()).timeout)
    instance_tags = {
        tags.BUILD_ID: _build_id(build),
        tags.IMAGE: build.spec.image,
        tags.NAMESPACE: meta.namespace or "",
        tags.VERSION: str(build.spec.version),
        tags.TARGET: target.name,
        tags.ROLE: "validation",
        tags.MANAGED_BY: tags.MANAGER,
        "Name": f"validate-{meta.name}-{target.name}",
    }
    args = [
        "validate",
        f"--recipe={INPUTS_DIR}/{packer_bundle.RECIPE}",
        f"--target={target.name}",
        f"--region={region}",
        f"--image={artifact}",
        f"--tags={json.dumps(instance_tags, sort_keys=True)}",
        f"--result={TERMINATION_LOG}",
    ]
    return _runner_job(
        name=names.validation_job(meta.name, target.name, region, attempt),
        job_labels={**_job_labels(build, target, attempt, "validate"), labels.REGION: region},
        build=build,
        target=target,
        args=args,
        env=(
            [{"name": "GOLDENIMAGE_VALIDATION_NETWORKS", "value": ",".join(config.validation_networks)}]
            if config.validation_networks
            else []
        ),
        deadline_seconds=int((timeout + VALIDATION_CLEANUP).total_seconds()),
        config=config,
    )
