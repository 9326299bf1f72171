"""Generates the CustomResourceDefinitions from the models, into crds/ and the Helm chart.

python -m goldenimage.api.crdgen            # write crds/ and charts/goldenimage-operator/crds/
python -m goldenimage.api.crdgen --check    # exit 1 if either differs from the models
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any

import yaml

from .. import paths
from .group import API_VERSION, CATEGORY, GROUP, VERSION
from .openapi import structural
from .resources import RESOURCES, Definition

HEADER = "# Generated from operator/goldenimage/api by `python -m goldenimage.api.crdgen`. Do not edit.\n"


def crd(definition: Definition) -> dict[str, Any]:
    model = definition.model
    spec_schema = structural(model.model_fields["spec"].annotation)  # type: ignore[arg-type]
    status_annotation = model.model_fields["status"].annotation
    status_model = next(a for a in status_annotation.__args__ if a is not type(None))  # type: ignore[union-attr]
    schema: dict[str, Any] = {
        "description": definition.description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            # Only name is declared (the API server allows nothing else here): rules on the
            # object's name report it through fieldPath, which must name a declared field.
            "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 253}}},
            "spec": spec_schema,
            "status": structural(status_model),
        },
    }
    if definition.rules:
        schema["x-kubernetes-validations"] = [r.as_schema() for r in definition.rules]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": definition.crd_name,
            "labels": {"app.kubernetes.io/part-of": "goldenimage-operator"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": definition.kind,
                "listKind": f"{definition.kind}List",
                "plural": definition.plural,
                "singular": definition.singular,
                "shortNames": list(definition.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [c.as_schema() for c in definition.columns],
                }
            ],
        },
    }


def render(definition: Definition) -> str:
    return HEADER + yaml.safe_dump(crd(definition), sort_keys=False, width=120, allow_unicode=True)


def files() -> dict[str, str]:
    """File name -> content of every CRD."""
    return {f"{GROUP}_{r.definition.plural}.yaml": render(r.definition) for r in RESOURCES}


def check(output: Path, wanted: dict[str, str] | None = None) -> list[str]:
    """Differences between the generated CRDs (`wanted`, else generated now) and the files in
    `output`, as unified diffs."""
    wanted = files() if wanted is None else wanted
    problems = []
    for name, content in wanted.items():
        path = output / name
        current = path.read_text() if path.exists() else ""
        if current != content:
            diff = difflib.unified_diff(current.splitlines(), content.splitlines(), str(path), "generated", lineterm="")
            problems.append("\n".join(list(diff)[:40]))
    for stray in sorted(p.name for p in output.glob(f"{GROUP}_*.yaml") if p.name not in wanted):
        problems.append(f"{output / stray}: no model generates this file")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m goldenimage.api.crdgen", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files differ from the models")
    parser.add_argument("--output", type=Path, action="append", help="directory of the CRD files (repeatable)")
    args = parser.parse_args(argv)
    outputs: list[Path] = args.output or list(paths.CRD_DIRECTORIES)
    generated = files()
    if args.check:
        problems = [p for output in outputs for p in check(output, generated)]
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("CRDs are out of date: run `python -m goldenimage.api.crdgen`", file=sys.stderr)
            return 1
        where = " and ".join(str(o) for o in outputs)
        print(f"{len(RESOURCES)} CRDs in {where} match the models ({API_VERSION})")
        return 0
    for output in outputs:
        output.mkdir(parents=True, exist_ok=True)
        for name, content in generated.items():
            (output / name).write_text(content)
            print(f"wrote {output / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
