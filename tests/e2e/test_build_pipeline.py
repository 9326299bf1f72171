"""The build pipeline end to end: the operator as a process, real Packer in Jobs run by the local
pod executor, AWS in moto on real machines (Packer connects over SSH and provisions them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from goldenimage import paths
from goldenimage.api import labels, names
from goldenimage.clouds.aws.adapter import AwsApi
from goldenimage_dev.aws import CREDENTIALS, NEWEST_DEBIAN12
from goldenimage_dev.stack import Stack
from support import examples, polling, procs
from support.builds import kill_runner, wait_built, wait_failed, wait_validation
from support.cluster import Cluster, condition_of
from support.ec2 import running_instances
from support.manifests import golden_image

pytestmark = pytest.mark.e2e


def build_id(build: dict[str, Any]) -> str:
    return names.build_id(build["metadata"]["name"], build["metadata"]["uid"])


def test_aws_example_builds_in_both_regions_and_versions_follow_the_spec(
    stack: Stack, cluster: Cluster, ns: str, aws: AwsApi, tmp_path: Path
) -> None:
    cluster.kubectl("create", "serviceaccount", "packer-aws", "-n", ns)
    for path in ("web-baseline-playbook.yaml", "aws-web-base.yaml"):
        cluster.kubectl("apply", "-n", ns, "-f", str(paths.EXAMPLES / path))
    build = wait_built(cluster, ns, "web-base-1")
    assert build["spec"]["reason"] == "Initial"
    assert build["spec"]["sources"] == {"aws-eu": NEWEST_DEBIAN12}  # the newest Debian 12 in moto

    (target,) = build["status"]["targets"]
    artifacts = {a["region"]: a["id"] for a in target["artifacts"]}
    assert set(artifacts) == {"eu-west-1", "us-east-1"}
    for region, ami in artifacts.items():
        (found,) = aws.ec2(region).describe_images(ImageIds=[ami])["Images"]
        found_tags = {t["Key"]: t["Value"] for t in found.get("Tags", [])}
        assert found_tags[labels.BUILD_ID] == build_id(build)
        assert found_tags["Role"] == "web"
        assert build_id(build) in found["Name"]

    # The artifacts are the ones Packer's manifest recorded for this run.
    job = cluster.get("job", target["jobName"], "-n", ns)
    (pod,) = cluster.get("pods", "-n", ns, "-l", f"job-name={job['metadata']['name']}")["items"]
    assert cluster.local is not None
    work = cluster.local.plane.directory / "x" / "p" / pod["metadata"]["uid"].replace("-", "")[:12] / "v" / "work"
    manifest = json.loads((work / "manifest.json").read_text())
    (entry,) = [b for b in manifest["builds"] if b["packer_run_uuid"] == manifest["last_run_uuid"]]
    assert entry["artifact_id"] == f"eu-west-1:{artifacts['eu-west-1']},us-east-1:{artifacts['us-east-1']}"

    polling.until(
        lambda: cluster.get("goldenimage", "web-base", "-n", ns).get("status", {}).get("latestBuild"),
        what="the GoldenImage's status",
    )
    image_status = cluster.get("goldenimage", "web-base", "-n", ns)["status"]
    assert image_status["latestVersion"] == 1 and image_status["latestBuild"] == "web-base-1"

    # Editing the spec yields version 2; applying the edited manifest again yields nothing new.
    documents = examples.documents(paths.EXAMPLES / "aws-web-base.yaml")
    documents[0]["spec"]["tags"]["Release"] = "2"
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump_all(documents))
    cluster.kubectl("apply", "-n", ns, "-f", str(edited))
    second = wait_built(cluster, ns, "web-base-2")
    assert second["spec"]["reason"] == "SpecChanged" and second["spec"]["version"] == 2
    assert cluster.kubectl("apply", "-n", ns, "-f", str(edited)).stdout.count("unchanged") == 2

    # A field that does not shape the image: the operator handles the new generation, builds nothing.
    cluster.kubectl(
        "patch",
        "goldenimage",
        "web-base",
        "-n",
        ns,
        "--type=merge",
        "-p",
        '{"spec": {"retention": {"keepVersions": 9}}}',
    )
    generation = cluster.get("goldenimage", "web-base", "-n", ns)["metadata"]["generation"]
    polling.until(
        lambda: cluster.get("goldenimage", "web-base", "-n", ns)["status"].get("observedGeneration") == generation,
        what="the operator to handle the new generation",
    )
    assert [b["metadata"]["name"] for b in cluster.get("imagebuilds", "-n", ns)["items"]] == [
        "web-base-1",
        "web-base-2",
    ]


def test_a_packer_failure_is_retried_then_reported(stack: Stack, cluster: Cluster, ns: str) -> None:
    missing = golden_image(
        "missing-ami",
        target={"region": "eu-west-1", "source": {"amiId": "ami-00000000"}},
        build={"maxAttempts": 2},
    )
    cluster.apply(missing, ns)
    build = wait_failed(cluster, ns, "missing-ami-1")
    (target,) = build["status"]["targets"]
    assert (target["attempt"], target["errorClass"], target["phase"]) == (2, "Retryable", "Failed")
    assert "InvalidAMIID.NotFound" in target["message"]
    jobs = sorted(j["metadata"]["name"] for j in cluster.get("jobs", "-n", ns)["items"])
    assert jobs == sorted(names.build_job("missing-ami-1", "aws", n) for n in (1, 2))

    def reasons() -> set[str]:
        events = cluster.get("events", "-n", ns)["items"]
        return {e["reason"] for e in events if e["involvedObject"]["kind"] == "ImageBuild"}

    # Events are posted in the background, after the status that led to them.
    polling.until(lambda: {"RetryScheduled", "TargetFailed"} <= reasons(), what="the retry and failure events")


def _wait_ready_reason(cluster: Cluster, ns: str, kind: str, name: str, reason: str) -> str:
    """The message of the object's Ready condition once its reason is `reason`."""

    def message() -> str | None:
        condition = condition_of(cluster.get_or_none(kind, name, ns), "Ready")
        return str(condition["message"]) if condition and condition["reason"] == reason else None

    return polling.until(message, what=f"{kind} {name} to be Ready=False with reason {reason}")


def test_a_missing_service_account_holds_the_build_until_it_exists(stack: Stack, cluster: Cluster, ns: str) -> None:
    waiting = golden_image(
        "waiting",
        target={"region": "eu-west-1", "source": {"amiId": "ami-0a1b2c3d4e5f60718"}},
        credentials={"aws": {"serviceAccountName": "packer-late"}},
    )
    cluster.apply(waiting, ns)
    message = _wait_ready_reason(cluster, ns, "imagebuild", "waiting-1", "MissingServiceAccount")
    assert "packer-late" in message
    assert cluster.get("jobs", "-n", ns)["items"] == []
    cluster.kubectl("create", "serviceaccount", "packer-late", "-n", ns)
    build = wait_built(cluster, ns, "waiting-1")
    assert build["status"]["targets"][0]["artifacts"]


def test_a_missing_credentials_secret_holds_the_image_until_it_exists(stack: Stack, cluster: Cluster, ns: str) -> None:
    keyed = golden_image(
        "keyed",
        target={
            "region": "eu-west-1",
            "source": {"amiFilter": {"name": "debian-12-*", "owners": ["136693071363"], "mostRecent": True}},
        },
        credentials={"aws": {"secretRef": {"name": "aws-keys"}}},
    )
    cluster.apply(keyed, ns)
    message = _wait_ready_reason(cluster, ns, "goldenimage", "keyed", "MissingCredentials")
    assert f"{ns}/aws-keys does not exist" in message
    assert cluster.get("imagebuilds", "-n", ns)["items"] == []
    literals = [f"--from-literal={k}={v}" for k, v in CREDENTIALS.items()]
    cluster.kubectl("create", "secret", "generic", "aws-keys", "-n", ns, *literals)
    build = wait_built(cluster, ns, "keyed-1")
    assert build["spec"]["sources"] == {"aws": NEWEST_DEBIAN12}


def test_what_only_the_models_refuse_is_reported_not_built(stack: Stack, cluster: Cluster, ns: str) -> None:
    """Admitted by the API server (CEL cannot check a cron field's range) but refused by the
    models: the image says why in its Ready condition and nothing is built."""
    cluster.apply(
        golden_image(
            "offbeat",
            target={"region": "eu-west-1", "source": {"amiId": NEWEST_DEBIAN12}},
            rebuild={"schedule": "61 3 * * *"},
        ),
        ns,
    )
    message = _wait_ready_reason(cluster, ns, "goldenimage", "offbeat", "InvalidSpec")
    assert "spec.rebuild.schedule" in message
    polling.until(
        lambda: any(
            e["reason"] == "InvalidSpec" and e["involvedObject"]["name"] == "offbeat"
            for e in cluster.get("events", "-n", ns)["items"]
        ),
        what="an InvalidSpec event",
    )
    assert cluster.get("imagebuilds", "-n", ns)["items"] == []


def test_an_invalid_template_fails_once_permanently_with_packers_message(
    stack: Stack, cluster: Cluster, ns: str
) -> None:
    template = 'source "amazon-ebs" "x" {\n  region    = "eu-west-1"\n  bogus_key = 1\n}\n'
    template += 'build {\n  sources = ["source.amazon-ebs.x"]\n}\n'
    cluster.kubectl("create", "configmap", "broken", "-n", ns, f"--from-literal=main.pkr.hcl={template}")
    broken = golden_image(
        "broken",
        target={"region": "eu-west-1", "source": {"amiId": "ami-0a1b2c3d4e5f60718"}},
        template={"configMapRef": {"name": "broken", "key": "main.pkr.hcl"}},
    )
    cluster.apply(broken, ns)
    build = wait_failed(cluster, ns, "broken-1")
    (target,) = build["status"]["targets"]
    assert (target["attempt"], target["errorClass"]) == (1, "Permanent")
    assert 'An argument named "bogus_key" is not expected here' in target["message"]
    jobs = [j["metadata"]["name"] for j in cluster.get("jobs", "-n", ns)["items"]]
    assert jobs == [names.build_job("broken-1", "aws", 1)]


# A user template whose provisioner holds the build mid-way, on its builder machine, with its
# resources created.
HANGING = """
variable "build_id" {
  type = string
}
variable "attempt" {
  type = string
}
variable "region" {
  type = string
}
variable "aws_endpoint" {
  type = string
}
source "amazon-ebs" "hang" {
  region                  = var.region
  source_ami              = "ami-0a1b2c3d4e5f60718"
  instance_type           = "t3.micro"
  ami_name                = "${var.build_id}-a${var.attempt}"
  ssh_username            = "admin"
  ssh_interface           = "private_ip"
  custom_endpoint_ec2     = var.aws_endpoint
  temporary_key_pair_name = "packer-${var.build_id}-aws-a${var.attempt}"
  run_tags = {
    "goldenimage.io/build-id" = var.build_id
    "goldenimage.io/target"   = "aws"
    "goldenimage.io/attempt"  = var.attempt
  }
}
build {
  sources = ["source.amazon-ebs.hang"]
  provisioner "shell" {
    inline = ["sleep 600"]
  }
}
"""


def _builder_instances(aws: AwsApi, identity: str) -> list[str]:
    return running_instances(aws, ["eu-west-1"], {labels.BUILD_ID: identity})


def _start_hanging_build(cluster: Cluster, ns: str, aws: AwsApi, name: str) -> tuple[dict[str, Any], set[str]]:
    groups_before = {g["GroupId"] for g in aws.ec2("eu-west-1").describe_security_groups()["SecurityGroups"]}
    cluster.kubectl("create", "configmap", "hang", "-n", ns, f"--from-literal=main.pkr.hcl={HANGING}")
    cluster.apply(
        golden_image(
            name,
            target={"region": "eu-west-1", "source": {"amiId": "ami-0a1b2c3d4e5f60718"}},
            template={"configMapRef": {"name": "hang", "key": "main.pkr.hcl"}},
            build={"maxAttempts": 1},
        ),
        ns,
    )
    build = polling.until(lambda: cluster.get_or_none("imagebuild", f"{name}-1", ns), what="the ImageBuild")
    polling.until(lambda: _builder_instances(aws, build_id(build)), timeout=90, what="Packer's builder instance")
    return build, groups_before


def _nothing_left(aws: AwsApi, identity: str, groups_before: set[str]) -> bool:
    """True when the build left nothing in the cloud; an AssertionError saying what it left
    otherwise (polling.until reports the last one when it times out)."""
    if instances := _builder_instances(aws, identity):
        raise AssertionError(f"instances left behind: {instances}")
    pairs = [k["KeyName"] for k in aws.ec2("eu-west-1").describe_key_pairs()["KeyPairs"]]
    if left := [p for p in pairs if identity in p]:
        raise AssertionError(f"key pairs left behind: {left}")
    groups = {g["GroupId"] for g in aws.ec2("eu-west-1").describe_security_groups()["SecurityGroups"]}
    if groups - groups_before:
        raise AssertionError(f"security groups left behind: {groups - groups_before}")
    return True


def test_deleting_the_pod_mid_build_leaves_no_cloud_resources(
    stack: Stack, cluster: Cluster, ns: str, aws: AwsApi
) -> None:
    build, groups_before = _start_hanging_build(cluster, ns, aws, "hang")
    identity = build_id(build)
    assert [p for p in (k["KeyName"] for k in aws.ec2("eu-west-1").describe_key_pairs()["KeyPairs"]) if identity in p]
    (pod,) = cluster.get("pods", "-n", ns, "-l", "goldenimage.io/build=hang-1")["items"]
    cluster.kubectl("delete", "pod", pod["metadata"]["name"], "-n", ns, "--wait=false")
    failed = wait_failed(cluster, ns, "hang-1")
    # The operator's finalizer kept the Pod until its termination message was read: the runner
    # says what happened. Then the Pod goes.
    assert "the build was stopped (SIGTERM)" in failed["status"]["targets"][0]["message"]
    polling.until(
        lambda: cluster.get("pods", "-n", ns, "-l", "goldenimage.io/build=hang-1")["items"] == [],
        what="the build's Pod to go once its result was recorded",
    )
    assert _nothing_left(aws, identity, groups_before)


def test_deleting_the_image_mid_build_stops_the_build_and_cleans_up(
    stack: Stack, cluster: Cluster, ns: str, aws: AwsApi
) -> None:
    build, groups_before = _start_hanging_build(cluster, ns, aws, "doomed")
    identity = build_id(build)
    cluster.kubectl("delete", "goldenimage", "doomed", "-n", ns, "--wait=false")
    polling.until(
        lambda: cluster.get_or_none("imagebuild", "doomed-1", ns) is None,
        timeout=120,
        what="the ImageBuild to be deleted",
    )
    polling.until(
        lambda: cluster.get("pods", "-n", ns, "-l", "goldenimage.io/build=doomed-1")["items"] == [],
        what="the build's Pod to be deleted",
    )
    assert _nothing_left(aws, identity, groups_before)


def test_a_killed_build_is_swept(stack: Stack, cluster: Cluster, ns: str, aws: AwsApi) -> None:
    """SIGKILL (a crashed node): Packer cannot clean up, so the operator sweeps what the failed
    attempt left, by its build id, target and attempt."""
    build, groups_before = _start_hanging_build(cluster, ns, aws, "killed")
    identity = build_id(build)
    uid = kill_runner(cluster, ns, "killed-1")
    failed = wait_failed(cluster, ns, "killed-1")
    assert "exit code 137" in failed["status"]["targets"][0]["message"]
    # Packer died with its container, before it could clean up.
    assert procs.in_container(uid) == []
    polling.until(
        lambda: _nothing_left(aws, identity, groups_before),
        what="the builder instance, key pair and security group to be swept",
    )


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_deletion_policy(stack: Stack, cluster: Cluster, ns: str, aws: AwsApi, policy: str) -> None:
    cluster.apply(
        golden_image(
            "policy",
            target={
                "region": "eu-west-1",
                "copyToRegions": ["eu-central-1"],
                "source": {"amiId": "ami-0a1b2c3d4e5f60718"},
            },
            retention={"deletionPolicy": policy},
        ),
        ns,
    )
    build = wait_built(cluster, ns, "policy-1")
    artifacts = [(a["region"], a["id"]) for a in build["status"]["targets"][0]["artifacts"]]
    snapshots = {
        (region, m["Ebs"]["SnapshotId"])
        for region, ami in artifacts
        for m in aws.ec2(region).describe_images(ImageIds=[ami])["Images"][0]["BlockDeviceMappings"]
        if "Ebs" in m
    }
    assert len(artifacts) == 2 and snapshots
    cluster.kubectl("delete", "goldenimage", "policy", "-n", ns)
    polling.until(
        lambda: cluster.get_or_none("imagebuild", "policy-1", ns) is None, timeout=120, what="the build's deletion"
    )
    for region, ami in artifacts:
        left = aws.ec2(region).describe_images(Filters=[{"Name": "image-id", "Values": [ami]}])["Images"]
        assert bool(left) == (policy == "Retain"), (region, ami)
    for region, snapshot in snapshots:
        left = aws.ec2(region).describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot]}])["Snapshots"]
        assert bool(left) == (policy == "Retain"), (region, snapshot)


UNTAGGED = HANGING.replace('  provisioner "shell" {\n    inline = ["sleep 600"]\n  }\n', "")


def test_an_untagged_artifact_is_kept_and_does_not_hold_up_deletion(
    stack: Stack, cluster: Cluster, ns: str, aws: AwsApi
) -> None:
    """A user template that does not tag its AMI: the AMI may be anyone's, so Delete keeps it,
    says so, and the deletion completes."""
    cluster.kubectl("create", "configmap", "untagged", "-n", ns, f"--from-literal=main.pkr.hcl={UNTAGGED}")
    cluster.apply(
        golden_image(
            "untagged",
            target={"region": "eu-west-1", "source": {"amiId": "ami-0a1b2c3d4e5f60718"}},
            template={"configMapRef": {"name": "untagged", "key": "main.pkr.hcl"}},
            retention={"deletionPolicy": "Delete"},
        ),
        ns,
    )
    build = wait_built(cluster, ns, "untagged-1")
    ((region, ami),) = [(a["region"], a["id"]) for a in build["status"]["targets"][0]["artifacts"]]
    cluster.kubectl("delete", "goldenimage", "untagged", "-n", ns, "--wait=false")
    polling.until(
        lambda: cluster.get_or_none("imagebuild", "untagged-1", ns) is None, timeout=120, what="the build's deletion"
    )
    assert aws.ec2(region).describe_images(ImageIds=[ami])["Images"]
    polling.until(
        lambda: [
            e["message"]
            for e in cluster.get("events", "-n", ns)["items"]
            if e["reason"] == "ArtifactsKept" and ami in e["message"]
        ],
        what="an event saying the AMI was kept",
    )


def _held_pods(cluster: Cluster, ns: str, build: str) -> list[str]:
    """The build's Pods that the operator's result finalizer still keeps."""
    pods = cluster.get("pods", "-n", ns, "-l", f"{labels.BUILD}={build}")["items"]
    return [p["metadata"]["name"] for p in pods if labels.RESULT_FINALIZER in p["metadata"].get("finalizers", [])]


def _start_operator(stack: Stack, env: dict[str, str]) -> None:
    stack.start_operator(env)
    assert stack.operator is not None
    procs.started([stack.operator.pid])


@pytest.mark.parametrize("removed_by", ["user", "ttl"])
def test_a_result_whose_job_was_removed_before_the_operator_read_it_is_recorded_not_retried(
    stack: Stack, cluster: Cluster, ns: str, aws: AwsApi, removed_by: str
) -> None:
    """The operator is down while the build finishes, and the finished Job is removed: by a
    user's `kubectl delete job` (in the background: the Job goes at once), or by its TTL (in the
    foreground: the Job stays, marked, while its Pod does). The Pod, kept by the operator's
    finalizer, still says what was built."""
    job = names.build_job("kept-1", "aws", 1)
    try:
        if removed_by == "ttl":
            stack.stop_operator()
            _start_operator(stack, {"GOLDENIMAGE_JOB_TTL_SECONDS": "1"})  # the Jobs it creates carry it
        short = HANGING.replace("sleep 600", "sleep 20")  # time to stop the operator while it builds
        cluster.kubectl("create", "configmap", "short", "-n", ns, f"--from-literal=main.pkr.hcl={short}")
        cluster.apply(
            golden_image(
                "kept",
                target={"region": "eu-west-1", "source": {"amiId": "ami-0a1b2c3d4e5f60718"}},
                template={"configMapRef": {"name": "short", "key": "main.pkr.hcl"}},
                build={"maxAttempts": 1},  # a lost result would fail the version
            ),
            ns,
        )
        polling.until(lambda: cluster.get_or_none("job", job, ns), timeout=60, what="the build Job")
        stack.stop_operator()
        building = cluster.get("imagebuild", "kept-1", "-n", ns)["status"]["targets"][0]
        assert building["phase"] == "Building", building

        def complete() -> bool:
            found = cluster.get_or_none("job", job, ns) or {}
            conditions = found.get("status", {}).get("conditions", [])
            return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)

        polling.until(complete, timeout=300, what="the build Job to complete")
        if removed_by == "user":
            cluster.kubectl("delete", "job", job, "-n", ns, "--cascade=background", "--wait=false")
            polling.until(lambda: cluster.get_or_none("job", job, ns) is None, what="the Job to be gone")
        else:
            polling.until(
                lambda: (cluster.get_or_none("job", job, ns) or {}).get("metadata", {}).get("deletionTimestamp"),
                what="the TTL controller to delete the Job",
            )

        # The garbage collector deleted the Pod; the finalizer keeps it, result and all.
        def kept() -> dict[str, Any] | None:
            pods = cluster.get("pods", "-n", ns, "-l", f"job-name={job}")["items"]
            return pods[0] if pods and pods[0]["metadata"].get("deletionTimestamp") else None

        pod = polling.until(kept, what="the Pod to be marked for deletion")
        assert pod["metadata"]["finalizers"] == [labels.RESULT_FINALIZER]
        assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
        if removed_by == "ttl":  # foreground deletion: the Job waits for its Pod
            assert cluster.get("job", job, "-n", ns)["metadata"]["deletionTimestamp"]
        assert cluster.get("imagebuild", "kept-1", "-n", ns)["status"]["targets"][0]["phase"] == "Building"
    finally:
        stack.stop_operator()
        _start_operator(stack, {})

    build = wait_built(cluster, ns, "kept-1")
    (target,) = build["status"]["targets"]
    assert (target["attempt"], target["jobName"]) == (1, job)
    ((region, ami),) = [(a["region"], a["id"]) for a in target["artifacts"]]
    assert region == "eu-west-1"
    assert aws.ec2(region).describe_images(ImageIds=[ami])["Images"]
    events = cluster.get("events", "-n", ns)["items"]
    assert "RetryScheduled" not in {e["reason"] for e in events}
    jobs = {j["metadata"]["name"] for j in cluster.get("jobs", "-n", ns)["items"]}
    assert names.build_job("kept-1", "aws", 2) not in jobs
    # Recorded, the Pod is let go and goes (and so its Job, when the TTL was removing it); so
    # are the validation Pods once validated.
    wait_validation(cluster, ns, "kept-1")
    polling.until(lambda: cluster.get_or_none("pod", pod["metadata"]["name"], ns) is None, what="the Pod to go")
    polling.until(lambda: cluster.get_or_none("job", job, ns) is None, what="the build Job to go")
    polling.until(lambda: _held_pods(cluster, ns, "kept-1") == [], what="no Pod held by the finalizer")
