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
        """Write what can be written; what is refused (another channel's parameter, an AMI that is
        not the channel's) is left untouched and raised as one CloudError once the rest is done."""
        changes: list[str] = []
        refused: list[str] = []
        if section.ssm_parameter is not None:
            changes += self._parameters(section.ssm_parameter, scope, current, previous, refused)
        if section.tag is not None:
            changes += self._tags(section.tag.key, section.tag.value, scope, current, previous, refused)
        if refused:
            raise CloudError("; ".join(refused))
        return changes

    @staticmethod
    def _parameter_names(base: str, pointers: Sequence[Pointer]) -> dict[tuple[str, str], str]:
        """(target, region) -> parameter: the parameter itself for an image with one AWS target,
        one parameter per target beneath it for several."""
        targets = {p.target for p in pointers}
        return {(p.target, p.region): base if len(targets) <= 1 else f"{base}/{p.target}" for p in pointers}

    # -- SSM parameters ----------------------------------------------------------------------
    #
    # A parameter the operator creates carries the channel's ownership tags; one that exists
    # without them is another's and is neither overwritten nor deleted. PutParameter has no
    # condition on tags, so the check and the write are as close as SSM allows: a new parameter
    # is created with Overwrite=False and its tags in the same call (atomic: if someone else
    # created it first the call fails and its tags are checked); an existing one is checked, then
    # overwritten. What remains: a parameter deleted and re-created by someone else between that
    # check and the overwrite gets this channel's value (keeping its creator's tags, so the next
    # pass refuses it); likewise for deletion. And the tags are only as trustworthy as the IAM
    # policy on ssm:AddTagsToResource: whoever may tag a parameter may claim it for a channel.

    @staticmethod
    def _ownership(scope: PublishScope) -> dict[str, str]:
        return {
            labels.MANAGED_BY: labels.MANAGER,
            labels.NAMESPACE: scope.namespace,
            labels.CHANNEL: scope.channel,
            labels.CHANNEL_UID: scope.uid,
        }

    def _owned(self, region: str, parameter: str, scope: PublishScope) -> bool:
        """The parameter carries this channel's namespace and name. The UID is not required: a
        channel deleted and re-created under the same name (GitOps does) keeps its parameter;
        its namespace is the boundary between teams."""
        found = self._aws.call(
            region, "list_tags_for_resource", service="ssm", ResourceType="Parameter", ResourceId=parameter
        )
        tags = {t["Key"]: t["Value"] for t in (found or {}).get("TagList", [])}
        return tags.get(labels.NAMESPACE) == scope.namespace and tags.get(labels.CHANNEL) == scope.channel

    @staticmethod
    def _not_owned(parameter: str, region: str, scope: PublishScope) -> str:
        return (
            f"SSM parameter {parameter} in {region} exists and is not owned by channel "
            f"{scope.namespace}/{scope.channel}: delete it or publish elsewhere"
        )

    def _parameters(
        self,
        base: str,
        scope: PublishScope,
        current: Sequence[Pointer],
        previous: Sequence[Pointer],
        refused: list[str],
    ) -> list[str]:
        changes: list[str] = []
        names = self._parameter_names(base, current)
        wanted = {(names[(p.target, p.region)], p.region): p.image for p in current}
        prefix = scope.parameter_prefix
        outside = sorted({n for n, _ in wanted if prefix is not None and not n.startswith(prefix)})
        if outside:
            # The planner refuses these before any call; this is the same rule, kept where it acts.
            refused += [f"SSM parameter {n} is outside {prefix}, where {scope.namespace} may publish" for n in outside]
            return changes
        for (parameter, region), image in sorted(wanted.items()):
            found = self._aws.call(region, "get_parameter", service="ssm", Name=parameter)
            if found is None:
                if self._create(region, parameter, image, scope):
                    changes.append(f"SSM parameter {parameter} in {region} = {image}")
                    continue
                found = self._aws.call(region, "get_parameter", service="ssm", Name=parameter)
                if found is None:
                    raise CloudError(f"SSM parameter {parameter} in {region} could neither be created nor read")
            if found["Parameter"].get("DataType") != "aws:ec2:image":
                refused.append(
                    f"SSM parameter {parameter} in {region} exists and is not an aws:ec2:image parameter; "
                    "it is left alone"
                )
                continue
            if not self._owned(region, parameter, scope):
                refused.append(self._not_owned(parameter, region, scope))
                continue
            if found["Parameter"]["Value"] == image:
                continue
            self._put(region, parameter, image, Overwrite=True)  # SSM refuses tags with Overwrite
            changes.append(f"SSM parameter {parameter} in {region} = {image}")
        # What only the previous entry had (a region, or a naming that changed with the targets).
        stale = {(n, r) for (_, r), n in self._parameter_names(base, previous).items()} - wanted.keys()
        for parameter, region in sorted(stale):
            found = self._aws.call(region, "get_parameter", service="ssm", Name=parameter)
            if found is None or found["Parameter"].get("DataType") != "aws:ec2:image":
                continue
            if not self._owned(region, parameter, scope):
                # Not this channel's to withdraw: left as it is, and said.
                changes.append(f"SSM parameter {parameter} in {region} is not this channel's: left alone")
                continue
            self._aws.call(region, "delete_parameter", service="ssm", Name=parameter)
            changes.append(f"SSM parameter {parameter} in {region} deleted")
        return changes

    def _put(self, region: str, parameter: str, image: str, **how: Any) -> None:
        """Write the parameter as an aws:ec2:image pointer at `image`."""
        self._aws.call(
            region,
            "put_parameter",
            service="ssm",
            Name=parameter,
            Value=image,
            Type="String",
            DataType="aws:ec2:image",
            **how,
        )

    def _create(self, region: str, parameter: str, image: str, scope: PublishScope) -> bool:
        """Create the parameter with the channel's tags, only if it does not exist; False when
        someone created it meanwhile."""
        try:
            tags = [{"Key": k, "Value": v} for k, v in self._ownership(scope).items() if v]
            self._put(region, parameter, image, Overwrite=False, Tags=tags)
        except CloudError as exc:
            if "ParameterAlreadyExists" in str(exc):
                return False
            raise
        return True

    # -- the channel tag on AMIs ---------------------------------------------------------------

    def _tags(
        self,
        key: str,
        value: str,
        scope: PublishScope,
        current: Sequence[Pointer],
        previous: Sequence[Pointer],
        refused: list[str],
    ) -> list[str]:
        """The channel tag is on exactly the current images of each region (one per AWS target)
        among the images of `scope` (the channel's namespace): the new ones are tagged before the
        old ones are untagged, so a consumer filtering on it may briefly see both (take the
        newest), never none. Only AMIs of this account carrying the operator's build tags for the
        channel's namespace and image are tagged or untagged: a pointer (from a status anyone
        with write access may edit) is no licence to tag another team's AMI."""
        changes = []
        wanted: dict[str, set[str]] = defaultdict(set)
        for p in current:
            wanted[p.region].add(p.image)
        owned = {labels.NAMESPACE: scope.namespace, labels.IMAGE: scope.image}
        in_scope = [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted(owned.items())]
        in_scope.append({"Name": "tag-key", "Values": [labels.BUILD_ID]})
        carrying = [{"Name": f"tag:{key}", "Values": [value]}, *in_scope]
        for region in sorted(wanted.keys() | {p.region for p in previous}):
            tagged = {
                i["ImageId"]
                for i in self._aws.all(region, "describe_images", "Images", Owners=["self"], Filters=carrying)
            }
            untagged = sorted(wanted[region] - tagged)
            ours: set[str] = set()
            if untagged:
                filters = [{"Name": "image-id", "Values": untagged}, *in_scope]
                found = self._aws.all(region, "describe_images", "Images", Owners=["self"], Filters=filters)
                ours = {i["ImageId"] for i in found}
            for image in untagged:
                if image not in ours:
                    refused.append(
                        f"AMI {image} in {region} is not one of {scope.namespace}/{scope.image} (its tags say "
                        f"otherwise, or it is not this account's): tag {key} is not put on it"
                    )
                    continue
                self._aws.call(region, "create_tags", Resources=[image], Tags=[{"Key": key, "Value": value}])
                changes.append(f"tag {key}={value} on {image} in {region}")
            if not set(untagged) <= ours:
                continue  # the old ones keep the tag: never none
            for stale in sorted(tagged - wanted[region]):
                self._aws.call(region, "delete_tags", Resources=[stale], Tags=[{"Key": key, "Value": value}])
                changes.append(f"tag {key}={value} removed from {stale} in {region}")
        return changes
