"""Errors the CLI turns into one line and exit code 2."""


class AttnvizError(Exception):
    """A problem with the user's input or files: its message names the problem and the fix."""


class RunFormatError(AttnvizError):
    """A run directory whose files are missing, torn, tampered with or from a newer format."""
