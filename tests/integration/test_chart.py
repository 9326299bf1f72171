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
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "ServiceAccount"]
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
    (role,) = [d for d in chart.render(components.helm()) if d["kind"] == "ClusterRole"]
    secrets = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert secrets == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in role["rules"])


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
