"""The build Job: shape (snapshot), hardening, identity, secrets and names."""

from __future__ import annotations

import json
import re
from typing import Any

from goldenimage.api import names
from goldenimage.api.goldenimage import SUPPLIED_VARIABLES
from goldenimage.api.imagebuild import ImageBuildSpec
from goldenimage.api.resources import ImageBuild, ObjectMeta
from goldenimage.config import Config
from goldenimage.kube import jobs
from support import recipes, snapshots

CONFIG = Config(runner_image="ghcr.io/goldenimage/packer-runner:0.1.0", runner_env={"HTTPS_PROXY": "http://proxy:3128"})


def build(text: str | None = None) -> ImageBuild:
    spec = recipes.spec(text) if text else recipes.example("web-base").spec
    return ImageBuild(
        metadata=ObjectMeta(name="web-base-7", namespace="platform", uid="1a2b3c4d-0000-0000-0000-000000000000"),
        spec=ImageBuildSpec(
            image="web-base", version=7, fingerprint="sha256:" + "a" * 64, reason="Initial", recipe=spec
        ),
    )


def make(text: str | None = None, *, attempt: int = 1, config: Config = CONFIG) -> dict[str, Any]:
    made = build(text)
    return jobs.build_job(made, made.spec.recipe.targets[0], attempt, config)


def test_snapshot() -> None:
    snapshots.check("job-web-base-aws-eu.json", json.dumps(make(attempt=2), indent=2, sort_keys=True) + "\n")


def test_never_retried_by_kubernetes_and_bounded_in_time() -> None:
    spec = make()["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 7200  # the default build timeout, 2h
    assert spec["ttlSecondsAfterFinished"] == 86400
    timed = make(
        "{targets: [{name: a, aws: {region: eu-west-1, source: {amiId: ami-0123456789abcdef0}}}],"
        " build: {timeout: 45m}}"
    )
    assert timed["spec"]["activeDeadlineSeconds"] == 2700


def test_restricted_pod_security_and_no_api_token() -> None:
    pod = make()["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["terminationGracePeriodSeconds"] >= 600
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/goldenimage/build"]["readOnly"] is True
    assert "/work" in mounts  # the only writable place
    assert all(e["value"].startswith("/work") for e in container["env"] if e["name"] in ("HOME", "TMPDIR"))


def test_identity_and_ownership() -> None:
    job = make()
    assert job["metadata"]["name"] == names.build_job("web-base-7", "aws-eu", 1)
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner["kind"] == "ImageBuild" and owner["name"] == "web-base-7" and owner["controller"] is True
    labels = job["metadata"]["labels"]
    assert labels["goldenimage.io/target"] == "aws-eu" and labels["goldenimage.io/attempt"] == "1"
    pod_meta = job["spec"]["template"]["metadata"]
    # The Pod says whose it is by itself, and stays with its result until the operator read it.
    assert pod_meta["labels"] == {**labels, "goldenimage.io/build-uid": made_uid(job)}
    assert pod_meta["finalizers"] == ["goldenimage.io/result"]
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "packer-aws"  # workload identity


def made_uid(job: dict[str, Any]) -> str:
    uid: str = job["metadata"]["ownerReferences"][0]["uid"]
    assert uid
    return uid


def test_secrets_only_as_secret_references() -> None:
    job = make(
        """
        targets: [{name: aws-eu, aws: {region: eu-west-1, source: {amiId: ami-0123456789abcdef0}}}]
        credentials: {aws: {secretRef: {name: aws-keys}}}
        secretVariables: [{name: rhsm_token, secretKeyRef: {name: rhsm, key: token}}]
        """
    )
    (container,) = job["spec"]["template"]["spec"]["containers"]
    # Under a prefix: the runner then knows every key of the Secret, and masks each value.
    assert container["envFrom"] == [{"secretRef": {"name": "aws-keys"}, "prefix": "GOLDENIMAGE_SECRET_"}]
    token = next(e for e in container["env"] if e["name"] == "PKR_VAR_rhsm_token")
    assert token == {"name": "PKR_VAR_rhsm_token", "valueFrom": {"secretKeyRef": {"name": "rhsm", "key": "token"}}}
    assert "--sensitive-env=PKR_VAR_rhsm_token" in container["args"]
    assert "--sensitive-env=AWS_SECRET_ACCESS_KEY" in container["args"]
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]


def test_operator_settings_reach_the_job() -> None:
    job = make(config=Config(runner_image="x", aws_endpoint_url="http://127.0.0.1:5000", runner_command=("/opt/r",)))
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/opt/r"]
    assert {"name": "PKR_VAR_aws_endpoint", "value": "http://127.0.0.1:5000"} in container["env"]


def test_user_template_gets_our_variables() -> None:
    job = make(
        """
        targets: [{name: aws-eu, aws: {region: eu-west-1, source: {amiId: ami-0123456789abcdef0}}}]
        template: {configMapRef: {name: tpl, key: main.pkr.hcl}, variables: {team: platform}}
        """
    )
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--template=/etc/goldenimage/build/user-template.pkr.hcl" in args
    assert "--user-template" in args
    assert "--var=build_id=web-base-7-1a2b3c4d" in args and "--var=team=platform" in args
    assert "--var=region=eu-west-1" in args
    # Everything the operator supplies is a name users may not set themselves.
    supplied = {a.removeprefix("--var=").partition("=")[0] for a in args if a.startswith("--var=")} - {"team"}
    assert supplied <= set(SUPPLIED_VARIABLES)


def test_long_names_fit_in_a_label() -> None:
    name = names.build_job("a" * 40 + "-123456", "t" * 32, 10)
    assert len(name) <= 63
    assert name != names.build_job("a" * 40 + "-123456", "t" * 32, 11)
    assert re.fullmatch(r"web-base-7-aws-eu-2-[0-9a-f]{8}", names.build_job("web-base-7", "aws-eu", 2))
    assert names.build_id("web-base-7", "1a2b3c4d-aaaa-bbbb-cccc-dddddddddddd") == "web-base-7-1a2b3c4d"
    # Cut before a dot or a dash, the hash still follows a letter or digit.
    cut = names.fit("a" * 53 + ".b" * 10)
    assert re.fullmatch(r"a{53}-[0-9a-f]{8}", cut), cut


def test_the_runner_image_runs_as_the_jobs_user() -> None:
    from goldenimage import paths

    dockerfile = (paths.REPO_ROOT / "packer-runner" / "Dockerfile").read_text()
    assert f"USER {jobs.RUNNER_UID}:{jobs.RUNNER_UID}" in dockerfile
    assert "HOME=/work/home" in dockerfile and jobs.WORK_DIR == "/work"


def test_validation_job_of_one_artifact() -> None:
    made = build()
    job = jobs.validation_job(made, made.spec.recipe.targets[0], "us-east-1", "ami-0123456789abcdef0", 1, CONFIG)
    assert job["metadata"]["name"] == names.validation_job(
        "web-base-7", made.spec.recipe.targets[0].name, "us-east-1", 1
    )
    assert job["metadata"]["labels"]["goldenimage.io/region"] == "us-east-1"
    assert job["metadata"]["labels"]["goldenimage.io/role"] == "validation"
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["goldenimage.io/region"] == "us-east-1"
    assert pod_labels["goldenimage.io/build-uid"] == made_uid(job)
    assert job["spec"]["template"]["metadata"]["finalizers"] == ["goldenimage.io/result"]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "validate" and "--image=ami-0123456789abcdef0" in args and "--region=us-east-1" in args
    instance_tags = json.loads(next(a for a in args if a.startswith("--tags=")).removeprefix("--tags="))
    assert instance_tags["goldenimage.io/build-id"] == "web-base-7-1a2b3c4d"
    assert instance_tags["goldenimage.io/role"] == "validation"
    assert instance_tags["goldenimage.io/namespace"] == "platform"
    assert job["spec"]["activeDeadlineSeconds"] == 25 * 60  # the example's 20m, plus 5 minutes to clean up
