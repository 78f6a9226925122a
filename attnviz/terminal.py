"""The terminal: one rich Console per stream, and the one-line error every command ends
with on bad input (exit code 2)."""

from __future__ import annotations

import typer


def console(stderr: bool = False):
    """One rich Console per stream, wrapping at the terminal's width (80 columns when the
    output is not a terminal and COLUMNS is unset); NO_COLOR is honoured by rich itself."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def fail(message: str, code: int = 2) -> typer.Exit:
    from rich.markup import escape

    # escaped: messages quote user input and options such as 'attnviz[mp4]' verbatim
    # one line however long: a script can read it, a person can search for it
    console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", markup=True,
                               highlight=False, soft_wrap=True)
    return typer.Exit(code)
