"""Hostile variations of the example GoldenImages: one place changed at a time (a string replaced
by injection text, odd unicode, control characters or a huge value; a map key replaced the same
way; a value replaced by another type or an out-of-bounds number)."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

from . import examples

HOSTILE = [
    '"; rm -rf / #',
    "$(reboot)",
    "`id`",
    "${var.token}",
    "$${x}",
    "%{ if true }x%{ endif }",
    '"\n}\nbuild {\n  sources = ["x"]\n}\n#',
    "a\\",
    "\\u0022",
    "}\n",
    "\x00",
    "\r\n# comment",
    "\u2028\u2029",
    "\u202etxt.exe",
    "ﬁ𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🙂",
    "' OR '1'='1",
    "{{ .Vars }}",
    "../../etc/passwd",
    "x" * 70_000,
]
OTHER_TYPES: list[Any] = [None, 0, -1, 2**63, 1.5, True, [], {}, ["x"], {"a": "b"}]

Path = tuple[Any, ...]


def documents() -> list[dict[str, Any]]:
    """The example GoldenImages, as manifests."""
    out = []
    for path in examples.files():
        out += [d for d in examples.documents(path) if d["kind"] == "GoldenImage"]
    return out


def leaves(node: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every value under `node`, and every key of a map (as ("key", path))."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, ("key", key)), key
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from leaves(value, (*path, index))


def replace(doc: dict[str, Any], path: Path, new: Any) -> dict[str, Any]:
    """`doc` with the spec's value (or map key) at `path` replaced by `new`."""
    mutant = copy.deepcopy(doc)
    parent: Any = mutant["spec"]
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if isinstance(last, tuple):  # a key of a map: the value moves to the new key
        _, key = last
        if isinstance(new, str) and new not in parent:
            parent[new] = parent.pop(key)
    else:
        parent[last] = new
    return mutant


def sample(seed: int, count: int) -> list[tuple[dict[str, Any], Path, Any]]:
    """`count` mutants, the same for the same seed."""
    rng = random.Random(seed)
    docs = documents()
    out = []
    for _ in range(count):
        doc = rng.choice(docs)
        path, old = rng.choice([(p, v) for p, v in leaves(doc["spec"]) if p])
        pool = HOSTILE + OTHER_TYPES if isinstance(old, str) or isinstance(path[-1], tuple) else OTHER_TYPES + HOSTILE
        new = rng.choice(pool)
        out.append((replace(doc, path, new), path, new))
    return out
