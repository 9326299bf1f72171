"""The secret scan's shell lines, run by a real `sh` over directories of the test's own: a value
on disk fails the step and names the file, never the value; directories an image lacks change
nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from goldenimage.packer.generalize import secret_scan

SECRET = "s3cret-registry-token-4711"


def scan(tmp_path: Path, values: dict[str, str], *names: str) -> subprocess.CompletedProcess[str]:
    present = tmp_path / "etc"
    present.mkdir(exist_ok=True)
    scanned = (str(tmp_path / "missing"), str(present))
    script = "\n".join(secret_scan(list(names), scanned)) + "\n"
    env = {"PATH": os.environ["PATH"]} | {f"GOLDENIMAGE_SECRET_{i}": values.get(n, "") for i, n in enumerate(names)}
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False)


def test_a_value_on_disk_fails_the_step_and_names_the_file(tmp_path: Path) -> None:
    scan(tmp_path, {})  # creates the directories
    (tmp_path / "etc" / "registry.conf").write_text(f"token={SECRET}\n")
    done = scan(tmp_path, {"token": SECRET}, "other", "token")
    assert done.returncode == 1
    assert str(tmp_path / "etc" / "registry.conf") in done.stderr
    assert "the value of secret variable token was found in the files above" in done.stderr
    assert "secret variable other" not in done.stderr
    assert SECRET not in done.stdout + done.stderr


def test_a_clean_image_passes(tmp_path: Path) -> None:
    scan(tmp_path, {})
    (tmp_path / "etc" / "registry.conf").write_text("token=from-the-instance-metadata\n")
    done = scan(tmp_path, {"token": SECRET}, "token")
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("value", ["", "-e", "--", "a b", "$(touch pwned)", "'\"", ".*"])
def test_awkward_values_are_matched_as_text_and_an_empty_one_matches_nothing(tmp_path: Path, value: str) -> None:
    scan(tmp_path, {})
    (tmp_path / "etc" / "plain").write_text("nothing to see\n")
    done = scan(tmp_path, {"token": value}, "token")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    if value:
        (tmp_path / "etc" / "leak").write_text(f"x{value}y\n")
        assert scan(tmp_path, {"token": value}, "token").returncode == 1


def test_a_value_ending_in_a_newline_matches_only_files_holding_it(tmp_path: Path) -> None:
    # As `kubectl create secret --from-file` stores a file: with its final newline.
    scan(tmp_path, {})
    (tmp_path / "etc" / "plain").write_text("nothing to see\n")
    assert scan(tmp_path, {"token": SECRET + "\n"}, "token").returncode == 0
    (tmp_path / "etc" / "leak").write_text(SECRET)
    done = scan(tmp_path, {"token": SECRET + "\n"}, "token")
    assert done.returncode == 1 and done.stderr.splitlines()[0] == str(tmp_path / "etc" / "leak")


def test_a_key_of_several_lines_is_found_by_its_longest_line(tmp_path: Path) -> None:
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----\n"
    scan(tmp_path, {})
    # Its short framing lines alone are no match: every PEM file has them.
    (tmp_path / "etc" / "other.pem").write_text("-----BEGIN KEY-----\nAAAA\n-----END KEY-----\n")
    assert scan(tmp_path, {"key": key}, "key").returncode == 0
    (tmp_path / "etc" / "baked.pem").write_text(key)
    done = scan(tmp_path, {"key": key}, "key")
    assert done.returncode == 1 and str(tmp_path / "etc" / "baked.pem") in done.stderr
    assert "other.pem" not in done.stderr
