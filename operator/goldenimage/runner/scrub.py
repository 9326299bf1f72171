"""Keeping secret values out of everything the runner prints or reports."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable

MASK = "<sensitive>"


class Scrubber:
    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) < 4:  # too short to mask without destroying the text around it
                continue
            forms.add(secret)
            forms.add(base64.b64encode(secret.encode()).decode())
            forms.add(secret.replace("\\", "\\\\").replace('"', '\\"'))
        # Longest first, so that a secret containing another is masked whole.
        self._forms = sorted(forms, key=len, reverse=True)

    @classmethod
    def from_env(cls, names: Iterable[str]) -> Scrubber:
        return cls(os.environ[n] for n in names if os.environ.get(n))

    def __call__(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, MASK)
        return text
