"""The runner's scrubber: a secret value never survives in what the runner prints, whatever the
text around it and however a tool printed it (generated values, prefixes and encodings)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from urllib.parse import quote, quote_plus

from hypothesis import given
from hypothesis import strategies as st

from goldenimage.runner.scrub import MASK, Scrubber

SECRETS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=8, max_size=60).filter(
    lambda s: s.strip() == s and "\n" not in s and len(s.strip()) >= 8
)
AROUND = st.binary(max_size=7)

ENCODINGS: dict[str, Callable[[bytes], str]] = {
    "plain": lambda b: b.decode(errors="replace"),
    "base64": lambda b: base64.b64encode(b).decode(),
    "base64url": lambda b: base64.urlsafe_b64encode(b).decode(),
    "hex": lambda b: binascii.hexlify(b).decode(),
    "HEX": lambda b: binascii.hexlify(b).decode().upper(),
}


def _recoverable(secret: str, text: str) -> bool:
    """Whether `text` still holds the secret in a form the scrubber is meant to mask: the secret
    itself, or its encoding in one of the three base64 alignments (its stable core)."""
    if secret in text:
        return True
    raw = secret.encode()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):
            core = encode(b"\0" * offset + raw).decode()[(offset * 8 + 5) // 6 : (offset + len(raw)) * 8 // 6]
            if len(core) >= 8 and core in text:
                return True
    return binascii.hexlify(raw).decode() in text.lower()


@given(SECRETS, AROUND, AROUND, st.sampled_from(sorted(ENCODINGS)))
def test_an_encoded_secret_is_masked_at_any_position(secret: str, before: bytes, after: bytes, name: str) -> None:
    encoded = ENCODINGS[name](before + secret.encode() + after)
    scrubbed = Scrubber([secret])(f"log: {encoded} end")
    assert MASK in scrubbed
    assert not _recoverable(secret, scrubbed), (name, scrubbed)


@given(SECRETS)
def test_json_and_url_forms_are_masked(secret: str) -> None:
    scrub = Scrubber([secret])
    for text in (json.dumps({"token": secret}), quote(secret, safe=""), quote_plus(secret)):
        assert MASK in scrub(text), text


def test_a_multi_line_value_is_masked_line_by_line() -> None:
    key = (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
        "BKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n"
    )
    scrub = Scrubber([key])
    # A tool that prints one line of it, or the lines in another order, leaks nothing.
    assert scrub("debug: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC") == f"debug: {MASK}"
    assert "BKcwggSjAgEAAoIBAQC7" not in scrub("BKcwggSjAgEAAoIBAQC7 then more")


def test_short_values_and_ordinary_text_are_left_alone() -> None:
    scrub = Scrubber(["abc", "correct horse battery staple"])
    assert scrub("abc is short; nothing else here") == "abc is short; nothing else here"
