"""`kubectl golden` connection flags parse before or after the subcommand, as with kubectl."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from goldenimage.cli.kubectl_golden import parser, promote, status

SHORT = ["-n", "team-a", "--kubeconfig", "/tmp/kc", "--context", "prod"]
LONG = ["--namespace=team-a", "--kubeconfig=/tmp/kc", "--context=prod"]
WANTED = {"namespace": "team-a", "kubeconfig": "/tmp/kc", "context": "prod"}
PLACES: dict[str, Callable[[list[str]], list[str]]] = {
    "before": lambda flags: [*flags, "promote", "web-prod", "--version", "3"],
    "after": lambda flags: ["promote", "web-prod", "--version", "3", *flags],
    "between": lambda flags: ["promote", *flags, "web-prod", "--version", "3"],
    "split": lambda flags: [*flags[:2], "promote", "web-prod", *flags[2:], "--version", "3"],
}
COMMANDS = {
    "status": ["status"],
    "history": ["history", "web-prod"],
    "promote": ["promote", "web-prod", "--version", "3"],
    "rollback": ["rollback", "web-prod", "--dry-run"],
    "unpin": ["unpin", "web-prod", "--dry-run"],
    "revoke": ["revoke", "web-base-2", "--reason", "CVE"],
    "rebuild": ["rebuild", "web-base"],
}


def connection(argv: list[str]) -> dict[str, str | None]:
    args = vars(parser().parse_args(argv))
    return {key: args[key] for key in WANTED}


@pytest.mark.parametrize("flags", [SHORT, LONG], ids=["short", "long"])
@pytest.mark.parametrize("place", PLACES)
def test_flags_before_or_after_the_subcommand(flags: list[str], place: str) -> None:
    argv = PLACES[place](flags)
    args = parser().parse_args(argv)
    assert connection(argv) == WANTED
    assert (args.run, args.channel, args.version, args.dry_run) == (promote, "web-prod", 3, False)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_takes_them_after(command: str) -> None:
    assert connection([*COMMANDS[command], *SHORT]) == WANTED


@pytest.mark.parametrize("command", COMMANDS)
def test_none_when_absent(command: str) -> None:
    assert connection(COMMANDS[command]) == dict.fromkeys(WANTED)


def test_a_flag_before_is_kept_when_others_come_after() -> None:
    args = parser().parse_args(["-n", "team-a", "status", "--context", "prod"])
    assert (args.namespace, args.context, args.kubeconfig, args.run) == ("team-a", "prod", None, status)
