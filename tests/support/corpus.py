"""The invalid-object corpus (tests/data/invalid-objects.yaml), expanded and ready to replay."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PATH = Path(__file__).resolve().parents[1] / "data" / "invalid-objects.yaml"
_STRING = re.compile(r"^\{\{(.)\*([0-9]+)\}\}$")
_LIST = re.compile(r"^\{\{(\[.*\])\*([0-9]+)\}\}$", re.S)


@dataclass(frozen=True)
class Case:
    name: str
    field: str
    model: str
    server: str
    admission: bool
    object: dict[str, Any]

    def __str__(self) -> str:
        return self.name


def _expand(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    if isinstance(value, str):
        if m := _STRING.match(value):
            return m.group(1) * int(m.group(2))
        if m := _LIST.match(value):
            return json.loads(m.group(1)) * int(m.group(2))
    return value


def load() -> list[Case]:
    data = yaml.safe_load(PATH.read_text())
    return [
        Case(
            name=c["name"],
            field=c["field"],
            model=c["model"],
            server=c.get("server", c["model"]),
            admission=c.get("admission", True),
            object=_expand(c["object"]),
        )
        for c in data["cases"]
    ]
