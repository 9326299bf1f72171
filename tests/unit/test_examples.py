"""Every example manifest parses through the models and says what a user would expect."""

from __future__ import annotations

from collections import Counter

import pytest

from goldenimage.api import RESOURCES, GoldenImage, ImageChannel
from support import examples

KINDS = {r.definition.kind: r for r in RESOURCES}
FILES = examples.files()


def test_the_examples_exist() -> None:
    names = {p.name for p in FILES}
    assert {
        "aws-web-base.yaml",
        "gcp-web-base.yaml",
        "azure-web-base.yaml",
        "multi-cloud.yaml",
        "channels.yaml",
    } <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_parses(path) -> None:  # type: ignore[no-untyped-def]
    docs = examples.documents(path)
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith("goldenimage.io/"):
            obj = KINDS[doc["kind"]].model_validate(doc)
            # Nothing is lost or renamed on the way through the models.
            assert _subset(doc, obj.wire()), f"{path.name}: {doc['metadata']['name']} changed in the models"
        else:
            assert doc["kind"] == "ConfigMap"


def _subset(small: object, big: object) -> bool:
    if isinstance(small, dict) and isinstance(big, dict):
        return all(k in big and _subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list) and isinstance(big, list):
        return len(small) == len(big) and all(_subset(a, b) for a, b in zip(small, big, strict=True))
    return small == big


def _all(kind: type) -> list:  # type: ignore[type-arg]
    out = []
    for path in FILES:
        out += [kind.model_validate(d) for d in examples.documents(path) if d["kind"] == kind.__name__]
    return out


def test_every_cloud_is_covered() -> None:
    clouds = Counter(t.cloud for image in _all(GoldenImage) for t in image.spec.targets)
    assert set(clouds) == {"aws", "gcp", "azure"}
    multi = [i for i in _all(GoldenImage) if len({t.cloud for t in i.spec.targets}) == 3]
    assert multi, "one example builds on all three clouds"


def test_aws_example_is_the_rhel9_web_base() -> None:
    (image,) = [i for i in _all(GoldenImage) if i.metadata.name == "web-base"]
    target = image.spec.targets[0]
    assert target.aws is not None and target.aws.copy_to_regions, "built in two regions"
    assert target.aws.source.ami_filter is not None and "debian-12" in target.aws.source.ami_filter.name
    kinds = [next(k for k in ("shell", "ansible", "file") if getattr(p, k)) for p in image.spec.provisioners]
    assert kinds == ["shell", "ansible", "shell"]
    assert image.spec.tags["Role"] == "web"


def test_channels_form_a_candidate_to_prod_pair_with_soak() -> None:
    channels = {c.metadata.name: c for c in _all(ImageChannel)}
    prod = channels["web-prod"]
    assert prod.spec.source is not None and prod.spec.source.channel == "web-candidate"
    assert prod.spec.source.min_soak == "24h"
    candidate = channels["web-candidate"]
    assert candidate.spec.source is not None and candidate.spec.source.latest_validated is not None
    assert prod.spec.image == candidate.spec.image == "web-base"
