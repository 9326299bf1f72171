"""Keeping secret values out of everything the runner prints or reports: each value as written,
line by line when it spans lines, and in the encodings a tool may print it in (JSON strings,
base64 at any alignment and its URL-safe form, URL encoding, hex)."""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

MASK = "<sensitive>"
# Shorter values are not masked: masking them would destroy the text around them.
SHORTEST = 4
# An encoded fragment shorter than this could match ordinary text by chance.
SHORTEST_ENCODED = 8


def _base64_forms(data: bytes) -> set[str]:
    """The part of the base64 text that encodes `data` wherever it starts in a longer input: for
    each of the three alignments, the characters that depend on `data` alone."""
    forms: set[str] = set()
    encoders: tuple[Callable[[bytes], bytes], ...] = (base64.b64encode, base64.urlsafe_b64encode)
    for encode in encoders:
        for offset in range(3):
            text = encode(b"\0" * offset + data).decode()
            first = math.ceil(offset * 8 / 6)
            last = (offset + len(data)) * 8 // 6
            stable = text[first:last]
            if len(stable) >= SHORTEST_ENCODED:
                forms.add(stable)
    return forms


def forms(secret: str) -> set[str]:
    """Every form of `secret` the scrubber masks."""
    out: set[str] = set()
    parts = [secret, *(line.strip() for line in secret.splitlines())] if "\n" in secret else [secret]
    for part in parts:
        if len(part) < SHORTEST:
            continue
        raw = part.encode()
        out |= {part, json.dumps(part)[1:-1], quote(part, safe=""), quote_plus(part)}
        out |= {binascii.hexlify(raw).decode(), binascii.hexlify(raw).decode().upper()}
        out |= _base64_forms(raw)
    return {f for f in out if len(f) >= SHORTEST}


class Scrubber:
    def __init__(self, secrets: Iterable[str]) -> None:
        found: set[str] = set()
        for secret in secrets:
            found |= forms(secret)
        # Longest first, so that a secret containing another is masked whole.
        self._forms = sorted(found, key=len, reverse=True)

    @classmethod
    def from_env(cls, names: Iterable[str]) -> Scrubber:
        return cls(os.environ[n] for n in names if os.environ.get(n))

    def __call__(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, MASK)
        return text
