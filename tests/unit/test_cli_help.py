"""The help of `kubectl golden` and `goldenimage`: every command and argument described, in
complete sentences, none cut short."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator

import pytest

from goldenimage.cli import kubectl_golden
from goldenimage.cli import main as goldenimage

CLIS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "kubectl golden": kubectl_golden.parser,
    "goldenimage": goldenimage.parser,
}
# Words no sentence ends on (articles, conjunctions, "of"): a text ending on one was cut short.
DANGLING = {"a", "an", "and", "but", "nor", "of", "or", "the"}


def _unfinished(text: str) -> str | None:
    """Why `text` is not a complete sentence (or several), if it is not."""
    text = " ".join(text.split())
    if not text:
        return "it is empty"
    if text[-1] not in ".!?":
        return "it does not end with a full stop"
    last = re.findall(r"[A-Za-z']+", text)[-1].lower()
    return f"it ends on {last!r}" if last in DANGLING else None


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {
        name: sub
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name, sub in action.choices.items()
    }


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for sub in _commands(parser).values():
        yield from _parsers(sub)


def _texts(rendered: str) -> Iterator[tuple[str, str]]:
    """(what, text) for every description, epilog and item of a rendered help: an item's help
    is on its line, or on the next when the invocation is long. The usage and the section
    headings are left out."""
    lines = rendered.splitlines()
    start = lines.index("") + 1  # after the usage
    pending: str | None = None
    for line in lines[start:]:
        if not line.strip() or (not line.startswith(" ") and line.endswith(":")):
            continue
        indent = len(line) - len(line.lstrip())
        if pending is not None:
            yield pending, line.strip() if indent >= 8 else ""
            pending = None
            if indent >= 8:
                continue
        if indent == 0:
            yield "description or epilog", line
            continue
        invocation, gap, text = line.strip().partition("  ")
        if gap:
            yield invocation, text.strip()
        else:
            pending = invocation
    if pending is not None:
        yield pending, ""


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """One line per item: a line that ends mid-sentence is then cut short, not wrapped."""
    monkeypatch.setenv("COLUMNS", "1000")


@pytest.mark.parametrize("cli", CLIS)
def test_every_parser_describes_itself_in_sentences(cli: str) -> None:
    for parser in _parsers(CLIS[cli]()):
        for what, text in (("description", parser.description), ("epilog", parser.epilog)):
            if what == "description" or text is not None:
                problem = _unfinished(text or "")
                assert problem is None, f"{parser.prog} {what}: {problem}: {text!r}"


@pytest.mark.parametrize("cli", CLIS)
def test_help_lists_every_command_with_a_description(cli: str) -> None:
    parser = CLIS[cli]()
    listed = dict(_texts(parser.format_help()))
    commands = _commands(parser)
    assert commands
    for name in commands:
        assert listed.get(name), f"`{cli} --help` lists no description of {name}"


@pytest.mark.parametrize("cli", CLIS)
def test_no_help_line_ends_mid_sentence(cli: str) -> None:
    checked = 0
    for parser in _parsers(CLIS[cli]()):
        for what, text in _texts(parser.format_help()):
            problem = _unfinished(text)
            assert problem is None, f"`{parser.prog} --help`, {what}: {problem}: {text!r}"
            checked += 1
    assert checked > 5


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Shows images, builds and channels at a glance; channel history; promotion,", "full stop"),
        ("Points a channel at a version by setting the.", "ends on 'the'"),
        ("namespace (default: the context's)", "full stop"),
        ("", "empty"),
        ("Shows a channel's history.", None),
    ],
)
def test_cut_short_texts_are_found(text: str, problem: str | None) -> None:
    found = _unfinished(text)
    assert (found is None) if problem is None else (found is not None and problem in found)
