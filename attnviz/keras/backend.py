"""Importing Keras and its backend (TensorFlow) without their start-up chatter: the commands
that need them import them through here, after their input is checked, so that bad input is
answered at once and `--help` never waits for TensorFlow."""

from __future__ import annotations

import os
import sys


def quiet_import() -> None:
    """Import TensorFlow with its C++ start-up chatter (oneDNN, absl) sent to /dev/null."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras  # noqa: F401  (imports tensorflow, the backend)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
