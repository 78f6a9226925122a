"""Errors the CLI turns into one line and exit code 2, and the "did you mean" of their fixes."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AttnvizError(Exception):
    """A problem with the user's input or files: its message names the problem and the fix."""


class RunFormatError(AttnvizError):
    """A run directory whose files are missing, torn, tampered with or from a newer format."""


def did_you_mean(name: object, choices: Iterable[object]) -> str:
    """' (did you mean X?)' for the choice closest to a mistyped `name`, or '' if none is close.

    did_you_mean("delimter", ["delimiter", "prefix"]) -> " (did you mean delimiter?)"
    """
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
