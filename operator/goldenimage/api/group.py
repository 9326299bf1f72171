"""The API group: the one place `goldenimage.io` is spelled."""

from __future__ import annotations

GROUP = "goldenimage.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "golden"
