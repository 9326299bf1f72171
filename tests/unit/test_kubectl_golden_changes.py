"""`kubectl golden` changes decided without a cluster: unpin, revoke's patch, and versions the
image declares revoked (the plugin's own reads replaced by a dict of objects)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from goldenimage.api.group import API_VERSION
from goldenimage.cli.kubectl_golden import CommandError, Golden, parser, promote, revoke, unpin

NOW = "2026-11-21T10:00:00Z"
TARGET = {"name": "aws-eu", "aws": {"region": "eu-west-1", "source": {"amiId": "ami-0123456789abcdef0"}}}


class Objects(Golden):
    """The plugin's reads and patches on a dict of objects, by plural and name."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.namespace, self.user, self._declared = "platform", "alice", {}
        self.objects = {(o["kind"].lower() + "s", o["metadata"]["name"]): o for o in objects}
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((plural, name))

    def patch(self, plural: str, name: str, body: dict[str, Any]) -> None:
        self.patches.append((plural, name, body))


def channel(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "ImageChannel", "metadata": {"name": "web-prod"}, "spec": spec}


def image(*revoked: int) -> dict[str, Any]:
    revocations = [{"version": v, "reason": "CVE-2026-1234"} for v in revoked]
    spec = {"targets": [TARGET], "revocations": revocations}
    return {"apiVersion": API_VERSION, "kind": "GoldenImage", "metadata": {"name": "web-base"}, "spec": spec}


def build(version: int) -> dict[str, Any]:
    """A validated version of web-base."""
    condition = {"type": "Validated", "status": "True", "reason": "Validated", "lastTransitionTime": NOW}
    artifacts = [{"region": "eu-west-1", "id": f"ami-00000000000000{version:03d}"}]
    return {
        "apiVersion": API_VERSION,
        "kind": "ImageBuild",
        "metadata": {"name": f"web-base-{version}"},
        "spec": {
            "image": "web-base",
            "version": version,
            "fingerprint": "sha256:" + "0" * 64,
            "reason": "Initial",
            "recipe": {"targets": [TARGET]},
        },
        "status": {
            "targets": [{"name": "aws-eu", "cloud": "aws", "phase": "Succeeded", "artifacts": artifacts}],
            "conditions": [condition],
        },
    }


def args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(list(argv))


UPSTREAM = {"channel": "web-candidate", "minSoak": "24h"}


def test_unpin_removes_the_pin_of_a_channel_with_a_policy() -> None:
    golden = Objects(channel(image="web-base", source=UPSTREAM, version=1))
    said = unpin(golden, args("unpin", "web-prod"))
    assert golden.patches == [("imagechannels", "web-prod", {"spec": {"version": None}})]
    assert said == "imagechannel/web-prod: unpinned from version 1; it follows its policy again (channel web-candidate)"


def test_unpin_dry_run_prints_the_change_to_make_in_git() -> None:
    golden = Objects(channel(image="web-base", source={"latestValidated": {}}, version=3))
    said = unpin(golden, args("unpin", "web-prod", "--dry-run"))
    assert golden.patches == []
    assert "back to its policy (latestValidated)" in said
    assert (
        f"kubectl patch imagechannel web-prod -n platform --type=merge -p '{json.dumps({'spec': {'version': None}})}'"
        in said
    )
    assert "remove spec.version" in said


@pytest.mark.parametrize(
    ("spec", "refusal"),
    [
        ({"image": "web-base", "source": UPSTREAM}, "web-prod is not pinned (no spec.version): it already follows"),
        (
            {"image": "web-base", "version": 2},
            "web-prod has no spec.source: without spec.version it would have no policy",
        ),
    ],
    ids=["not-pinned", "no-policy"],
)
def test_unpin_refuses_what_it_cannot_do(spec: dict[str, Any], refusal: str) -> None:
    golden = Objects(channel(**spec))
    with pytest.raises(CommandError, match=refusal.replace("(", r"\(").replace(")", r"\)")):
        unpin(golden, args("unpin", "web-prod"))
    assert golden.patches == []


def test_unpin_of_an_unknown_channel() -> None:
    with pytest.raises(CommandError, match="imagechannel 'web-prod' not found in namespace platform"):
        unpin(Objects(), args("unpin", "web-prod"))


def test_promote_refuses_a_version_the_image_declares_revoked_before_its_build_says_so() -> None:
    golden = Objects(channel(image="web-base", source=UPSTREAM), image(2), build(1), build(2))
    with pytest.raises(CommandError, match="web-base: version 2 is revoked: CVE-2026-1234"):
        promote(golden, args("promote", "web-prod", "--version", "2"))
    promote(golden, args("promote", "web-prod", "--version", "1"))
    assert golden.patches == [("imagechannels", "web-prod", {"spec": {"version": 1}})]


def test_revoke_sends_the_shared_patch_and_its_dry_run_shows_the_declaration_too() -> None:
    golden = Objects(build(2))
    dry = revoke(golden, args("revoke", "web-base-2", "--reason", "CVE-2026-1234", "--dry-run"))
    assert golden.patches == []
    assert '"revokedBy": "alice"' in dry
    assert '#       - {"version": 2, "reason": "CVE-2026-1234"}' in dry
    revoke(golden, args("revoke", "web-base-2", "--reason", "CVE-2026-1234"))
    ((plural, name, patch),) = golden.patches
    assert (plural, name) == ("imagebuilds", "web-base-2")
    assert set(patch) == {"spec"}  # unconditional, as before
    revoked = patch["spec"]["revoked"]
    assert (revoked["reason"], revoked["revokedBy"]) == ("CVE-2026-1234", "alice")
    assert revoked["revokedAt"].endswith("Z") and "." not in revoked["revokedAt"]
