"""The AWS adapter (boto3): resolve AMI filters, find and delete what builds created."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from ..api.goldenimage import Selector, Target, Validation
from ..packer import tags
from .base import CloudError, Instance, Pointer, Resource, SourceNotFoundError

REVOKED_TAG = "goldenimage.io/revoked"

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


class Aws:
    name = "aws"

    def __init__(self, *, endpoint_url: str | None = None, credentials: Mapping[str, str] | None = None) -> None:
        self._endpoint = endpoint_url
        self._credentials = dict(credentials or {})
        self._clients: dict[tuple[str, str], Any] = {}

    def client(self, service: str, region: str) -> Any:
        if (service, region) not in self._clients:
            session = boto3.session.Session(
                aws_access_key_id=self._credentials.get("AWS_ACCESS_KEY_ID"),
                aws_secret_access_key=self._credentials.get("AWS_SECRET_ACCESS_KEY"),
                aws_session_token=self._credentials.get("AWS_SESSION_TOKEN"),
                region_name=region,
            )
            self._clients[(service, region)] = session.client(
                service,
                endpoint_url=self._endpoint,
                config=BotoConfig(retries={"mode": "adaptive", "max_attempts": 8}, connect_timeout=10, read_timeout=30),
            )
        return self._clients[(service, region)]

    def ec2(self, region: str) -> Any:
        return self.client("ec2", region)

    def _call(self, region: str, method: str, *, service: str = "ec2", **kwargs: Any) -> Any:
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
        assert target.aws is not None
        source = target.aws.source
        if source.ami_filter is None:
            return None  # an explicit AMI is used as written; Packer reports if it is missing
        f = source.ami_filter
        filters = [{"Name": "name", "Values": [f.name]}, {"Name": "state", "Values": ["available"]}]
        filters += [{"Name": k, "Values": [v]} for k, v in sorted(f.filters.items())]
        found = self._call(target.aws.region, "describe_images", Owners=list(f.owners), Filters=filters)
        images = (found or {}).get("Images", [])
        if not images:
            raise SourceNotFoundError(
                f"no AMI in {target.aws.region} matches name {f.name!r} owned by {', '.join(f.owners)}"
            )
        if len(images) > 1 and not f.most_recent:
            raise SourceNotFoundError(
                f"{len(images)} AMIs match name {f.name!r}; set mostRecent: true or narrow the filter"
            )
        newest = max(images, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]))
        return str(newest["ImageId"])

    # -- artifacts -----------------------------------------------------------------------

    def _tagged(self, build_id: str) -> list[dict[str, Any]]:
        return [{"Name": f"tag:{tags.BUILD_ID}", "Values": [build_id]}]

    def find_artifacts(self, build_id: str, regions: Sequence[str]) -> list[Resource]:
        out = []
        for region in regions:
            found = self._call(region, "describe_images", Owners=["self"], Filters=self._tagged(build_id))
            out += [Resource("image", region, i["ImageId"]) for i in (found or {}).get("Images", [])]
        return out

    def delete_artifact(self, region: str, artifact_id: str) -> list[Resource]:
        found = self._call(region, "describe_images", ImageIds=[artifact_id])
        images = (found or {}).get("Images", [])
        if not images:
            return []
        snapshots = [m["Ebs"]["SnapshotId"] for m in images[0].get("BlockDeviceMappings", []) if "Ebs" in m]
        snapshots = [s for s in snapshots if s]
        # Deregister first: a snapshot in use by an AMI cannot be deleted.
        self._call(region, "deregister_image", ImageId=artifact_id)
        deleted = [Resource("image", region, artifact_id)]
        for snapshot in snapshots:
            self._call(region, "delete_snapshot", SnapshotId=snapshot)
            deleted.append(Resource("snapshot", region, snapshot))
        return deleted

    # -- leftovers -----------------------------------------------------------------------

    def leftovers(
        self, build_id: str, regions: Sequence[str], target: str | None = None, attempt: int | None = None
    ) -> list[Resource]:
        filters = self._tagged(build_id)
        pair = f"packer-{build_id}-"
        if target is not None:
            filters.append({"Name": f"tag:{tags.TARGET}", "Values": [target]})
            pair += f"{target}-a"
            if attempt is not None:
                filters.append({"Name": f"tag:{tags.ATTEMPT}", "Values": [str(attempt)]})
                pair += str(attempt)
        out: list[Resource] = []
        for region in regions:
            reservations = self._call(region, "describe_instances", Filters=filters) or {}
            for reservation in reservations.get("Reservations", []):
                for instance in reservation["Instances"]:
                    if instance["State"]["Name"] not in ("terminated", "shutting-down"):
                        out.append(Resource("instance", region, instance["InstanceId"]))
            volumes = self._call(region, "describe_volumes", Filters=filters) or {}
            out += [Resource("volume", region, v["VolumeId"]) for v in volumes.get("Volumes", [])]
            # Temporary key pairs are named after the build and target (Packer does not tag them).
            pairs = self._call(region, "describe_key_pairs") or {}
            out += [
                Resource("key-pair", region, k["KeyName"])
                for k in pairs.get("KeyPairs", [])
                if (k["KeyName"] == pair if attempt is not None else k["KeyName"].startswith(pair))
            ]
            groups = self._call(region, "describe_security_groups", Filters=filters) or {}
            out += [Resource("security-group", region, g["GroupId"]) for g in groups.get("SecurityGroups", [])]
        return out

    def sweep(
        self, build_id: str, regions: Sequence[str], target: str | None = None, attempt: int | None = None
    ) -> list[Resource]:
        found = self.leftovers(build_id, regions, target, attempt)
        # Dependency order: instances hold volumes and groups.
        order = {"instance": 0, "volume": 1, "key-pair": 2, "security-group": 3}
        for resource in sorted(found, key=lambda r: order[r.kind]):
            if resource.kind == "instance":
                self._call(resource.region, "terminate_instances", InstanceIds=[resource.id])
            elif resource.kind == "volume":
                self._call(resource.region, "delete_volume", VolumeId=resource.id)
            elif resource.kind == "key-pair":
                self._call(resource.region, "delete_key_pair", KeyName=resource.id)
            else:
                self._call(resource.region, "delete_security_group", GroupId=resource.id)
        return found

    # -- artifacts: existence and deprecation --------------------------------------------

    def missing_artifacts(self, artifacts: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        by_region: dict[str, set[str]] = defaultdict(set)
        for region, image in artifacts:
            by_region[region].add(image)
        missing: set[tuple[str, str]] = set()
        for region, images in by_region.items():
            found = self._call(region, "describe_images", Filters=[{"Name": "image-id", "Values": sorted(images)}])
            usable = {i["ImageId"] for i in (found or {}).get("Images", []) if i.get("State") == "available"}
            missing |= {(region, i) for i in images - usable}
        return missing

    def deprecate(self, region: str, artifact_id: str, reason: str) -> str | None:
        self._call(region, "create_tags", Resources=[artifact_id], Tags=[{"Key": REVOKED_TAG, "Value": reason[:256]}])
        try:
            self.ec2(region).enable_image_deprecation(ImageId=artifact_id, DeprecateAt=datetime.now(UTC))
        except ResponseParserError:
            return f"{artifact_id} in {region} is tagged {REVOKED_TAG}; this endpoint has no image deprecation"
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _NOT_FOUND:
                return None
            if code in {"InvalidAction", "NotImplemented", "UnsupportedOperation"}:
                return f"{artifact_id} in {region} is tagged {REVOKED_TAG}; this endpoint has no image deprecation"
            raise CloudError(f"EC2 enable_image_deprecation in {region}: {exc}") from exc
        return None

    # -- validation instances ------------------------------------------------------------

    def _select(self, region: str, method: str, key: str, selector: Selector | None) -> list[str]:
        if selector is None:
            return []
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted(selector.tags.items())]
        found = (self._call(region, method, Filters=filters) or {}).get(key, [])
        return [item["SubnetId" if key == "Subnets" else "GroupId"] for item in found]

    def launch(
        self, target: Target, region: str, image: str, validation: Validation | None, tags: Mapping[str, str]
    ) -> Instance:
        assert target.aws is not None
        settings = validation.aws if validation is not None else None
        request: dict[str, Any] = {
            "ImageId": image,
            "MinCount": 1,
            "MaxCount": 1,
            "InstanceType": (
                settings.instance_type if settings and settings.instance_type else target.aws.instance_type
            ),
            "InstanceInitiatedShutdownBehavior": "terminate",
            "TagSpecifications": [
                {"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
                for kind in ("instance", "volume")
            ],
        }
        if settings is not None:
            subnets = self._select(region, "describe_subnets", "Subnets", settings.subnet_selector)
            if settings.subnet_selector is not None and not subnets:
                raise CloudError(f"no subnet in {region} has the tags {settings.subnet_selector.tags}")
            if subnets:
                request["SubnetId"] = sorted(subnets)[0]
            groups = self._select(
                region, "describe_security_groups", "SecurityGroups", settings.security_group_selector
            )
            if groups:
                request["SecurityGroupIds"] = sorted(groups)
            if settings.iam_instance_profile:
                request["IamInstanceProfile"] = {"Name": settings.iam_instance_profile}
        response = self._call(region, "run_instances", **request)
        if not response or not response.get("Instances"):
            raise CloudError(f"AMI {image} in {region} could not be launched")
        public = settings is not None and settings.address == "public"
        return Instance(id=response["Instances"][0]["InstanceId"], region=region, public=public)

    def ready(self, instance: Instance) -> Instance | None:
        found = self._call(instance.region, "describe_instances", InstanceIds=[instance.id]) or {}
        described = [i for r in found.get("Reservations", []) for i in r["Instances"]]
        if not described:
            raise CloudError(f"instance {instance.id} in {instance.region} is gone")
        state = described[0]["State"]["Name"]
        if state in ("shutting-down", "terminated", "stopping", "stopped"):
            raise CloudError(f"instance {instance.id} is {state} instead of running")
        if state != "running":
            return None
        statuses = (self._call(instance.region, "describe_instance_status", InstanceIds=[instance.id]) or {}).get(
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
        sent = self._call(
            instance.region,
            "send_command",
            service="ssm",
            InstanceIds=[instance.id],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": [command]},
            TimeoutSeconds=max(30, int(timeout)),
        )
        command_id = sent["Command"]["CommandId"]
        deadline = time.monotonic() + timeout
        while True:
            result = self._call(
                instance.region, "get_command_invocation", service="ssm", CommandId=command_id, InstanceId=instance.id
            )
            status = (result or {}).get("Status", "Pending")
            if status not in ("Pending", "InProgress", "Delayed"):
                output = (result.get("StandardOutputContent", "") + result.get("StandardErrorContent", "")).strip()
                return int(result.get("ResponseCode", -1)), output
            if time.monotonic() > deadline:
                raise CloudError(f"command did not finish within {timeout:.0f}s")
            time.sleep(1)

    def terminate(self, instance: Instance) -> None:
        self._call(instance.region, "terminate_instances", InstanceIds=[instance.id])

    def instances(self, build_id: str, regions: Sequence[str]) -> list[Resource]:
        return [r for r in self.leftovers(build_id, regions) if r.kind == "instance"]

    # -- publication ---------------------------------------------------------------------

    def publish(
        self, channel: str, publish: Mapping[str, object], current: Sequence[Pointer], previous: Sequence[Pointer]
    ) -> list[str]:
        changes: list[str] = []
        targets = sorted({p.target for p in [*current, *previous]})
        parameter = publish.get("ssmParameter")
        tag = publish.get("tag")
        if isinstance(parameter, str):
            changes += self._parameters(parameter, targets, current, previous)
        if isinstance(tag, Mapping):
            changes += self._tags(str(tag["key"]), str(tag["value"]), current, previous)
        return changes

    def _parameters(
        self, base: str, targets: list[str], current: Sequence[Pointer], previous: Sequence[Pointer]
    ) -> list[str]:
        # One AWS target: the parameter itself; several: one parameter per target beneath it.
        def name(target: str) -> str:
            return base if len(targets) <= 1 else f"{base}/{target}"

        changes = []
        wanted = {(name(p.target), p.region): p.image for p in current}
        for (parameter, region), image in sorted(wanted.items()):
            found = self._call(region, "get_parameter", service="ssm", Name=parameter)
            if found is not None and found["Parameter"]["Value"] == image:
                continue
            self._call(
                region,
                "put_parameter",
                service="ssm",
                Name=parameter,
                Value=image,
                Type="String",
                DataType="aws:ec2:image",
                Overwrite=True,
            )
            changes.append(f"SSM parameter {parameter} in {region} = {image}")
        for pointer in previous:
            key = (name(pointer.target), pointer.region)
            if (
                key not in wanted
                and self._call(pointer.region, "get_parameter", service="ssm", Name=key[0]) is not None
            ):
                self._call(pointer.region, "delete_parameter", service="ssm", Name=key[0])
                changes.append(f"SSM parameter {key[0]} in {pointer.region} deleted")
        return changes

    def _tags(self, key: str, value: str, current: Sequence[Pointer], previous: Sequence[Pointer]) -> list[str]:
        """Exactly one image per region carries the channel tag: the new one is tagged before the
        old one is untagged, so a consumer filtering on it may briefly see two (take the newest),
        never none."""
        changes = []
        wanted = {p.region: p.image for p in current}
        for region in sorted(wanted.keys() | {p.region for p in previous}):
            image = wanted.get(region)
            tagged_filter = [{"Name": f"tag:{key}", "Values": [value]}]
            tagged = {
                i["ImageId"]
                for i in (self._call(region, "describe_images", Owners=["self"], Filters=tagged_filter) or {}).get(
                    "Images", []
                )
            }
            if image is not None and image not in tagged:
                self._call(region, "create_tags", Resources=[image], Tags=[{"Key": key, "Value": value}])
                changes.append(f"tag {key}={value} on {image} in {region}")
            for stale in sorted(tagged - {image}):
                self._call(region, "delete_tags", Resources=[stale], Tags=[{"Key": key, "Value": value}])
                changes.append(f"tag {key}={value} removed from {stale} in {region}")
        return changes
