"""The end-to-end tier: the operator as a process, the local pod executor running the real runner
with a real Packer, AWS in moto. The operator watches the namespaces named e2e-*."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from goldenimage.local.aws import CREDENTIALS
from goldenimage.local.stack import Stack
from support import components, procs
from support.cluster import Cluster
from support.namespaces import make_namespace

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def stack(cluster: Cluster) -> Iterator[Stack]:
    if cluster.local is None:
        components.missing("the local pod executor", "end-to-end tests run on the project's local control plane")
    components.packer()
    assert cluster.local is not None
    running = Stack.attach(cluster.local, namespaces=("e2e-*",))
    procs.started(running.pids)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def ns(stack: Stack, cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = make_namespace(cluster, request, "e2e")
    yield name
    if request.session.testsfailed:
        print(f"\n--- operator log (tail) ---\n{stack.operator_log.read_text(errors='replace')[-6000:]}")
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def ec2(stack: Stack) -> Callable[[str], Any]:
    """An EC2 client to moto for a region."""

    def client(region: str) -> Any:
        return boto3.client(
            "ec2",
            region_name=region,
            endpoint_url=stack.moto.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    return client
