"""Every command's help shows its bracketed words: Rich reads ``[word]`` as markup and drops it
unless escaped (``--executor``'s help once read "where [] jobs run", "(tailorlm)")."""

from __future__ import annotations

import inspect
import re
from typing import Any

import typer
from typer.testing import CliRunner

from tailorlm.cli import app

_BRACKETED = re.compile(r"[\w-]*\[[^\]\s]+\]+")


def _commands(cmd: Any, path: tuple[str, ...] = ()):
    yield path, cmd
    if isinstance(getattr(cmd, "commands", None), dict):  # a group (typer may carry its own click)
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))


def test_bracketed_words_in_help_survive_rich_rendering() -> None:
    runner = CliRunner()
    checked = 0
    for path, cmd in _commands(typer.main.get_command(app)):
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        wanted = {m for t in texts for m in _BRACKETED.findall(inspect.cleandoc(t).replace("\\", ""))}
        if not wanted:
            continue
        out = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"}).output
        for word in wanted:
            assert word in out, f"`tailorlm {' '.join(path)} --help` lost {word!r}"
            checked += 1
    assert checked >= 3  # bench: [[train]] and tailorlm[ray]; train queue: tailorlm[ray]
