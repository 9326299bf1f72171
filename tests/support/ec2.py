"""Looking at EC2 (moto, in the end-to-end tier) through the operator's own AWS adapter."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from goldenimage.clouds.aws.adapter import AwsApi


def running_instances(aws: AwsApi, regions: Iterable[str], tags: Mapping[str, str]) -> list[str]:
    """IDs of the instances with all of `tags` in `regions` that are not terminated or on their way."""
    filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()]
    return [
        i["InstanceId"]
        for region in regions
        for r in aws.ec2(region).describe_instances(Filters=filters)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] not in ("terminated", "shutting-down")
    ]
