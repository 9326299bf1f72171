"""The Helm chart: lint, render, and the real API server accepts what it renders. (The end-to-end
tier runs the operator with the chart's RBAC, which tests that the role is enough.)"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from goldenimage import paths
from support import chart, components
from support.cluster import Cluster

pytestmark = pytest.mark.integration


def test_lint() -> None:
    result = subprocess.run([components.helm(), "lint", str(paths.CHART)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_defaults_render_a_standalone_operator() -> None:
    documents = chart.render(components.helm())
    kinds = sorted(d["kind"] for d in documents)
    # Without watchNamespaces, both roles are bound cluster-wide.
    assert kinds == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        "Deployment",
        "ServiceAccount",
    ]
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:2] == ["goldenimage", "operator"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["GOLDENIMAGE_RUNNER_IMAGE"] == "ghcr.io/goldenimage/packer-runner:0.1.0"


def test_values_reach_the_operator() -> None:
    documents = chart.render(
        components.helm(),
        "watchNamespaces={team-a,team-b-*}",
        "peering.enabled=true",
        "replicas=2",
        "config.validationNetworks={10.20.0.0/16}",
        "config.awsEndpointUrl=https://ec2.vpce.example",
        "config.ssmParameterPrefix=/golden/{namespace}/",
    )
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    assert "strategy" not in deployment["spec"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    # No priority in the template: replicas share it, and each operator draws its own.
    assert container["args"] == ["--namespace=team-a", "--namespace=team-b-*", "--peering=goldenimage-operator"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["GOLDENIMAGE_VALIDATION_NETWORKS"] == "10.20.0.0/16"
    assert env["GOLDENIMAGE_AWS_ENDPOINT_URL"] == "https://ec2.vpce.example"
    assert env["GOLDENIMAGE_SSM_PARAMETER_PREFIX"] == "/golden/{namespace}/"


def test_rbac_grants_no_more_than_reading_secrets_by_name() -> None:
    roles = [d for d in chart.render(components.helm()) if d["kind"] == "ClusterRole"]
    rules = [r for role in roles for r in role["rules"]]
    secrets = [r for r in rules if "secrets" in r["resources"]]
    assert secrets == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in rules)


def test_with_watch_namespaces_the_operator_can_read_nothing_outside_them(cluster: Cluster) -> None:
    """The roles as the API server enforces them: installed with watchNamespaces, the operator's
    identity reads Secrets and creates Jobs in those namespaces and in no other."""
    release, home = "scoped", "scoped-system"
    for ns in (home, "scoped-team-a", "scoped-team-b"):
        cluster.kubectl("create", "namespace", ns, check=False)
    documents = chart.render(components.helm(), "watchNamespaces={scoped-team-a}", namespace=home, release=release)
    rbac = [d for d in documents if d["kind"] in chart.RBAC]
    assert sorted(d["kind"] for d in rbac) == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "RoleBinding",
        "ServiceAccount",
    ]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
    identity = f"system:serviceaccount:{home}:{release}"

    def can(verb: str, resource: str, ns: str) -> bool:
        found = cluster.kubectl("auth", "can-i", verb, resource, "-n", ns, f"--as={identity}", check=False)
        return found.stdout.strip() == "yes"

    assert can("get", "secrets", "scoped-team-a") and can("create", "jobs", "scoped-team-a")
    assert can("patch", "imagebuilds.goldenimage.io/status", "scoped-team-a")
    for verb, resource in (("get", "secrets"), ("create", "jobs"), ("get", "configmaps"), ("list", "goldenimages")):
        assert not can(verb, resource, "scoped-team-b"), (verb, resource)
        assert not can(verb, resource, "kube-system"), (verb, resource)
    assert not can("list", "secrets", "scoped-team-a")  # by name only, even where it may read
    assert can("list", "namespaces", "default")  # what kopf needs of the cluster itself


def test_the_api_server_accepts_the_rendered_chart(cluster: Cluster, namespace: str) -> None:
    documents = chart.render(components.helm(), namespace=namespace)
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(documents)
    )
    assert result.stdout.count("(server dry run)") == len(documents), result.stdout


def test_the_chart_carries_the_generated_crds() -> None:
    copies = {p.name: p.read_text() for p in (paths.CHART / "crds").glob("*.yaml")}
    originals = {p.name: p.read_text() for p in paths.CRDS.glob("*.yaml")}
    assert copies == originals and len(copies) == 3
