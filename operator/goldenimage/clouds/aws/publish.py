"""Publication on AWS: the SSM parameters and the channel tag consumers read."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

from ...api import labels
from ...api.errors import CloudError
from ...api.imagechannel import AwsPublish
from ..base import Pointer, PublishScope


class Calls(Protocol):
    def call(self, region: str, method: str, *, service: str = "ec2", **kwargs: Any) -> Any: ...

    def all(self, region: str, method: str, key: str, **kwargs: Any) -> list[dict[str, Any]]: ...


class Publisher:
    def __init__(self, aws: Calls) -> None:
        self._aws = aws

    def publish(
        self, scope: PublishScope, section: AwsPublish, current: Sequence[Pointer], previous: Sequence[Pointer]
    ) -> list[str]:
        changes: list[str] = []
        if section.ssm_parameter is not None:
            changes += self._parameters(section.ssm_parameter, current, previous)
        if section.tag is not None:
            changes += self._tags(section.tag.key, section.tag.value, scope, current, previous)
        return changes

    @staticmethod
    def _parameter_names(base: str, pointers: Sequence[Pointer]) -> dict[tuple[str, str], str]:
        """(target, region) -> parameter: the parameter itself for an image with one AWS target,
        one parameter per target beneath it for several."""
        targets = {p.target for p in pointers}
        return {(p.target, p.region): base if len(targets) <= 1 else f"{base}/{p.target}" for p in pointers}

    def _parameters(self, base: str, current: Sequence[Pointer], previous: Sequence[Pointer]) -> list[str]:
        changes = []
        names = self._parameter_names(base, current)
        wanted = {(names[(p.target, p.region)], p.region): p.image for p in current}
        for (parameter, region), image in sorted(wanted.items()):
            found = self._aws.call(region, "get_parameter", service="ssm", Name=parameter)
            if found is not None:
                if found["Parameter"].get("DataType") != "aws:ec2:image":
                    raise CloudError(
                        f"SSM parameter {parameter} in {region} exists and is not an aws:ec2:image parameter; "
                        "it is left alone"
                    )
                if found["Parameter"]["Value"] == image:
                    continue
            self._aws.call(
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
        # What only the previous entry had (a region, or a naming that changed with the targets).
        stale = {(n, r) for (_, r), n in self._parameter_names(base, previous).items()} - wanted.keys()
        for parameter, region in sorted(stale):
            found = self._aws.call(region, "get_parameter", service="ssm", Name=parameter)
            if found is not None and found["Parameter"].get("DataType") == "aws:ec2:image":
                self._aws.call(region, "delete_parameter", service="ssm", Name=parameter)
                changes.append(f"SSM parameter {parameter} in {region} deleted")
        return changes

    def _tags(
        self,
        key: str,
        value: str,
        scope: PublishScope,
        current: Sequence[Pointer],
        previous: Sequence[Pointer],
    ) -> list[str]:
        """The channel tag is on exactly the current images of each region (one per AWS target)
        among the images of `scope` (the channel's namespace): the new ones are tagged before the
        old ones are untagged, so a consumer filtering on it may briefly see both (take the
        newest), never none."""
        changes = []
        wanted: dict[str, set[str]] = defaultdict(set)
        for p in current:
            wanted[p.region].add(p.image)
        filters = [{"Name": f"tag:{key}", "Values": [value]}]
        owned = {labels.NAMESPACE: scope.namespace, labels.IMAGE: scope.image}
        filters += [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted(owned.items())]
        for region in sorted(wanted.keys() | {p.region for p in previous}):
            tagged = {
                i["ImageId"]
                for i in self._aws.all(region, "describe_images", "Images", Owners=["self"], Filters=filters)
            }
            for image in sorted(wanted[region] - tagged):
                self._aws.call(region, "create_tags", Resources=[image], Tags=[{"Key": key, "Value": value}])
                changes.append(f"tag {key}={value} on {image} in {region}")
            for stale in sorted(tagged - wanted[region]):
                self._aws.call(region, "delete_tags", Resources=[stale], Tags=[{"Key": key, "Value": value}])
                changes.append(f"tag {key}={value} removed from {stale} in {region}")
        return changes
