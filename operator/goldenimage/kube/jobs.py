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

from ..api import labels, names
from ..api.durations import parse as parse_duration
from ..api.goldenimage import GoldenImageSpec, Target
from ..api.group import API_VERSION
from ..api.identity import BuildIdentity
from ..api.resources import ImageBuild
from ..clouds import registry
from ..config import Config
from ..packer import bundle as packer_bundle
from ..packer import inputs as packer_inputs
from ..packer.render import template_name

INPUTS_DIR = "/etc/goldenimage/build"
WORK_DIR = "/work"
TERMINATION_LOG = "/dev/termination-log"
RUNNER_UID = 65532


def owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
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
    creds = recipe.credentials_for(target.cloud)
    if creds is None:
        return None, []
    if creds.secret_ref is not None:
        return None, [{"secretRef": {"name": creds.secret_ref.name}, "prefix": labels.SECRET_ENV_PREFIX}]
    return creds.service_account_name, []


def _runner_env(build: ImageBuild, target: Target, config: Config) -> list[dict[str, Any]]:
    """What every runner container gets: writable places under the work directory, no calls home,
    the build's id, the operator's runner env and the target's cloud env."""
    return [
        {"name": "HOME", "value": f"{WORK_DIR}/home"},
        {"name": "TMPDIR", "value": f"{WORK_DIR}/tmp"},
        {"name": "PACKER_CACHE_DIR", "value": f"{WORK_DIR}/packer-cache"},
        {"name": "CHECKPOINT_DISABLE", "value": "1"},
        {"name": "GOLDENIMAGE_BUILD_ID", "value": BuildIdentity.of(build).build_id},
        *({"name": k, "value": v} for k, v in sorted(config.runner_env.items())),
        *registry.of(target).job_env(target, config),
    ]


def _runner_container(
    args: list[str], env: list[dict[str, Any]], env_from: list[dict[str, Any]], config: Config
) -> dict[str, Any]:
    return {
        "name": "runner",
        "image": config.runner_image,
        "command": list(config.runner_command),
        "args": args,
        "env": env,
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


def _pod_spec(
    build: ImageBuild, target: Target, args: list[str], env: list[dict[str, Any]], config: Config
) -> dict[str, Any]:
    """The runner's Pod: the build's inputs mounted, and the target's cloud identity."""
    service_account, env_from = _credentials_env(build.spec.recipe, target)
    container = _runner_container(args, [*_runner_env(build, target, config), *env], env_from, config)
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
        "containers": [container],
        "volumes": [
            {"name": "inputs", "configMap": {"name": names.inputs(build.metadata.name)}},
            {"name": "work", "emptyDir": {"sizeLimit": "10Gi"}},
        ],
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    return pod_spec


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
            "template": {
                "metadata": {
                    "labels": {**job_labels, labels.BUILD_UID: meta.uid or ""},
                    "finalizers": [labels.RESULT_FINALIZER],
                },
                "spec": _pod_spec(build, target, args, env, config),
            },
        },
    }


def _job_labels(build: ImageBuild, target: Target, attempt: int, role: str) -> dict[str, str]:
    return labels.for_job(build.spec.image, build.metadata.name, build.spec.version, target.name, attempt, role)


def build_job(build: ImageBuild, target: Target, attempt: int, config: Config) -> dict[str, Any]:
    recipe = build.spec.recipe
    timeout = parse_duration(recipe.build_policy.timeout)
    template = packer_inputs.USER_TEMPLATE if recipe.template is not None else template_name(target)
    args = [
        "build",
        f"--template={INPUTS_DIR}/{template}",
        f"--inputs={INPUTS_DIR}",
        f"--work-dir={WORK_DIR}",
        f"--result={TERMINATION_LOG}",
        f"--target={target.name}",
        f"--var=attempt={attempt}",
    ]
    if recipe.template is not None:
        extra = {
            "build_id": BuildIdentity.of(build).build_id,
            "target": target.name,
            "cloud": target.cloud,
            "region": registry.of(target).location(target),
        }
        args += ["--user-template", *(f"--var={k}={v}" for k, v in {**recipe.template.variables, **extra}.items())]
    env: list[dict[str, Any]] = []
    sensitive = list(registry.of(target).sensitive_env)
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
        job_labels=_job_labels(build, target, attempt, labels.ROLE_BUILD),
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
    timeout = parse_duration(recipe.validation_policy.timeout)
    instance_tags = {
        labels.BUILD_ID: BuildIdentity.of(build).build_id,
        labels.IMAGE: build.spec.image,
        labels.NAMESPACE: meta.namespace or "",
        labels.VERSION: str(build.spec.version),
        labels.TARGET: target.name,
        labels.ROLE: labels.ROLE_VALIDATION,
        labels.MANAGED_BY: labels.MANAGER,
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
        job_labels={**_job_labels(build, target, attempt, labels.ROLE_VALIDATION), labels.REGION: region},
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
