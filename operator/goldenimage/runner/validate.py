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
import time
from collections.abc import Callable
from pathlib import Path

from ..api.durations import parse as parse_duration
from ..api.goldenimage import GoldenImageSpec, Validation
from ..clouds.base import Cloud, CloudError, Instance
from ..clouds.registry import Clouds
from ..config import Config
from . import checks
from .result import CheckOutcome, Result, encode
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


def run(args: argparse.Namespace, cloud: Cloud | None = None) -> int:
    with Stop() as stop:
        return _run(args, cloud, stop)


def _run(args: argparse.Namespace, cloud: Cloud | None, stop: Stop) -> int:
    started = time.monotonic()

    def check_stop() -> None:
        if stop.received:
            raise TerminatedError(stop.received)

    def say(line: str) -> None:
        print(f"goldenimage-runner: {line}", flush=True)

    def finish(result: Result, code: int) -> int:
        result = result.model_copy(
            update={"kind": "validate", "duration_seconds": round(time.monotonic() - started, 1)}
        )
        args.result.write_text(encode(result))
        say(f"validation {'passed' if result.ok else 'failed'}: {result.message}")
        return code

    try:
        recipe = GoldenImageSpec.model_validate_json(args.recipe.read_text())
        target = recipe.target(args.target)
        tags = json.loads(args.tags)
        if not isinstance(tags, dict):
            raise ValueError("--tags must be a JSON object")
        tags = {str(k): str(v) for k, v in tags.items()}
        config = Config.from_env()  # ConfigError is a ValueError
    except (OSError, ValueError, LookupError) as exc:
        return finish(Result(ok=False, error_class="Permanent", message=f"bad arguments: {exc}"), EXIT_USAGE)
    validation = recipe.validation or Validation()
    cloud = cloud or Clouds(config).get(target.cloud)
    if cloud is None:
        return finish(Result(ok=False, error_class="Permanent", message=f"no validator for {target.cloud}"), EXIT_USAGE)
    budget = parse_duration(validation.timeout).total_seconds()
    deadline = started + budget

    def remaining() -> float:
        return max(0.0, deadline - time.monotonic())

    instance: Instance | None = None
    outcomes: list[CheckOutcome] = []
    try:
        check_stop()
        # A signal during the launch is noticed after it, so the instance is always known.
        instance = cloud.launch(target, args.region, args.image, validation, tags)
        say(f"launched {instance.id} from {args.image} in {args.region}")
        ready = None
        while ready is None:
            check_stop()
            ready = cloud.ready(instance)
            if ready is None:
                if remaining() <= 0:
                    raise CloudError(f"{instance.id} did not pass its status checks within {validation.timeout}")
                time.sleep(POLL)
        say(f"{ready.id} is running at {ready.address} and passed its status checks")
        assert ready.address is not None
        networks = config.validation_networks
        if networks and not any(ipaddress.ip_address(ready.address) in ipaddress.ip_network(n) for n in networks):
            allowed = ", ".join(networks)
            return finish(
                Result(
                    ok=False,
                    error_class="Permanent",
                    message=f"{ready.address} is outside the networks validation may connect to ({allowed})",
                ),
                EXIT_FAILED,
            )
        for check in validation.checks:
            check_stop()
            if remaining() <= 0:
                outcomes.append(CheckOutcome(name=check.display_name, passed=False, message="not run: time is up"))
                continue
            outcome = checks.run(check, cloud, ready, remaining)
            say(f"check {outcome.name}: {'passed' if outcome.passed else 'FAILED'}: {outcome.message}")
            outcomes.append(outcome)
    except TerminatedError as exc:
        return finish(
            Result(ok=False, error_class="Retryable", checks=outcomes, message=f"stopped ({exc})"), EXIT_TERMINATED
        )
    except CloudError as exc:
        return finish(Result(ok=False, error_class="Retryable", checks=outcomes, message=str(exc)), EXIT_ERROR)
    finally:
        if instance is not None:
            _terminate(cloud, instance, say)
    failed = [o.name for o in outcomes if not o.passed]
    if failed:
        return finish(Result(ok=False, checks=outcomes, message="failed: " + ", ".join(failed)), EXIT_FAILED)
    count = len(outcomes)
    return finish(
        Result(ok=True, checks=outcomes, message=f"booted; {count} check{'s' * (count != 1)} passed"), EXIT_PASSED
    )


def _terminate(cloud: Cloud, instance: Instance, say: Callable[[str], None]) -> None:
    for attempt in range(5):
        try:
            cloud.terminate(instance)
            say(f"terminated {instance.id}")
            return
        except CloudError as exc:
            say(f"terminating {instance.id} failed ({exc}); retrying")
            time.sleep(2 * (attempt + 1))
    say(f"could not terminate {instance.id}; it carries the build id for the sweeper")
