"""Recipes and objects for unit tests, built from the examples and small literals."""

from __future__ import annotations

from typing import Any

import yaml

from goldenimage.api import GoldenImage
from goldenimage.api.goldenimage import GoldenImageSpec
from goldenimage.api.identity import BuildIdentity

from . import examples


def example_images() -> list[GoldenImage]:
    out = []
    for path in examples.files():
        out += [GoldenImage.model_validate(d) for d in examples.documents(path) if d["kind"] == "GoldenImage"]
    return out


def example(name: str) -> GoldenImage:
    return next(i for i in example_images() if i.metadata.name == name)


def spec(text: str) -> GoldenImageSpec:
    return GoldenImageSpec.model_validate(yaml.safe_load(text))


AWS_TARGET: dict[str, Any] = {
    "name": "aws-eu",
    "aws": {"region": "eu-west-1", "source": {"amiId": "ami-0123456789abcdef0"}},
}

# The build the template tests render for.
CTX = BuildIdentity(
    namespace="platform",
    image="web-base",
    build="web-base-7",
    version=7,
    uid="1a2b3c4d-0000",
    build_id="web-base-7-1a2b3c4d",
)
