"""The CRDs in crds/ are generated from the models, and the drift check notices a change."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from pydantic import Field

from goldenimage import paths
from goldenimage.api import crdgen, openapi
from goldenimage.api.base import Model
from goldenimage.api.goldenimage import GoldenImageSpec
from goldenimage.api.resources import RESOURCES, GoldenImage


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((paths.CRDS / f"goldenimage.io_{name}.yaml").read_text())
    return doc


def test_committed_crds_match_the_models() -> None:
    for directory in paths.CRD_DIRECTORIES:  # crds/ and the Helm chart's copy
        assert crdgen.check(directory) == []


def test_check_mode_fails_on_drift(tmp_path: Path) -> None:
    assert crdgen.main(["--output", str(tmp_path)]) == 0
    assert crdgen.main(["--check", "--output", str(tmp_path)]) == 0
    path = tmp_path / "goldenimage.io_goldenimages.yaml"
    path.write_text(path.read_text().replace("maxLength: 32", "maxLength: 33", 1))
    assert crdgen.main(["--check", "--output", str(tmp_path)]) == 1
    (tmp_path / "goldenimage.io_goldenimages.yaml").unlink()
    assert crdgen.main(["--check", "--output", str(tmp_path)]) == 1


def test_check_mode_fails_when_a_model_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert crdgen.main(["--output", str(tmp_path)]) == 0

    class ChangedSpec(GoldenImageSpec):
        owner_team: Annotated[str, Field(max_length=63)] | None = None

    class ChangedImage(GoldenImage):
        spec: ChangedSpec

    monkeypatch.setattr(GoldenImage, "definition", dataclasses.replace(GoldenImage.definition, model=ChangedImage))
    assert crdgen.main(["--check", "--output", str(tmp_path)]) == 1
    assert "ownerTeam" in crdgen.files()["goldenimage.io_goldenimages.yaml"]


def test_check_runs_as_a_module() -> None:
    result = subprocess.run([sys.executable, "-m", "goldenimage.api.crdgen", "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.definition.kind)
def test_crd_shape(resource: Any) -> None:
    d = resource.definition
    crd = _load(d.plural)
    spec = crd["spec"]
    assert spec["group"] == "goldenimage.io" and spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == list(d.short_names)
    assert spec["names"]["categories"] == ["golden"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    assert version["additionalPrinterColumns"] == [c.as_schema() for c in d.columns]
    schema = version["schema"]["openAPIV3Schema"]
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert schema["x-kubernetes-validations"], "the object-level rules are there"


def _walk(node: dict[str, Any], path: str = ""):  # type: ignore[no-untyped-def]
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{key}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}[*]")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.definition.kind)
def test_every_string_list_and_map_is_bounded_and_every_rule_has_a_message(resource: Any) -> None:
    schema = _load(resource.definition.plural)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    checked = 0
    for path, node in _walk(schema):
        if path in {"", ".apiVersion", ".kind", ".metadata"}:
            continue
        assert "type" in node, path
        if node["type"] == "string":
            assert "maxLength" in node or "enum" in node or node.get("format") == "date-time", path
        if node["type"] == "array":
            assert "maxItems" in node, path
        if node["type"] == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, path
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"].strip(), f"{path}: {rule['rule']}"
        checked += 1
    assert checked > 20


def test_cel_rules_the_issue_names_are_present() -> None:
    text = "".join((paths.CRDS / f).read_text() for f in crdgen.files())
    for message in (
        "a target needs exactly one cloud",
        "target names must be unique",
        "spec is immutable except revoked",
        "spec.version must be 1 or more",
        "must be a duration",
        "must be a cron expression",
    ):
        assert message in text, message


def test_printer_columns() -> None:
    """The columns of the generated CRDs, by name; priority 1 only shows with -o wide."""
    columns = {
        d.plural: [
            (c["name"], c.get("priority", 0))
            for c in _load(d.plural)["spec"]["versions"][0]["additionalPrinterColumns"]
        ]
        for d in (r.definition for r in RESOURCES)
    }
    assert columns == {
        "goldenimages": [
            ("Latest", 0),
            ("Validated", 0),
            ("Ready", 0),
            ("Reason", 0),
            ("Age", 0),
            ("Message", 1),
        ],
        "imagebuilds": [
            ("Image", 0),
            ("Version", 0),
            ("Status", 0),
            ("Revoked", 0),
            ("Age", 0),
            ("Fingerprint", 1),
        ],
        "imagechannels": [
            ("Image", 0),
            ("Version", 0),
            ("Build", 0),
            ("Promoted", 0),
            ("Ready", 0),
            ("Age", 0),
            ("Reason", 1),
        ],
    }


def test_unbounded_models_are_refused() -> None:
    class Unbounded(Model):
        name: str

    with pytest.raises(openapi.SchemaError, match="string without maxLength"):
        openapi.structural(Unbounded)

    class UnboundedList(Model):
        names: list[int]

    with pytest.raises(openapi.SchemaError, match="list without maxItems"):
        openapi.structural(UnboundedList)


def _schema(resource: Any) -> dict[str, Any]:
    schema: dict[str, Any] = crdgen.crd(resource.definition)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _fields(node: dict[str, Any], path: str):  # type: ignore[no-untyped-def]
    """(path, schema) of every property below `node`, through list items and map values."""
    for key, child in node.get("properties", {}).items():
        yield f"{path}.{key}", child
        yield from _fields(child, f"{path}.{key}")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _fields(node["additionalProperties"], f"{path}[*]")
    if isinstance(node.get("items"), dict):
        yield from _fields(node["items"], f"{path}[*]")


def _own_words(node: dict[str, Any]) -> str:
    """A field's description without the sentence the generator adds about its default."""
    return str(node.get("description", "")).split("Default: ", 1)[0].strip()


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.definition.kind)
def test_every_field_has_a_description(resource: Any) -> None:
    """What `kubectl explain` shows: spec and status and every field below them, in list items
    and map values too, say what they are, in sentences of their own."""
    top = _schema(resource)["properties"]
    fields = [
        found for name in ("spec", "status") for found in [(f".{name}", top[name]), *_fields(top[name], f".{name}")]
    ]
    assert len(fields) > 30
    missing = [path for path, node in fields if not _own_words(node)]
    assert not missing, f"{len(missing)} fields without a description:\n" + "\n".join(missing)
    unfinished = [f"{path}: {_own_words(node)!r}" for path, node in fields if not _own_words(node).endswith(".")]
    assert not unfinished, "descriptions that are not full sentences:\n" + "\n".join(unfinished)


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.definition.kind)
def test_rule_field_paths_name_declared_fields(resource: Any) -> None:
    """The API server refuses a CRD whose rule names a field its schema does not declare; and a
    rule at the object's root without a field path is reported at no field at all (`<nil>`)."""
    schema = _schema(resource)
    assert schema["x-kubernetes-validations"]
    for rule in schema["x-kubernetes-validations"]:
        assert "fieldPath" in rule, f"the root rule {rule['rule']!r} names no field"
    named = 0
    for path, node in _walk(schema):
        for rule in node.get("x-kubernetes-validations", []):
            if "fieldPath" not in rule:
                continue
            assert re.fullmatch(r"(\.[A-Za-z][A-Za-z0-9]*)+", rule["fieldPath"]), rule
            target = node
            for part in rule["fieldPath"].split(".")[1:]:
                assert part in target.get("properties", {}), f"{path or '.'}: {rule['fieldPath']} is not declared"
                target = target["properties"][part]
            named += 1
    assert named >= len(schema["x-kubernetes-validations"])
