"""The AWS adapter (boto3): resolve AMI filters, find and delete what builds created."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from ..api.goldenimage import Target
from ..packer import tags
from .base import CloudError, Resource, SourceNotFoundError

_NOT_FOUND = {
    "InvalidAMIID.NotFound",
    "InvalidAMIID.Unavailable",
    "InvalidSnapshot.NotFound",
    "InvalidInstanceID.NotFound",
    "InvalidVolume.NotFound",
    "InvalidKeyPair.NotFound",
    "InvalidGroup.NotFound",
}


class Aws:
    name = "aws"

    def __init__(self, *, endpoint_url: str | None = None, credentials: Mapping[str, str] | None = None) -> None:
        self._endpoint = endpoint_url
        self._credentials = dict(credentials or {})
        self._clients: dict[str, Any] = {}

    def ec2(self, region: str) -> Any:
        if region not in self._clients:
            session = boto3.session.Session(
                aws_access_key_id=self._credentials.get("AWS_ACCESS_KEY_ID"),
                aws_secret_access_key=self._credentials.get("AWS_SECRET_ACCESS_KEY"),
                aws_session_token=self._credentials.get("AWS_SESSION_TOKEN"),
                region_name=region,
            )
            self._clients[region] = session.client(
                "ec2",
                endpoint_url=self._endpoint,
                config=BotoConfig(retries={"mode": "adaptive", "max_attempts": 8}, connect_timeout=10, read_timeout=30),
            )
        return self._clients[region]

    def _call(self, region: str, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.ec2(region), method)(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NOT_FOUND:
                return None
            raise CloudError(f"EC2 {method} in {region}: {exc}") from exc
        except BotoCoreError as exc:
            raise CloudError(f"EC2 {method} in {region}: {exc}") from exc

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

    def leftovers(self, build_id: str, regions: Sequence[str]) -> list[Resource]:
        out: list[Resource] = []
        for region in regions:
            reservations = self._call(region, "describe_instances", Filters=self._tagged(build_id)) or {}
            for reservation in reservations.get("Reservations", []):
                for instance in reservation["Instances"]:
                    if instance["State"]["Name"] not in ("terminated", "shutting-down"):
                        out.append(Resource("instance", region, instance["InstanceId"]))
            volumes = self._call(region, "describe_volumes", Filters=self._tagged(build_id)) or {}
            out += [Resource("volume", region, v["VolumeId"]) for v in volumes.get("Volumes", [])]
            # Temporary key pairs are named after the build (Packer does not tag them).
            pairs = self._call(region, "describe_key_pairs") or {}
            out += [
                Resource("key-pair", region, k["KeyName"])
                for k in pairs.get("KeyPairs", [])
                if k["KeyName"].startswith(f"packer-{build_id}-a")
            ]
            groups = self._call(region, "describe_security_groups", Filters=self._tagged(build_id)) or {}
            out += [Resource("security-group", region, g["GroupId"]) for g in groups.get("SecurityGroups", [])]
        return out

    def sweep(self, build_id: str, regions: Sequence[str]) -> list[Resource]:
        found = self.leftovers(build_id, regions)
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
