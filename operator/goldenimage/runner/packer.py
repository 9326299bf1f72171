"""Running Packer: version, validate, and build with machine-readable output, SIGTERM forwarded
so that Packer can clean up what it created."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .scrub import Scrubber


@dataclass
class BuildOutput:
    returncode: int
    cancelled: bool
    errors: list[str] = field(default_factory=list)
    artifact_ids: list[str] = field(default_factory=list)
    artifact_strings: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    # What the steps themselves said (a provisioner's stdout and stderr, a builder's errors),
    # without Packer's prefix; no longer added to once a provisioner failed, so that what the
    # builders say while cleaning up does not push out why.
    remote: list[str] = field(default_factory=list)
    provisioner_failed: bool = False


def var_args(variables: Mapping[str, str]) -> list[str]:
    return [arg for name, value in variables.items() for arg in ("-var", f"{name}={value}")]


def version(packer: str, env: Mapping[str, str]) -> str:
    out = subprocess.run([packer, "version"], capture_output=True, text=True, env=dict(env), check=False).stdout
    match = re.search(r"v?(\d+\.\d+\.\d+\S*)", out)
    return match.group(1) if match else out.strip()[:64]


def validate(
    packer: str, template: Path, variables: Mapping[str, str], env: Mapping[str, str], cwd: Path
) -> tuple[int, str]:
    result = subprocess.run(
        [packer, "validate", *var_args(variables), str(template)],
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd,
        check=False,
    )
    return result.returncode, (result.stdout + result.stderr).strip()


def _unescape(text: str) -> str:
    return text.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "")


class Build:
    """One `packer build`, with its termination forwarded from ours."""

    def __init__(
        self,
        packer: str,
        template: Path,
        variables: Mapping[str, str],
        env: Mapping[str, str],
        cwd: Path,
        scrub: Scrubber,
        say: Callable[[str], None],
        watch: Callable[[str], None] | None = None,
    ) -> None:
        self.argv = [
            packer,
            "build",
            "-machine-readable",
            "-on-error=cleanup",  # never abort or ask: those leave resources behind or hang
            "-color=false",
            *var_args(variables),
            str(template),
        ]
        self.env = dict(env)
        self.cwd = cwd
        self.scrub = scrub
        self.say = say
        self.watch = watch
        self.process: subprocess.Popen[str] | None = None
        self.cancelled = threading.Event()

    def terminate(self, signum: int = signal.SIGTERM) -> None:
        """Ask Packer to cancel and clean up (it handles SIGTERM and SIGINT the same way)."""
        self.cancelled.set()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def run(self) -> BuildOutput:
        out = BuildOutput(returncode=-1, cancelled=False)
        # Its own process group, so that what Packer leaves behind can be stopped with it.
        self.process = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",  # a provisioner may print anything; the pipe must keep draining
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        if self.cancelled.is_set():  # terminated before Packer started
            self.process.send_signal(signal.SIGTERM)
        reader = threading.Thread(target=self._read, args=(out,), daemon=True)
        reader.start()
        out.returncode = self.process.wait()
        # A provisioner's child may outlive Packer and hold the output pipe open: stop it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        reader.join(timeout=10)
        out.cancelled = self.cancelled.is_set()
        return out

    def _read(self, out: BuildOutput) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                self._line(raw.rstrip("\n"), out)
            except Exception as exc:  # a line we cannot parse must not stop the draining
                self.say(f"goldenimage-runner: unreadable output line ({exc})")

    def _line(self, raw: str, out: BuildOutput) -> None:
        parts = raw.split(",")
        if len(parts) < 3 or not parts[0].isdigit():
            self._show(raw, out)
            return
        kind, data = parts[2], parts[3:]
        if kind == "ui" and len(data) >= 2:
            self._show(_unescape(",".join(data[1:])), out, data[0])
        elif kind == "artifact" and len(data) >= 3 and data[1] == "id":
            out.artifact_ids.append(_unescape(",".join(data[2:])))
        elif kind == "artifact" and len(data) >= 3 and data[1] == "string":
            out.artifact_strings.append(_unescape(",".join(data[2:])))
        elif kind == "error" and data:
            out.errors.append(self.scrub(_unescape(",".join(data))))

    def _show(self, text: str, out: BuildOutput, ui: str = "") -> None:
        if self.watch is not None:
            self.watch(text)
        clean = self.scrub(text)
        for line in clean.splitlines() or [""]:
            self.say(line)
            out.tail.append(line)
            # A step's own words come under the build's name: its stdout as indented messages
            # ("    aws.x: ..."), its stderr and its errors as "==> aws.x: ..." errors.
            if ui == "say" and "Provisioning step had errors" in line:
                out.provisioner_failed = True
            pattern = _STEP_SAID.get(ui)
            step = pattern.match(line) if pattern is not None and not out.provisioner_failed else None
            if step is not None:
                out.remote.append(step.group(1))
        del out.tail[:-40]
        del out.remote[:-40]


_STEP_SAID = {"message": re.compile(r"^\s+[\w.-]+: (.*)$"), "error": re.compile(r"^==> [\w.-]+: (.*)$")}


def manifest_artifacts(path: Path) -> tuple[str, list[str]]:
    """(run uuid, artifact ids) of the last run recorded in a manifest (it appends every run)."""
    data: dict[str, Any] = json.loads(path.read_text())
    run = data.get("last_run_uuid", "")
    ids = [str(b["artifact_id"]) for b in data.get("builds", []) if b.get("packer_run_uuid") == run]
    return run, ids
