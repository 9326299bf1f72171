"""What ships: the wheel installed in clusters and in the runner image carries the operator's
package only (no local stack), and its runtime dependencies are exactly what its code imports."""

from __future__ import annotations

import ast
import email
import importlib.util
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from goldenimage import paths

pytestmark = pytest.mark.integration

PACKAGE = paths.REPO_ROOT / "operator" / "goldenimage"


def _wheel(tmp_path: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        cwd=paths.REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("goldenimage_operator-*.whl")
    return wheel


def _imported_modules() -> set[str]:
    """The most specific modules the product code imports that are not its own or the standard
    library's: `from google.cloud import compute_v1` names google.cloud.compute_v1, since the
    namespace package google.cloud belongs to no one distribution."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found |= {_module(f"{node.module}.{alias.name}") or node.module for alias in node.names}
    return {m for m in found if m.split(".")[0] != "goldenimage" and m.split(".")[0] not in sys.stdlib_module_names}


def _module(name: str) -> str | None:
    """`name` when it is a module (not a class or function in one)."""
    try:
        return name if importlib.util.find_spec(name) is not None else None
    except (ImportError, ValueError):  # a parent that is a module, not a package
        return None


def _distribution_of(module: str, owners: dict[Path, str]) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, f"{module} is not installed as a file"
    return owners[Path(spec.origin).resolve()]


def _file_owners() -> dict[Path, str]:
    """Each installed Python file and the distribution that installed it."""
    return {
        Path(str(dist.locate_file(file))).resolve(): dist.metadata["Name"]
        for dist in metadata.distributions()
        for file in dist.files or []
        if file.suffix == ".py"
    }


def _normalized(name: str) -> str:
    return name.lower().replace("_", "-")


def test_the_wheel_holds_the_operator_only_and_depends_on_what_it_imports(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta = email.message_from_bytes(archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
    roots = {n.split("/")[0] for n in names}
    assert roots == {"goldenimage", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    assert not [n for n in names if "goldenimage_dev" in n or n.startswith("goldenimage/local/")]

    runtime = {
        _normalized(str(r).split(";")[0].split("<")[0].split(">")[0].split("=")[0].split("[")[0].strip())
        for r in meta.get_all("Requires-Dist") or []
        if "extra ==" not in r
    }
    owners = _file_owners()
    imported = {_normalized(_distribution_of(module, owners)) for module in _imported_modules()}
    # boto3 brings botocore, pydantic brings pydantic-core; both are imported directly.
    transitive = {"botocore", "pydantic-core", "google-api-core", "google-auth", "azure-core", "azure-mgmt-core"}
    assert imported - transitive <= runtime, f"imported but not declared: {sorted(imported - transitive - runtime)}"
    assert runtime <= imported, f"declared but never imported: {sorted(runtime - imported)}"
