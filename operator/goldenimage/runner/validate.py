"""`goldenimage-runner validate`: boot an instance from one artifact, run the recipe's checks
against it, report each check, and always terminate the instance (also on failure, timeout and
SIGTERM).

Exit codes: 0 every check passed; 6 a check failed; 4 the instance could not be launched or
become ready; 5 the runner was called wrongly; 143 terminated.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..api.durations import parse as parse_duration
from ..api.errors import CloudError, PermanentError
from ..api.goldenimage import Check, GoldenImageSpec, Target
from ..api.result import CheckOutcome, Result, encode
from ..clouds.adapters import Adapters
from ..clouds.base import CloudApi, Instance
from ..config import Config
from . import checks
from .scrub import Scrubber
from .signals import Stop

EXIT_PASSED, EXIT_ERROR, EXIT_USAGE, EXIT_FAILED, EXIT_TERMINATED = 0, 4, 5, 6, 143
POLL = 2.0


class TerminatedError(Exception):
    """A stop signal arrived: what was started is cleaned up and the run ends."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", type=Path, required=True, help="the build's frozen recipe (JSON)")
    parser.add_argument("--target", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--image", required=True, help="the artifact to boot")
    parser.add_argument("--tags", default="{}", help="JSON object of tags for the instance")
    parser.add_argument("--result", type=Path, required=True)


@dataclass
class _Validation:
    """One validation: what it was asked, its clock, and how it reports."""

    args: argparse.Namespace
    stop: Stop
    scrub: Scrubber
    started: float = field(default_factory=time.monotonic)
    # Set once the recipe's timeout is known; the instance is waited for and checked until then.
    deadline: float = math.inf

    def say(self, line: str) -> None:
        print(self.scrub(f"goldenimage-runner: {line}"), flush=True)

    def finish(self, result: Result, code: int) -> int:
        checks = [c.model_copy(update={"message": self.scrub(c.message)}) for c in result.checks]
        result = result.model_copy(
            update={
                "kind": "validate",
                "duration_seconds": round(time.monotonic() - self.started, 1),
                "message": self.scrub(result.message),
                "checks": checks,
            }
        )
        self.args.result.write_text(encode(result))
        self.say(f"validation {'passed' if result.ok else 'failed'}: {result.message}")
        return code

    def check_stop(self) -> None:
        if self.stop.received:
            raise TerminatedError(self.stop.received)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


def run(args: argparse.Namespace, cloud: CloudApi | None = None) -> int:
    with Stop() as stop:
        return _run(_Validation(args, stop, Scrubber.from_env(getattr(args, "sensitive_env", []))), cloud)


def _run(run: _Validation, cloud: CloudApi | None) -> int:
    try:
        recipe, target, tags, config = _arguments(run.args)
    except (OSError, ValueError, LookupError) as exc:
        return run.finish(Result(ok=False, error_class="Permanent", message=f"bad arguments: {exc}"), EXIT_USAGE)
    validation = recipe.validation_policy
    cloud = cloud or Adapters(config).get(target.cloud)
    if cloud is None:
        return run.finish(
            Result(ok=False, error_class="Permanent", message=f"no validator for {target.cloud}"), EXIT_USAGE
        )
    run.deadline = run.started + parse_duration(validation.timeout).total_seconds()

    instance: Instance | None = None
    outcomes: list[CheckOutcome] = []
    try:
        run.check_stop()
        # A signal during the launch is noticed after it, so the instance is always known.
        instance = cloud.launch(target, run.args.region, run.args.image, validation, tags)
        run.say(f"launched {instance.id} from {run.args.image} in {run.args.region}")
        ready = _wait_ready(run, cloud, instance, validation.timeout)
        refused = _unreachable(ready, config.validation_networks)
        if refused is not None:
            return run.finish(Result(ok=False, error_class="Permanent", message=refused), EXIT_FAILED)
        _check(run, cloud, ready, validation.checks, outcomes)
    except TerminatedError as exc:
        return run.finish(
            Result(ok=False, error_class="Retryable", checks=outcomes, message=f"stopped ({exc})"), EXIT_TERMINATED
        )
    except CloudError as exc:
        return run.finish(Result(ok=False, error_class="Retryable", checks=outcomes, message=str(exc)), EXIT_ERROR)
    except PermanentError as exc:  # e.g. the cloud refuses the instance: another attempt would too
        return run.finish(Result(ok=False, error_class="Permanent", checks=outcomes, message=str(exc)), EXIT_ERROR)
    finally:
        if instance is not None:
            _terminate(cloud, instance, run.say)
    return _verdict(run, outcomes)


def _arguments(args: argparse.Namespace) -> tuple[GoldenImageSpec, Target, dict[str, str], Config]:
    """The recipe, its target, the instance's tags and the runner's configuration; OSError,
    ValueError or LookupError when the runner was called wrongly."""
    recipe = GoldenImageSpec.model_validate_json(args.recipe.read_text())
    target = recipe.target(args.target)
    tags = json.loads(args.tags)
    if not isinstance(tags, dict):
        raise ValueError("--tags must be a JSON object")
    config = Config.from_env()  # ConfigurationError is a ValueError
    return recipe, target, {str(k): str(v) for k, v in tags.items()}, config


def _wait_ready(run: _Validation, cloud: CloudApi, instance: Instance, timeout: str) -> Instance:
    """The instance once it runs and passed its status checks (with its address)."""
    ready = None
    while ready is None:
        run.check_stop()
        ready = cloud.ready(instance)
        if ready is None:
            if run.remaining() <= 0:
                raise CloudError(f"{instance.id} did not pass its status checks within {timeout}")
            time.sleep(POLL)
    run.say(f"{ready.id} is running at {ready.address} and passed its status checks")
    assert ready.address is not None
    return ready


def _unreachable(ready: Instance, networks: Sequence[str]) -> str | None:
    """Why validation must not connect to the instance's address, if it must not."""
    assert ready.address is not None
    if networks and not any(ipaddress.ip_address(ready.address) in ipaddress.ip_network(n) for n in networks):
        allowed = ", ".join(networks)
        return f"{ready.address} is outside the networks validation may connect to ({allowed})"
    return None


def _check(
    run: _Validation, cloud: CloudApi, ready: Instance, wanted: Sequence[Check], outcomes: list[CheckOutcome]
) -> None:
    """Run the checks in order into `outcomes` (which keeps those done when a stop interrupts);
    once time is up the rest fail without running."""
    for check in wanted:
        run.check_stop()
        if run.remaining() <= 0:
            outcomes.append(CheckOutcome(name=check.display_name, passed=False, message="not run: time is up"))
            continue
        outcome = checks.run(check, cloud, ready, run.remaining)
        run.say(f"check {outcome.name}: {'passed' if outcome.passed else 'FAILED'}: {outcome.message}")
        outcomes.append(outcome)


def _verdict(run: _Validation, outcomes: Sequence[CheckOutcome]) -> int:
    failed = [o.name for o in outcomes if not o.passed]
    if failed:
        return run.finish(Result(ok=False, checks=list(outcomes), message="failed: " + ", ".join(failed)), EXIT_FAILED)
    count = len(outcomes)
    return run.finish(
        Result(ok=True, checks=list(outcomes), message=f"booted; {count} check{'s' * (count != 1)} passed"),
        EXIT_PASSED,
    )


def _terminate(cloud: CloudApi, instance: Instance, say: Callable[[str], None]) -> None:
    for attempt in range(5):
        try:
            cloud.terminate(instance)
            say(f"terminated {instance.id}")
            return
        except CloudError as exc:
            say(f"terminating {instance.id} failed ({exc}); retrying")
            time.sleep(2 * (attempt + 1))
    say(f"could not terminate {instance.id}; it carries the build id for the sweeper")
