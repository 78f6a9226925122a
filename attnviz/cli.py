"""The attnviz command line: parse options, call the core, print with one rich Console.

TensorFlow is imported inside the commands that need it, never at module level, so that
`attnviz --help`, `score` and `animate` start at once.
"""

from __future__ import annotations

import os
import sys
from functools import wraps
from typing import Annotated

import typer

from attnviz import __version__
from attnviz.errors import AttnvizError

app = typer.Typer(
    name="attnviz",
    help="See, score and explain the attention of TensorFlow/Keras sequence models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def console(stderr: bool = False):
    """One rich Console per stream; NO_COLOR is honoured by rich itself."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def fail(message: str, code: int = 2) -> typer.Exit:
    console(stderr=True).print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code)


def handle_errors(command):
    """Turn AttnvizError into one line on stderr and exit code 2."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except AttnvizError as err:
            raise fail(str(err)) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        print(f"attnviz {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """See, score and explain the attention of TensorFlow/Keras sequence models."""


# ---- commands (each one: options, one call into the core, output) ---------------------------


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(app())
