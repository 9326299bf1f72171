"""The AWS adapter against moto: what a sweep may touch, what an artifact deletion refuses, and
where a channel's pointer is published."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from goldenimage.api import labels
from goldenimage.api.errors import CloudError, ForeignArtifactError, SourceNotFoundError
from goldenimage.api.goldenimage import Target
from goldenimage.api.imagechannel import AwsPublish
from goldenimage.api.labels import REVOKED
from goldenimage.clouds.aws.adapter import AwsApi
from goldenimage.clouds.aws.publish import Publisher
from goldenimage.clouds.base import Pointer, PublishScope
from goldenimage_dev.aws import CREDENTIALS, NEWEST_DEBIAN12, Moto
from support import procs

pytestmark = pytest.mark.integration

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    server = Moto.start()
    assert server.process is not None
    procs.started([server.process.pid])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws(moto: Moto) -> AwsApi:
    return AwsApi(endpoint_url=moto.endpoint, credentials=CREDENTIALS)


def _tags(build_id: str, target: str = "aws", attempt: int = 1) -> list[dict[str, str]]:
    tags = {labels.BUILD_ID: build_id, labels.TARGET: target, labels.ATTEMPT: str(attempt)}
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _builder(aws: AwsApi, build_id: str, attempt: int, *, tag_group: bool) -> tuple[str, str, str]:
    """What Packer creates for one attempt: key pair, temporary group, tagged instance."""
    ec2 = aws.ec2(REGION)
    pair = f"packer-{build_id}-aws-a{attempt}"
    ec2.create_key_pair(KeyName=pair)
    group = ec2.create_security_group(GroupName=f"packer_{build_id}-{attempt}", Description="Temporary group")
    if tag_group:
        ec2.create_tags(Resources=[group["GroupId"]], Tags=_tags(build_id, attempt=attempt))
    instance = ec2.run_instances(
        ImageId=NEWEST_DEBIAN12,
        MinCount=1,
        MaxCount=1,
        KeyName=pair,
        SecurityGroupIds=[group["GroupId"]],
        TagSpecifications=[{"ResourceType": "instance", "Tags": _tags(build_id, attempt=attempt)}],
    )["Instances"][0]["InstanceId"]
    return pair, group["GroupId"], instance


def _image(aws: AwsApi, build_id: str | None, name: str) -> str:
    ec2 = aws.ec2(REGION)
    instance = ec2.run_instances(ImageId=NEWEST_DEBIAN12, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    request: dict[str, Any] = {"InstanceId": instance, "Name": name}
    if build_id is not None:
        request["TagSpecifications"] = [{"ResourceType": "image", "Tags": _tags(build_id)}]
    image: str = ec2.create_image(**request)["ImageId"]
    ec2.terminate_instances(InstanceIds=[instance])
    return image


def test_a_sweep_takes_only_its_attempt_including_an_untagged_temporary_group(aws: AwsApi) -> None:
    # Attempt 1 was killed before the runner could tag its group; attempt 2 still runs.
    pair1, group1, instance1 = _builder(aws, "sweep-1-abc", 1, tag_group=False)
    pair2, group2, instance2 = _builder(aws, "sweep-1-abc", 2, tag_group=True)
    other = _builder(aws, "other-1-def", 1, tag_group=True)

    found = {(r.kind, r.id) for r in aws.leftovers("sweep-1-abc", [REGION], "aws", 1)}
    assert found == {("instance", instance1), ("key-pair", pair1), ("security-group", group1)}

    aws.sweep("sweep-1-abc", [REGION], "aws", 1)
    ec2 = aws.ec2(REGION)
    states = {
        i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
    }
    assert states[instance1] == "terminated"
    assert states[instance2] == states[other[2]] == "running"
    pairs = {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]}
    assert pair1 not in pairs and {pair2, other[0]} <= pairs
    groups = {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    assert group1 not in groups and {group2, other[1]} <= groups
    # Swept: nothing of attempt 1 is found again, even though its instance is still listed.
    assert aws.leftovers("sweep-1-abc", [REGION], "aws", 1) == []


def test_the_runner_tags_the_temporary_group_for_the_sweep(aws: AwsApi) -> None:
    group = aws.ec2(REGION).create_security_group(GroupName="packer_0123-tagged", Description="Temporary group")
    aws.tag_security_group(REGION, "packer_0123-tagged", {labels.BUILD_ID: "tagged-1-abc", labels.TARGET: "aws"})
    found = aws.leftovers("tagged-1-abc", [REGION], "aws")
    assert [(r.kind, r.id) for r in found] == [("security-group", group["GroupId"])]


def test_deleting_an_artifact_needs_the_builds_tag_and_takes_its_snapshots(aws: AwsApi) -> None:
    ec2 = aws.ec2(REGION)
    foreign = _image(aws, None, "somebody-elses")
    with pytest.raises(ForeignArtifactError, match="does not carry"):
        aws.delete_artifact(REGION, foreign, "mine-1-abc")
    assert ec2.describe_images(ImageIds=[foreign])["Images"]

    mine = _image(aws, "mine-1-abc", "mine-1-abc-a1")
    (snapshot,) = [
        m["Ebs"]["SnapshotId"] for m in ec2.describe_images(ImageIds=[mine])["Images"][0]["BlockDeviceMappings"]
    ]
    deleted = aws.delete_artifact(REGION, mine, "mine-1-abc")
    assert {(r.kind, r.id) for r in deleted} == {("image", mine), ("snapshot", snapshot)}
    assert aws.missing_artifacts([(REGION, mine), (REGION, foreign)]) == {(REGION, mine)}
    assert snapshot not in {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    # Already gone: nothing to do, no error.
    assert aws.delete_artifact(REGION, mine, "mine-1-abc") == []


def test_a_revoked_image_is_no_longer_a_source(aws: AwsApi) -> None:
    target = Target.model_validate(
        {
            "name": "aws",
            "aws": {"region": REGION, "source": {"amiFilter": {"name": "base-*", "owners": ["self"]}}},
        }
    )
    with pytest.raises(SourceNotFoundError, match="no AMI"):
        aws.resolve_source(target)
    images = {_image(aws, "base-1-abc", "base-1"), _image(aws, "base-2-abc", "base-2")}
    picked = aws.resolve_source(target)
    assert picked in images
    aws.deprecate(REGION, picked, "CVE-2026-0001")
    described = aws.ec2(REGION).describe_images(ImageIds=[picked])["Images"][0]
    assert {t["Key"]: t["Value"] for t in described["Tags"]}[REVOKED] == "CVE-2026-0001"
    assert aws.resolve_source(target) == (images - {picked}).pop()


def test_publication_moves_the_parameter_and_the_tag_and_leaves_foreign_parameters_alone(aws: AwsApi) -> None:
    ssm = aws.client("ssm", REGION)
    v1, v2 = _image(aws, "pub-1-abc", "pub-1"), _image(aws, "pub-2-abc", "pub-2")
    owned = [{"Key": labels.NAMESPACE, "Value": "team-a"}, {"Key": labels.IMAGE, "Value": "pub"}]
    for image in (v1, v2):
        aws.ec2(REGION).create_tags(Resources=[image], Tags=owned)
    publish = AwsPublish.model_validate(
        {"ssmParameter": "/golden/pub/prod", "tag": {"key": "channel/prod", "value": "true"}}
    )
    scope = PublishScope(namespace="team-a", image="pub", channel="prod")

    def tagged() -> set[str]:
        found = aws.ec2(REGION).describe_images(Filters=[{"Name": "tag:channel/prod", "Values": ["true"]}])
        return {i["ImageId"] for i in found["Images"]}

    changes = aws.publish(scope, publish, [Pointer("aws", REGION, v1)], [])
    assert ssm.get_parameter(Name="/golden/pub/prod")["Parameter"]["Value"] == v1
    assert tagged() == {v1}
    assert aws.publish(scope, publish, [Pointer("aws", REGION, v1)], []) == []  # idempotent
    assert changes

    aws.publish(scope, publish, [Pointer("aws", REGION, v2)], [Pointer("aws", REGION, v1)])
    assert ssm.get_parameter(Name="/golden/pub/prod")["Parameter"]["Value"] == v2
    assert tagged() == {v2}

    ssm.put_parameter(Name="/golden/pub/foreign", Value="not an AMI", Type="String")
    foreign = AwsPublish(ssm_parameter="/golden/pub/foreign")
    with pytest.raises(CloudError, match="not an aws:ec2:image parameter"):
        aws.publish(scope, foreign, [Pointer("aws", REGION, v2)], [])
    assert ssm.get_parameter(Name="/golden/pub/foreign")["Parameter"]["Value"] == "not an AMI"


# -- two teams: a channel never takes over another team's pointer ------------------------------

TEAM_A = PublishScope(namespace="team-a", image="web", channel="prod", uid="uid-a")
TEAM_B = PublishScope(namespace="team-b", image="web", channel="prod", uid="uid-b")


def _team_image(aws: AwsApi, scope: PublishScope, build_id: str) -> str:
    """An AMI as a build of the scope's namespace and image leaves it."""
    image = _image(aws, build_id, build_id)
    tags = {labels.NAMESPACE: scope.namespace, labels.IMAGE: scope.image}
    aws.ec2(REGION).create_tags(Resources=[image], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    return image


def _parameter_tags(aws: AwsApi, name: str) -> dict[str, str]:
    found = aws.client("ssm", REGION).list_tags_for_resource(ResourceType="Parameter", ResourceId=name)
    return {t["Key"]: t["Value"] for t in found["TagList"]}


def _image_tags(aws: AwsApi, image: str) -> dict[str, str]:
    described = aws.ec2(REGION).describe_images(ImageIds=[image])["Images"][0]
    return {t["Key"]: t["Value"] for t in described.get("Tags", [])}


def test_a_parameter_another_team_created_is_neither_overwritten_nor_deleted(aws: AwsApi) -> None:
    ssm = aws.client("ssm", REGION)
    theirs, ours = _team_image(aws, TEAM_B, "b-web-1-abc"), _team_image(aws, TEAM_A, "a-web-1-abc")
    # Team B's own tooling wrote it: no ownership tags at all.
    ssm.put_parameter(Name="/team-b/web", Value=theirs, Type="String", DataType="aws:ec2:image")
    attack = AwsPublish(ssm_parameter="/team-b/web")

    with pytest.raises(CloudError) as refused:
        aws.publish(TEAM_A, attack, [Pointer("aws", REGION, ours)], [])
    assert str(refused.value) == (
        f"SSM parameter /team-b/web in {REGION} exists and is not owned by channel team-a/prod: "
        "delete it or publish elsewhere"
    )
    assert ssm.get_parameter(Name="/team-b/web")["Parameter"]["Value"] == theirs

    # The channel pointing nowhere withdraws only what it owns.
    changes = aws.publish(TEAM_A, attack, [], [Pointer("aws", REGION, ours)])
    assert ssm.get_parameter(Name="/team-b/web")["Parameter"]["Value"] == theirs
    assert changes == [f"SSM parameter /team-b/web in {REGION} is not this channel's: left alone"]


def test_a_parameter_another_teams_channel_owns_is_refused_to_a_channel_of_the_same_name(aws: AwsApi) -> None:
    ssm = aws.client("ssm", REGION)
    theirs, ours = _team_image(aws, TEAM_B, "b-web-2-abc"), _team_image(aws, TEAM_A, "a-web-2-abc")
    section = AwsPublish(ssm_parameter="/team-b/api")
    aws.publish(TEAM_B, section, [Pointer("aws", REGION, theirs)], [])
    assert _parameter_tags(aws, "/team-b/api") == {
        labels.MANAGED_BY: labels.MANAGER,
        labels.NAMESPACE: "team-b",
        labels.CHANNEL: "prod",
        labels.CHANNEL_UID: "uid-b",
    }

    with pytest.raises(CloudError, match="is not owned by channel team-a/prod"):
        aws.publish(TEAM_A, section, [Pointer("aws", REGION, ours)], [])
    with pytest.raises(CloudError, match="is not owned by channel team-b/other"):
        aws.publish(PublishScope("team-b", "web", "other", "uid-o"), section, [Pointer("aws", REGION, ours)], [])
    aws.publish(TEAM_A, section, [], [Pointer("aws", REGION, theirs)])
    assert ssm.get_parameter(Name="/team-b/api")["Parameter"]["Value"] == theirs


def test_an_owned_parameter_is_updated_and_withdrawn(aws: AwsApi) -> None:
    ssm = aws.client("ssm", REGION)
    v1, v2 = _team_image(aws, TEAM_A, "a-web-3-abc"), _team_image(aws, TEAM_A, "a-web-4-abc")
    section = AwsPublish(ssm_parameter="/team-a/web")
    assert aws.publish(TEAM_A, section, [Pointer("aws", REGION, v1)], []) == [
        f"SSM parameter /team-a/web in {REGION} = {v1}"
    ]
    # Re-created under the same name (a new UID), the channel still owns its parameter.
    again = PublishScope("team-a", "web", "prod", "uid-a2")
    assert aws.publish(again, section, [Pointer("aws", REGION, v2)], [Pointer("aws", REGION, v1)]) == [
        f"SSM parameter /team-a/web in {REGION} = {v2}"
    ]
    assert ssm.get_parameter(Name="/team-a/web")["Parameter"]["Value"] == v2
    assert aws.publish(again, section, [], [Pointer("aws", REGION, v2)]) == [
        f"SSM parameter /team-a/web in {REGION} deleted"
    ]
    assert ssm.get_parameters(Names=["/team-a/web"])["InvalidParameters"] == ["/team-a/web"]


def test_a_parameter_outside_the_namespaces_prefix_is_refused_before_any_call(aws: AwsApi) -> None:
    ours = _team_image(aws, TEAM_A, "a-web-5-abc")
    scoped = PublishScope("team-a", "web", "prod", "uid-a", parameter_prefix="/team-a/")
    with pytest.raises(CloudError, match="SSM parameter /team-b/db is outside /team-a/"):
        aws.publish(scoped, AwsPublish(ssm_parameter="/team-b/db"), [Pointer("aws", REGION, ours)], [])
    assert aws.client("ssm", REGION).get_parameters(Names=["/team-b/db"])["InvalidParameters"] == ["/team-b/db"]


def test_the_channel_tag_is_never_put_on_or_taken_from_another_teams_ami(aws: AwsApi) -> None:
    theirs, ours = _team_image(aws, TEAM_B, "b-web-6-abc"), _team_image(aws, TEAM_A, "a-web-6-abc")
    untagged = _image(aws, None, "no-build-tags")  # this account's, but no build made it
    section = AwsPublish.model_validate({"tag": {"key": "team-b/web", "value": "prod"}})
    aws.publish(TEAM_B, section, [Pointer("aws", REGION, theirs)], [])
    assert _image_tags(aws, theirs)["team-b/web"] == "prod"

    # Team A's channel names team B's AMI (a status edited by hand) and an unbuilt one.
    with pytest.raises(CloudError) as refused:
        aws.publish(TEAM_A, section, [Pointer("aws", REGION, theirs)], [])
    assert f"AMI {theirs} in {REGION} is not one of team-a/web" in str(refused.value)
    with pytest.raises(CloudError, match=f"AMI {untagged} in {REGION} is not one of team-a/web"):
        aws.publish(TEAM_A, section, [Pointer("aws", REGION, untagged)], [])
    assert "team-b/web" not in _image_tags(aws, untagged)

    # Team A's channel moving the same key and value onto its own AMI leaves team B's tag alone.
    aws.publish(TEAM_A, section, [Pointer("aws", REGION, ours)], [Pointer("aws", REGION, theirs)])
    assert _image_tags(aws, ours)["team-b/web"] == "prod"
    aws.publish(TEAM_A, section, [], [Pointer("aws", REGION, ours)])
    assert "team-b/web" not in _image_tags(aws, ours)
    assert _image_tags(aws, theirs)["team-b/web"] == "prod"


def test_a_parameter_created_by_another_between_the_read_and_the_write_is_not_overwritten(aws: AwsApi) -> None:
    ssm = aws.client("ssm", REGION)
    theirs, ours = _team_image(aws, TEAM_B, "b-web-7-abc"), _team_image(aws, TEAM_A, "a-web-7-abc")

    class Late:
        """Team B creates the parameter right after team A's channel found none."""

        def call(self, region: str, method: str, *, service: str = "ec2", **kwargs: Any) -> Any:
            found = aws.call(region, method, service=service, **kwargs)
            if method == "get_parameter" and found is None:
                ssm.put_parameter(Name=kwargs["Name"], Value=theirs, Type="String", DataType="aws:ec2:image")
            return found

        def all(self, region: str, method: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
            return aws.all(region, method, key, **kwargs)

    with pytest.raises(CloudError, match="/team-b/late in eu-west-1 exists and is not owned by channel team-a/prod"):
        Publisher(Late()).publish(TEAM_A, AwsPublish(ssm_parameter="/team-b/late"), [Pointer("aws", REGION, ours)], [])
    assert ssm.get_parameter(Name="/team-b/late")["Parameter"]["Value"] == theirs
