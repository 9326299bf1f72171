"""The AWS adapter (boto3): resolve AMI filters, find and delete what builds created, sweep what
failed attempts left, run validation instances, and the work a build Job does besides Packer."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError
from pydantic import BaseModel

from ...api import labels
from ...api.errors import CloudError, ForeignArtifactError, SourceNotFoundError
from ...api.goldenimage import Selector, Target, Validation
from ...api.imagechannel import AwsPublish
from ...api.types import CloudName
from ..base import CloudResource, Instance, Pointer, PublishScope
from .kind import KIND, settings
from .publish import Publisher

_TEMPORARY_GROUP = re.compile(r"Creating temporary security group for this instance: (packer_[0-9a-f-]+)")

_NOT_FOUND = {
    "InvalidAMIID.NotFound",
    "InvalidAMIID.Unavailable",
    "InvalidSnapshot.NotFound",
    "InvalidInstanceID.NotFound",
    "InvalidVolume.NotFound",
    "InvalidKeyPair.NotFound",
    "InvalidGroup.NotFound",
    "ParameterNotFound",
}


class AwsApi:
    name: CloudName = "aws"
    kind = KIND

    def __init__(self, *, endpoint_url: str | None = None, credentials: Mapping[str, str] | None = None) -> None:
        self._endpoint = endpoint_url
        # One session for every client: a session per region costs tens of MiB each.
        self._session = boto3.session.Session(
            aws_access_key_id=(credentials or {}).get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=(credentials or {}).get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=(credentials or {}).get("AWS_SESSION_TOKEN"),
        )
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()  # sessions are not thread-safe; the clients they make are
        self._publisher = Publisher(self)

    def client(self, service: str, region: str) -> Any:
        with self._lock:
            if (service, region) not in self._clients:
                self._clients[(service, region)] = self._session.client(
                    service,
                    region_name=region,
                    endpoint_url=self._endpoint,
                    config=BotoConfig(
                        retries={"mode": "adaptive", "max_attempts": 8}, connect_timeout=10, read_timeout=30
                    ),
                )
            return self._clients[(service, region)]

    def ec2(self, region: str) -> Any:
        return self.client("ec2", region)

    def call(self, region: str, method: str, *, service: str = "ec2", **kwargs: Any) -> Any:
        """One API call; a "not found" answer is None."""
        try:
            return getattr(self.client(service, region), method)(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NOT_FOUND:
                return None
            raise CloudError(f"{service} {method} in {region}: {exc}") from exc
        except BotoCoreError as exc:
            raise CloudError(f"{service} {method} in {region}: {exc}") from exc

    # -- sources -------------------------------------------------------------------------

    def resolve_source(self, target: Target) -> str | None:
        aws = settings(target)
        source = aws.source
        if source.ami_filter is None:
            return None  # an explicit AMI is used as written; Packer reports if it is missing
        f = source.ami_filter
        filters = [{"Name": "name", "Values": [f.name]}, {"Name": "state", "Values": ["available"]}]
        filters += [{"Name": k, "Values": [v]} for k, v in sorted(f.filters.items())]
        found = self.call(aws.region, "describe_images", Owners=list(f.owners), Filters=filters)
        now = datetime.now(UTC).isoformat()
        images = [
            i
            for i in (found or {}).get("Images", [])
            if not any(t["Key"] == labels.REVOKED for t in i.get("Tags", []))
            and not (i.get("DeprecationTime") and i["DeprecationTime"] <= now)
        ]
        if not images:
            raise SourceNotFoundError(f"no AMI in {aws.region} matches name {f.name!r} owned by {', '.join(f.owners)}")
        if len(images) > 1 and not f.most_recent:
            raise SourceNotFoundError(
                f"{len(images)} AMIs match name {f.name!r}; set mostRecent: true or narrow the filter"
            )
        newest = max(images, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]))
        return str(newest["ImageId"])

    # -- artifacts -----------------------------------------------------------------------

    def all(self, region: str, method: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Every item of a paginated describe call (not found: none)."""
        try:
            pages = self.ec2(region).get_paginator(method).paginate(**kwargs)
            return [item for page in pages for item in page.get(key, [])]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NOT_FOUND:
                return []
            raise CloudError(f"ec2 {method} in {region}: {exc}") from exc
        except BotoCoreError as exc:
            raise CloudError(f"ec2 {method} in {region}: {exc}") from exc

    def _tagged(self, build_id: str) -> list[dict[str, Any]]:
        return [{"Name": f"tag:{labels.BUILD_ID}", "Values": [build_id]}]

    def find_artifacts(self, build_id: str, regions: Sequence[str]) -> list[CloudResource]:
        out = []
        for region in regions:
            found = self.all(region, "describe_images", "Images", Owners=["self"], Filters=self._tagged(build_id))
            out += [CloudResource("image", region, i["ImageId"]) for i in found]
        return out

    def delete_artifact(self, region: str, artifact_id: str, build_id: str) -> list[CloudResource]:
        found = self.call(region, "describe_images", ImageIds=[artifact_id])
        images = (found or {}).get("Images", [])
        if not images:
            return []
        carried = {t["Key"]: t["Value"] for t in images[0].get("Tags", [])}.get(labels.BUILD_ID)
        if carried != build_id:
            # Only what this build made: status is no licence to delete anyone's image.
            raise ForeignArtifactError(f"{artifact_id} in {region} does not carry {labels.BUILD_ID}={build_id}")
        snapshots = [m["Ebs"]["SnapshotId"] for m in images[0].get("BlockDeviceMappings", []) if "Ebs" in m]
        snapshots = [s for s in snapshots if s]
        # Deregister first: a snapshot in use by an AMI cannot be deleted.
        self.call(region, "deregister_image", ImageId=artifact_id)
        deleted = [CloudResource("image", region, artifact_id)]
        for snapshot in snapshots:
            self.call(region, "delete_snapshot", SnapshotId=snapshot)
            deleted.append(CloudResource("snapshot", region, snapshot))
        return deleted

    def share(self, region: str, image: str, organizations: Sequence[str]) -> None:
        """Let the organizations and OUs (by ARN) launch the AMI."""
        permissions = [
            {"OrganizationalUnitArn": arn} if ":ou/" in arn else {"OrganizationArn": arn} for arn in organizations
        ]
        self.call(region, "modify_image_attribute", ImageId=image, LaunchPermission={"Add": permissions})

    def tag_security_group(self, region: str, name: str, labels: Mapping[str, str]) -> None:
        groups = self.all(
            region, "describe_security_groups", "SecurityGroups", Filters=[{"Name": "group-name", "Values": [name]}]
        )
        if groups:
            tags_ = [{"Key": k, "Value": v} for k, v in labels.items()]
            self.call(region, "create_tags", Resources=[g["GroupId"] for g in groups], Tags=tags_)

    # -- leftovers -----------------------------------------------------------------------

    def leftovers(
        self, build_id: str, regions: Sequence[str], target: str | None = None, attempt: int | None = None
    ) -> list[CloudResource]:
        filters = self._tagged(build_id)
        pair = f"packer-{build_id}-"
        if target is not None:
            filters.append({"Name": f"tag:{labels.TARGET}", "Values": [target]})
            pair += f"{target}-a"
            if attempt is not None:
                filters.append({"Name": f"tag:{labels.ATTEMPT}", "Values": [str(attempt)]})
                pair += str(attempt)
        named = re.compile(re.escape(pair) + (r"$" if attempt is not None else (r"\d+$" if target else r".+-a\d+$")))
        out: list[CloudResource] = []
        for region in regions:
            attached: set[str] = set()
            for reservation in self.all(region, "describe_instances", "Reservations", Filters=filters):
                for instance in reservation["Instances"]:
                    # Packer creates its temporary group untagged and the runner tags it as soon
                    # as it appears; a SIGKILL can come first, but the builder instance (still
                    # listed for a while once terminated) names the group.
                    attached |= {
                        g["GroupId"] for g in instance.get("SecurityGroups", []) if g["GroupName"].startswith("packer_")
                    }
                    if instance["State"]["Name"] not in ("terminated", "shutting-down"):
                        out.append(CloudResource("instance", region, instance["InstanceId"]))
            volumes = self.all(region, "describe_volumes", "Volumes", Filters=filters)
            out += [CloudResource("volume", region, v["VolumeId"]) for v in volumes if v.get("State") != "in-use"]
            # Temporary key pairs are named after the build and target (Packer does not tag them).
            pairs = (self.call(region, "describe_key_pairs") or {}).get("KeyPairs", [])
            out += [CloudResource("key-pair", region, k["KeyName"]) for k in pairs if named.match(k["KeyName"])]
            groups = {
                g["GroupId"] for g in self.all(region, "describe_security_groups", "SecurityGroups", Filters=filters)
            }
            if attached - groups:  # those that still exist
                by_id = [{"Name": "group-id", "Values": sorted(attached - groups)}]
                groups |= {
                    g["GroupId"] for g in self.all(region, "describe_security_groups", "SecurityGroups", Filters=by_id)
                }
            out += [CloudResource("security-group", region, g) for g in sorted(groups)]
            if attempt is not None:
                # Images of an attempt that failed were never recorded: they would only leak.
                images = self.all(region, "describe_images", "Images", Owners=["self"], Filters=filters)
                out += [CloudResource("image", region, i["ImageId"]) for i in images]
        return out

    def sweep(
        self, build_id: str, regions: Sequence[str], target: str | None = None, attempt: int | None = None
    ) -> list[CloudResource]:
        found = self.leftovers(build_id, regions, target, attempt)
        # Dependency order: instances hold volumes and groups. Each resource on its own: a group
        # still in use by a terminating instance is deleted at the next sweep.
        order = {"image": 0, "instance": 1, "volume": 2, "key-pair": 3, "security-group": 4}
        deleted: list[CloudResource] = []
        failures: list[str] = []
        for resource in sorted(found, key=lambda r: order[r.kind]):
            try:
                if resource.kind == "image":
                    deleted += self.delete_artifact(resource.region, resource.id, build_id)
                    continue
                if resource.kind == "instance":
                    self.call(resource.region, "terminate_instances", InstanceIds=[resource.id])
                elif resource.kind == "volume":
                    self.call(resource.region, "delete_volume", VolumeId=resource.id)
                elif resource.kind == "key-pair":
                    self.call(resource.region, "delete_key_pair", KeyName=resource.id)
                else:
                    self.call(resource.region, "delete_security_group", GroupId=resource.id)
                deleted.append(resource)
            except CloudError as exc:
                failures.append(f"{resource}: {exc}")
        if failures:
            raise CloudError("; ".join(failures))
        return deleted

    # -- artifacts: existence and deprecation --------------------------------------------

    def missing_artifacts(self, artifacts: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        by_region: dict[str, set[str]] = defaultdict(set)
        for region, image in artifacts:
            by_region[region].add(image)
        missing: set[tuple[str, str]] = set()
        for region, images in by_region.items():
            ids = sorted(images)
            usable: set[str] = set()
            for start in range(0, len(ids), 100):  # filters take at most 200 values
                chunk = [{"Name": "image-id", "Values": ids[start : start + 100]}]
                found = self.all(region, "describe_images", "Images", Filters=chunk)
                usable |= {i["ImageId"] for i in found if i.get("State") == "available"}
            missing |= {(region, i) for i in images - usable}
        return missing

    def deprecate(self, region: str, artifact_id: str, reason: str) -> str | None:
        self.call(region, "create_tags", Resources=[artifact_id], Tags=[{"Key": labels.REVOKED, "Value": reason[:256]}])
        # AWS refuses a time in the past and rounds to the minute: a little ahead.
        when = (datetime.now(UTC) + timedelta(minutes=2)).replace(second=0, microsecond=0)
        try:
            self.ec2(region).enable_image_deprecation(ImageId=artifact_id, DeprecateAt=when)
        except ResponseParserError:
            return f"{artifact_id} in {region} is tagged {labels.REVOKED}; this endpoint has no image deprecation"
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _NOT_FOUND:
                return None
            if code in {"InvalidAction", "NotImplemented", "UnsupportedOperation"}:
                return f"{artifact_id} in {region} is tagged {labels.REVOKED}; this endpoint has no image deprecation"
            raise CloudError(f"EC2 enable_image_deprecation in {region}: {exc}") from exc
        except BotoCoreError as exc:
            raise CloudError(f"EC2 enable_image_deprecation in {region}: {exc}") from exc
        return None

    # -- validation instances ------------------------------------------------------------

    def _select(self, region: str, method: str, key: str, selector: Selector | None) -> list[str]:
        if selector is None:
            return []
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted(selector.tags.items())]
        found = (self.call(region, method, Filters=filters) or {}).get(key, [])
        return [item["SubnetId" if key == "Subnets" else "GroupId"] for item in found]

    def launch(
        self, target: Target, region: str, image: str, validation: Validation | None, tags: Mapping[str, str]
    ) -> Instance:
        aws = settings(target)
        placement = validation.aws if validation is not None else None
        request: dict[str, Any] = {
            "ImageId": image,
            "MinCount": 1,
            "MaxCount": 1,
            # Idempotent launch: a retried request cannot start a second, untracked instance.
            "ClientToken": uuid.uuid4().hex,
            "InstanceType": (placement.instance_type if placement and placement.instance_type else aws.instance_type),
            "InstanceInitiatedShutdownBehavior": "terminate",
            "TagSpecifications": [
                {"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
                for kind in ("instance", "volume")
            ],
        }
        if placement is not None:
            subnets = self._select(region, "describe_subnets", "Subnets", placement.subnet_selector)
            if placement.subnet_selector is not None and not subnets:
                raise CloudError(f"no subnet in {region} has the tags {placement.subnet_selector.tags}")
            if subnets:
                request["SubnetId"] = sorted(subnets)[0]
            groups = self._select(
                region, "describe_security_groups", "SecurityGroups", placement.security_group_selector
            )
            if placement.security_group_selector is not None and not groups:
                raise CloudError(f"no security group in {region} has the tags {placement.security_group_selector.tags}")
            if groups:
                request["SecurityGroupIds"] = sorted(groups)
            if placement.address == "public":
                interface: dict[str, Any] = {"DeviceIndex": 0, "AssociatePublicIpAddress": True}
                if "SubnetId" in request:
                    interface["SubnetId"] = request.pop("SubnetId")
                if "SecurityGroupIds" in request:
                    interface["Groups"] = request.pop("SecurityGroupIds")
                request["NetworkInterfaces"] = [interface]
            if placement.iam_instance_profile:
                request["IamInstanceProfile"] = {"Name": placement.iam_instance_profile}
        response = self.call(region, "run_instances", **request)
        if not response or not response.get("Instances"):
            raise CloudError(f"AMI {image} in {region} could not be launched")
        public = placement is not None and placement.address == "public"
        return Instance(id=response["Instances"][0]["InstanceId"], region=region, public=public)

    def ready(self, instance: Instance) -> Instance | None:
        found = self.call(instance.region, "describe_instances", InstanceIds=[instance.id]) or {}
        described = [i for r in found.get("Reservations", []) for i in r["Instances"]]
        if not described:
            raise CloudError(f"instance {instance.id} in {instance.region} is gone")
        state = described[0]["State"]["Name"]
        if state in ("shutting-down", "terminated", "stopping", "stopped"):
            raise CloudError(f"instance {instance.id} is {state} instead of running")
        if state != "running":
            return None
        statuses = (self.call(instance.region, "describe_instance_status", InstanceIds=[instance.id]) or {}).get(
            "InstanceStatuses", []
        )
        if not statuses:
            return None
        checks = (statuses[0]["InstanceStatus"]["Status"], statuses[0]["SystemStatus"]["Status"])
        if "impaired" in checks:
            raise CloudError(f"instance {instance.id} failed the EC2 status checks: {checks}")
        if checks != ("ok", "ok"):
            return None
        key = "PublicIpAddress" if instance.public else "PrivateIpAddress"
        address = described[0].get(key)
        if not address:
            raise CloudError(f"instance {instance.id} has no {key}")
        return Instance(id=instance.id, region=instance.region, address=address, public=instance.public)

    def run_command(self, instance: Instance, command: str, timeout: float) -> tuple[int, str]:
        sent = self.call(
            instance.region,
            "send_command",
            service="ssm",
            InstanceIds=[instance.id],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": [command], "executionTimeout": [str(max(30, int(timeout)))]},
            TimeoutSeconds=max(30, int(timeout)),
        )
        command_id = sent["Command"]["CommandId"]
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = self.client("ssm", instance.region).get_command_invocation(
                    CommandId=command_id, InstanceId=instance.id
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "InvocationDoesNotExist":
                    raise CloudError(f"ssm get_command_invocation in {instance.region}: {exc}") from exc
                result = {}  # not registered yet: still pending
            except BotoCoreError as exc:
                raise CloudError(f"ssm get_command_invocation in {instance.region}: {exc}") from exc
            status = result.get("Status", "Pending")
            if status not in ("Pending", "InProgress", "Delayed"):
                output = (result.get("StandardOutputContent", "") + result.get("StandardErrorContent", "")).strip()
                return int(result.get("ResponseCode", -1)), output
            if time.monotonic() > deadline:
                self.call(instance.region, "cancel_command", service="ssm", CommandId=command_id)
                raise CloudError(f"command did not finish within {timeout:.0f}s")
            time.sleep(1)

    def terminate(self, instance: Instance) -> None:
        self.call(instance.region, "terminate_instances", InstanceIds=[instance.id])

    # -- publication -----------------------------------------------------------------------

    def publish(
        self, scope: PublishScope, section: BaseModel, current: Sequence[Pointer], previous: Sequence[Pointer]
    ) -> list[str]:
        assert isinstance(section, AwsPublish)
        return self._publisher.publish(scope, section, current, previous)

    # -- inside the build Job --------------------------------------------------------------

    def build_watcher(self, target: Target, build_id: str, attempt: str) -> Callable[[str], None] | None:
        """Packer 1.6.6 leaves its temporary security group untagged: tag it with the build id as
        soon as it appears, so that a sweep finds it even after a SIGKILL."""
        region = KIND.location(target)
        tags = {labels.BUILD_ID: build_id, labels.MANAGED_BY: labels.MANAGER, labels.TARGET: target.name}
        if attempt:
            tags[labels.ATTEMPT] = attempt

        def watch(line: str) -> None:
            match = _TEMPORARY_GROUP.search(line)
            if match is not None:
                self.tag_security_group(region, match.group(1), tags)

        return watch

    def after_build(self, target: Target, artifacts: Sequence[tuple[str, str]]) -> list[str]:
        """Share the AMIs with organizations and OUs (Packer 1.6.6 cannot)."""
        sharing = settings(target).share_with
        organizations = list(sharing.organization_arns) if sharing is not None else []
        done = []
        for region, image in artifacts if organizations else ():
            self.share(region, image, organizations)
            done.append(f"shared {image} in {region} with {', '.join(organizations)}")
        return done
