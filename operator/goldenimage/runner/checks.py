"""The checks a validation runs against a booted instance: TCP, HTTP and commands. Each is
retried until it passes or its timeout runs out, since services take a while after boot."""

from __future__ import annotations

import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from ..api.durations import parse as parse_duration
from ..api.errors import CloudError
from ..api.goldenimage import Check
from ..api.result import CheckOutcome
from ..clouds.base import CloudApi, Instance

RETRY_EVERY = 2.0


def _tcp(address: str, port: int, timeout: float) -> tuple[bool, str]:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True, f"connected to {address}:{port}"
    except OSError as exc:
        return False, f"cannot connect to {address}:{port}: {exc.strerror or exc}"


def _http(check: Check, address: str, timeout: float) -> tuple[bool, str]:
    assert check.http is not None
    http = check.http
    url = f"{http.scheme}://{address}:{http.port}{http.path}"
    # Instances are reached by address, so their certificates cannot match: not verified. And
    # directly: a proxy the Job has for the clouds' APIs has no business with an instance.
    context = ssl._create_unverified_context() if http.scheme == "https" else None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(url, timeout=timeout) as response:
            status, body = response.status, response.read(65536).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(65536).decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return False, f"GET {url}: {getattr(exc, 'reason', exc)}"
    if status != http.expect_status:
        return False, f"GET {url}: status {status}, expected {http.expect_status}"
    if http.contains is not None and http.contains not in body:
        return False, f"GET {url}: status {status}, but the body lacks {http.contains!r}"
    return True, f"GET {url}: status {status}"


def _command(check: Check, cloud: CloudApi, instance: Instance, timeout: float) -> tuple[bool, str]:
    assert check.command is not None
    try:
        code, output = cloud.run_command(instance, check.command.run, timeout)
    except CloudError as exc:
        return False, f"{check.command.run!r}: {exc}"
    tail = output[-300:]
    if code != check.command.expect_exit_code:
        return False, f"{check.command.run!r} exited {code}, expected {check.command.expect_exit_code}: {tail}"
    return True, f"{check.command.run!r} exited {code}" + (f": {tail}" if tail else "")


def run(check: Check, cloud: CloudApi, instance: Instance, remaining: Callable[[], float]) -> CheckOutcome:
    """Run one check until it passes, its own timeout passes, or the validation's time is up."""
    assert instance.address is not None
    deadline = time.monotonic() + min(parse_duration(check.timeout).total_seconds(), remaining())
    attempts = 0
    while True:
        attempts += 1
        left = max(1.0, deadline - time.monotonic())
        if check.tcp is not None:
            passed, message = _tcp(instance.address, check.tcp.port, min(10.0, left))
        elif check.http is not None:
            passed, message = _http(check, instance.address, min(10.0, left))
        else:
            passed, message = _command(check, cloud, instance, left)
        if passed or time.monotonic() + RETRY_EVERY > deadline:
            if not passed and attempts > 1:
                message += f" (still failing after {attempts} tries)"
            return CheckOutcome(name=check.display_name, passed=passed, message=message[:1024])
        time.sleep(RETRY_EVERY)
