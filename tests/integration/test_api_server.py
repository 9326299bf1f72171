"""The CRDs on a real API server: examples, the invalid corpus, printer columns, categories and
the status subresource."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from goldenimage import paths
from goldenimage.api.resources import RESOURCES, GoldenImage
from support import corpus, examples, mutants
from support.cluster import Cluster
from support.manifests import image_build

pytestmark = pytest.mark.integration

PLURALS = {r.definition.kind: r.definition.plural for r in RESOURCES}


@pytest.mark.parametrize("path", examples.files(), ids=lambda p: p.name)
def test_example_applies_server_side_and_reads_back_equal(cluster: Cluster, namespace: str, path: Path) -> None:
    out = cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", str(path)).stdout
    docs = examples.documents(path)
    assert out.count("serverside-applied") == len(docs)
    for doc in docs:
        kind = PLURALS.get(doc["kind"], doc["kind"].lower())
        live = cluster.get(kind, doc["metadata"]["name"], "-n", namespace)
        for key in ("spec", "data"):
            if key in doc:
                assert live[key] == doc[key], f"{doc['kind']}/{doc['metadata']['name']}.{key} changed on the server"


# The API server's note that it skipped the CEL rules after a schema error: the only error it
# reports at no field (`<nil>`), whatever the CRD says.
SKIPPED_RULES = "some validation rules were not checked because the object was invalid"


def _error_paths(stderr: str) -> list[str]:
    """The field path of every error in kubectl's report of a refused object, except the note
    that CEL rules were skipped."""
    paths = []
    for line in stderr.splitlines():
        if SKIPPED_RULES in line:
            continue
        text = line.strip().removeprefix("* ")
        if " is invalid: " in text:
            text = text.split(" is invalid: ", 1)[1]
        path, sep, _ = text.partition(": ")
        if sep:
            paths.append(path)
    return paths


@pytest.mark.parametrize("case", [c for c in corpus.load() if c.admission], ids=str)
def test_api_server_refuses_invalid_objects(cluster: Cluster, namespace: str, case: corpus.Case) -> None:
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(case.object), check=False)
    assert result.returncode != 0, f"the API server accepted {case.name}"
    assert case.server in result.stderr, result.stderr
    assert case.field in result.stderr, result.stderr
    # Every error names the field it is about: a CEL rule at the object's root without a
    # fieldPath would be reported at `<nil>`.
    paths = _error_paths(result.stderr)
    assert "<nil>" not in paths, result.stderr
    named = [p for p in paths if p == case.field or p.startswith((f"{case.field}.", f"{case.field}["))]
    assert named or f'unknown field "{case.field}"' in result.stderr, result.stderr


def test_cases_only_the_models_refuse_pass_admission(cluster: Cluster, namespace: str) -> None:
    cases = [c for c in corpus.load() if not c.admission]
    assert cases
    for case in cases:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(case.object))


def test_category_lists_all_three_kinds(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(paths.EXAMPLES / "aws-web-base.yaml"))
    cluster.apply(image_build("web-base", 1), namespace)
    by_short_name = {
        "gi": ["goldenimage.goldenimage.io/web-base"],
        "ib": ["imagebuild.goldenimage.io/web-base-1"],
        "ich": ["imagechannel.goldenimage.io/web-candidate"],
    }
    out = cluster.kubectl("get", "golden", "-n", namespace, "-o", "name").stdout
    assert sorted(out.split()) == sorted(n for names in by_short_name.values() for n in names), out
    for short, names in by_short_name.items():
        assert cluster.kubectl("get", short, "-n", namespace, "-o", "name").stdout.split() == names, short


def test_printer_columns(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(paths.EXAMPLES / "channels.yaml"))
    cluster.kubectl("apply", "-n", namespace, "-f", str(paths.EXAMPLES / "aws-web-base.yaml"))
    cluster.apply(image_build("web-base", 7), namespace)
    current = {"version": 7, "build": "web-base-7", "promotedAt": "2026-11-20T10:00:00Z", "reason": "UpstreamChannel"}
    cluster.patch_status(
        "imagechannel",
        "web-prod",
        namespace,
        {"status": {"current": current, "conditions": [_ready("True", "Promoted")]}},
    )
    cluster.patch_status(
        "goldenimage",
        "web-base",
        namespace,
        {"status": {"latestVersion": 7, "latestValidatedVersion": 6, "conditions": [_ready("False", "Validating")]}},
    )
    out = cluster.kubectl("get", "goldenimages,imagechannels", "-n", namespace).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "LATEST", "VALIDATED", "READY", "REASON", "AGE"], out
    assert lines[1].split()[:5] == ["goldenimage.goldenimage.io/web-base", "7", "6", "False", "Validating"], out
    channel_header = next(line for line in lines if line.startswith("NAME") and "BUILD" in line)
    assert channel_header.split() == ["NAME", "IMAGE", "VERSION", "BUILD", "PROMOTED", "READY", "AGE"], out
    prod = next(line for line in lines if "imagechannel.goldenimage.io/web-prod" in line).split()
    assert prod[1:4] == ["web-base", "7", "web-base-7"] and prod[5] == "True", out


def test_status_is_a_subresource(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(paths.EXAMPLES / "aws-web-base.yaml"))
    generation = cluster.get("goldenimage", "web-base", "-n", namespace)["metadata"]["generation"]
    # A write to /status changes status only, and leaves the generation alone.
    cluster.patch_status(
        "goldenimage", "web-base", namespace, {"status": {"latestVersion": 3}, "spec": {"generalize": False}}
    )
    live = cluster.get("goldenimage", "web-base", "-n", namespace)
    assert live["status"]["latestVersion"] == 3
    assert live["spec"]["generalize"] is True
    assert live["metadata"]["generation"] == generation
    # A write to the object cannot change status.
    cluster.kubectl(
        "patch",
        "goldenimage",
        "web-base",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"status": {"latestVersion": 99}, "spec": {"generalize": False}}),
    )
    live = cluster.get("goldenimage", "web-base", "-n", namespace)
    assert live["status"]["latestVersion"] == 3
    assert live["spec"]["generalize"] is False
    assert live["metadata"]["generation"] == generation + 1


def test_image_build_spec_is_immutable_except_revoked(cluster: Cluster, namespace: str) -> None:
    cluster.apply(image_build("web-base", 1), namespace)

    def patch(body: dict) -> str:  # type: ignore[type-arg]
        result = cluster.kubectl(
            "patch",
            "imagebuild",
            "web-base-1",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps(body),
            check=False,
        )
        return result.stderr

    assert "spec is immutable except revoked" in patch({"spec": {"version": 2}})
    assert "spec.recipe is immutable" in patch({"spec": {"recipe": {"generalize": False}}})
    assert "spec.sources is immutable" in patch({"spec": {"sources": {"aws-eu": "ami-0123456789abcdef1"}}})
    assert patch({"spec": {"revoked": {"reason": "CVE-2026-1234"}}}) == ""
    assert "a revocation cannot be withdrawn" in patch({"spec": {"revoked": None}})
    assert cluster.get("imagebuild", "web-base-1", "-n", namespace)["spec"]["revoked"]["reason"] == "CVE-2026-1234"


def test_a_channel_keeps_its_image(cluster: Cluster, namespace: str) -> None:
    channel = {
        "apiVersion": "goldenimage.io/v1alpha1",
        "kind": "ImageChannel",
        "metadata": {"name": "prod"},
        "spec": {"image": "web-base", "version": 1},
    }
    cluster.apply(channel, namespace)
    moved = cluster.kubectl(
        "patch", "imagechannel", "prod", "-n", namespace, "--type=merge", "-p", '{"spec":{"image":"api"}}', check=False
    )
    assert "spec.image is immutable" in moved.stderr
    # Everything else of the spec still changes.
    cluster.kubectl("patch", "imagechannel", "prod", "-n", namespace, "--type=merge", "-p", '{"spec":{"version":2}}')
    live = cluster.get("imagechannel", "prod", "-n", namespace)
    assert (live["spec"]["image"], live["spec"]["version"]) == ("web-base", 2)


def _ready(status: str, reason: str) -> dict[str, str]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": "",
        "lastTransitionTime": "2026-11-20T10:00:00Z",
    }


# Rules only the models can check (the API server's CEL cannot): such an object is admitted and
# then reported by the operator as a condition, never acted on.
MODEL_ONLY = ("is outside",)


def _models_refusal(obj: dict[str, Any]) -> str:
    try:
        GoldenImage.model_validate(obj)
    except ValidationError as exc:
        return str(exc)
    return ""


def test_generated_mutants_the_api_server_admits_are_readable_by_the_models(cluster: Cluster, namespace: str) -> None:
    """What the API server stores, the operator must be able to read: a mutant admitted by the
    API server and refused by the models would be an object nobody can act on (beyond the few
    rules only the models know)."""
    admitted = refused = 0
    for doc, path, new in mutants.sample(seed=7, count=int(os.environ.get("GOLDENIMAGE_MUTANTS", "80"))):
        server = cluster.kubectl(
            "apply", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-", input=json.dumps(doc), check=False
        )
        if server.returncode != 0:
            refused += 1
            continue
        admitted += 1
        stored = json.loads(server.stdout)  # what the API server would store (nulls dropped, defaults set)
        refusal = _models_refusal(stored)
        assert not refusal or any(p in refusal for p in MODEL_ONLY), (path, repr(new)[:80], refusal)
    print(f"mutants: {admitted} admitted, {refused} refused")
    assert admitted and refused
