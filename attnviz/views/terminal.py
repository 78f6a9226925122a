"""The terminal: one rich Console per stream, and the one-line error every command ends
with on bad input (exit code 2)."""

from __future__ import annotations

import os
import sys

import typer

PIPE_CLOSED = 141  # what a shell reports for a command ended by SIGPIPE (128 + 13)


def closed_pipe() -> None:
    """`attnviz score --json | head`: the reader closed the pipe. End as `cat` would, with no
    message and exit code 141, and point stdout at /dev/null so that Python's last flush
    cannot complain either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(PIPE_CLOSED)


def console(stderr: bool = False):
    """One rich Console per stream, wrapping at the terminal's width (80 columns when the
    output is not a terminal and COLUMNS is unset); NO_COLOR is honoured by rich itself."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:  # rich's own ends with exit code 1: a missed gate
            closed_pipe()

    return _Console(stderr=stderr, highlight=False)


def fail(message: str, code: int = 2) -> typer.Exit:
    from rich.markup import escape

    # escaped: messages quote user input and options such as 'attnviz[mp4]' verbatim
    # one line however long: a script can read it, a person can search for it
    console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", markup=True,
                               highlight=False, soft_wrap=True)
    return typer.Exit(code)
