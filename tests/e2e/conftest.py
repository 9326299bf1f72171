"""The end-to-end tier: the operator as a process, the local pod executor running the real runner
with a real Packer, the three clouds (moto and the fakes) on real machines in the lab. The
operator watches the namespaces named e2e-*."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from goldenimage.clouds.aws.adapter import AwsApi
from goldenimage_dev.stack import Stack
from support import chart, components, lab, procs
from support.cluster import Cluster
from support.namespaces import make_namespace

pytestmark = pytest.mark.e2e

# Each test's reports (setup, call, teardown) so far, for its fixtures' teardown to read.
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


@pytest.fixture(scope="session")
def stack(cluster: Cluster) -> Iterator[Stack]:
    if cluster.local is None:
        components.missing("the local pod executor", "end-to-end tests run on the project's local control plane")
    components.packer()
    lab.require()
    assert cluster.local is not None
    # The operator runs as the Helm chart's ServiceAccount: its RBAC must be enough, and is tested.
    identity = chart.operator_kubeconfig(cluster, components.helm(), cluster.local.plane.directory)
    running = Stack.attach(cluster.local, namespaces=("e2e-*",), operator_kubeconfig=identity)
    procs.started(running.pids)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def ns(stack: Stack, cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = make_namespace(cluster, request, "e2e")
    yield name
    if any(report.failed for report in request.node.stash.get(REPORTS, {}).values()):
        print(f"\n--- operator log (tail) ---\n{stack.operator_log.read_text(errors='replace')[-6000:]}")
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def aws(stack: Stack) -> AwsApi:
    """The operator's AWS adapter on the local AWS; it keeps one client per service and region."""
    return stack.aws
