"""A small HCL2 writer: blocks, attributes and values, with strings escaped so that nothing a
user wrote is ever interpreted as a template expression."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Expr:
    """An HCL expression written as is, e.g. `var.build_id`."""

    text: str


@dataclass
class Block:
    type: str
    labels: tuple[str, ...] = ()
    attributes: dict[str, object] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)
    comment: str = ""

    def add(self, block: Block) -> Block:
        self.blocks.append(block)
        return block


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote(text: str) -> str:
    """A double-quoted string with only the escapes HCL knows; other control characters as
    \\uNNNN (JSON's \\b and \\f are not HCL)."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or char in "\u2028\u2029\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def string(text: str) -> str:
    """A quoted HCL string literal; `${` and `%{` are escaped so they stay literal."""
    return _quote(text).replace("${", "$${").replace("%{", "%%{")


def template(text: str) -> str:
    """A quoted HCL string whose `${...}` interpolations are meant (written by us, never users)."""
    return _quote(text)


def value(v: object, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(v, Expr):
        return v.text
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return json.dumps(v)
    if isinstance(v, str):
        return string(v)
    if v is None:
        return "null"
    if isinstance(v, Mapping):
        if not v:
            return "{}"
        inner = _attributes({_key(k): value(item, indent + 1) for k, item in v.items()}, pad + "  ")
        return "{\n" + inner + pad + "}"
    if isinstance(v, Sequence):
        if not v:
            return "[]"
        items = [value(item, indent + 1) for item in v]
        if sum(len(i) for i in items) < 80 and all("\n" not in i for i in items):
            return "[" + ", ".join(items) + "]"
        return "[\n" + "".join(f"{pad}  {i},\n" for i in items) + pad + "]"
    raise TypeError(f"cannot write {type(v).__name__} as HCL")


def _key(key: str) -> str:
    # Quoted always: a bare key such as `for` or `if` would be read as an expression.
    return string(key)


def _attributes(rendered: Mapping[str, str], pad: str) -> str:
    """`key = value` lines aligned as `packer fmt` does: runs of single-line values share the
    column of their longest key; a multi-line value stands alone between runs."""
    lines: list[str] = []
    run: list[tuple[str, str]] = []

    def flush() -> None:
        width = max((len(k) for k, _ in run), default=0)
        lines.extend(f"{pad}{k.ljust(width)} = {v}\n" for k, v in run)
        run.clear()

    for key, text in rendered.items():
        if "\n" in text:
            flush()
            lines.append(f"{pad}{key} = {text}\n")
        else:
            run.append((key, text))
    flush()
    return "".join(lines)


def render(blocks: Sequence[Block], indent: int = 0) -> str:
    out = []
    for block in blocks:
        out.append(_block(block, indent))
    return "\n".join(out)


def _block(block: Block, indent: int) -> str:
    pad = "  " * indent
    head = pad + block.type + "".join(f" {string(label)}" for label in block.labels) + " {\n"
    lines: list[str] = []
    if block.comment:
        lines += [f"{pad}# {line}\n" for line in block.comment.splitlines()]
    body = _attributes({k: value(v, indent + 1) for k, v in block.attributes.items() if v is not None}, pad + "  ")
    nested = "".join("\n" + _block(b, indent + 1) for b in block.blocks)
    return "".join(lines) + head + body + nested + pad + "}\n"
