"""Two kinds of failure. A user's mistake (AttnvizError) is one line naming the problem and
the fix, exit code 2. A bug of attnviz's own is a traceback and a line asking for a report,
exit code 1: `raised_by_attnviz` tells them apart where a user's code runs inside attnviz's.
And the "did you mean" of the fixes."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
BUG = ("this is a bug in attnviz, not a problem with your input: please report it with the "
       "traceback above and `attnviz --version`")


class AttnvizError(Exception):
    """A problem with the user's input or files: its message names the problem and the fix.

    Two audiences meet the same problem: the command line, whose fixes are options
    (`--force`), and the Python API (`AttentionRecorder`), whose fixes are parameters
    (`overwrite=True`). `str(err)` is the command line's wording; where the fix differs,
    `python` words it for the API, and `for_python()` is the error as the API raises it.
    """

    def __init__(self, message: str, *, python: str | None = None):
        super().__init__(message)
        self.python = python

    def for_python(self) -> AttnvizError:
        """This error worded for the Python API (itself when both words agree)."""
        if self.python is None:
            return self
        worded = type(self).__new__(type(self))
        AttnvizError.__init__(worded, self.python)
        return worded


class RunFormatError(AttnvizError):
    """A run directory whose files are missing, torn, tampered with or from a newer format."""


def did_you_mean(name: object, choices: Iterable[object]) -> str:
    """' (did you mean X?)' for the choice closest to a mistyped `name`, or '' if none is close.

    did_you_mean("delimter", ["delimiter", "prefix"]) -> " (did you mean delimiter?)"
    """
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


# what a slip in Python code raises (a missing key, a wrong name, a bad index), as opposed to
# what libraries raise about their input (ValueError, TensorFlow's and Keras' own errors)
_SLIPS = (KeyError, IndexError, AttributeError, NameError, TypeError, AssertionError,
          ZeroDivisionError, RecursionError)


def raised_by_attnviz(err: BaseException) -> bool:
    """Whether `err` is a slip of attnviz's own code: a KeyError, AttributeError, TypeError
    and the like whose innermost frame is in the package. A bug, where an error raised in a
    user's model, Keras or TensorFlow is the user's to fix. (Keras and TensorFlow cut their
    own frames from the tracebacks they raise, so their errors about a user's model end in
    the attnviz line that called them: those are no slips, and stay the user's.)"""
    tb = err.__traceback__
    if tb is None or not isinstance(err, _SLIPS):
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_PACKAGE)
