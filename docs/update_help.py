"""Rewrite the `--help` blocks of the docs from the real CLI: `make docs`.

A block is the fenced text between `<!-- help: attnviz CMD -->` and `<!-- /help -->`;
tests/test_docs.py fails when a block differs from what the CLI prints now.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

DOCS = Path(__file__).parent
BLOCK = re.compile(r"(<!-- help: attnviz ?([\w-]*) -->\n)(.*?)(<!-- /help -->)", re.DOTALL)
WIDTH = 100


def help_text(command: str) -> str:
    """What `attnviz COMMAND --help` prints on a 100-column terminal without colour."""
    import os

    from typer.testing import CliRunner

    from attnviz.cli import app

    os.environ["COLUMNS"] = str(WIDTH)
    os.environ["NO_COLOR"] = "1"
    os.environ.pop("FORCE_COLOR", None)
    args = [command, "--help"] if command else ["--help"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": str(WIDTH), "NO_COLOR": "1",
                                                "TERM": "dumb"})
    lines = [line.rstrip() for line in result.output.splitlines()]
    return "\n".join(lines).strip("\n") + "\n"


def render(text: str) -> str:
    return BLOCK.sub(lambda m: f"{m[1]}```text\n{help_text(m[2])}```\n{m[4]}", text)


def main() -> int:
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        updated = render(text)
        if updated != text:
            page.write_text(updated)
            print(f"updated {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
