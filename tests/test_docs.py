"""The docs show each command's real `--help`: a test fails when they drift."""

import importlib.util
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs"
spec = importlib.util.spec_from_file_location("update_help", DOCS / "update_help.py")
update_help = importlib.util.module_from_spec(spec)
spec.loader.exec_module(update_help)

COMMANDS = ["", "train", "inspect", "animate", "score", "explain", "data"]


def blocks():
    found = {}
    for page in DOCS.glob("*.md"):
        for match in update_help.BLOCK.finditer(page.read_text()):
            found.setdefault(match[2], []).append((page.name, match[3]))
    return found


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_its_help_in_the_docs(command):
    assert command in blocks(), f"no `<!-- help: attnviz {command} -->` block in docs/"


def test_help_blocks_match_the_cli():
    for command, places in blocks().items():
        expected = f"```text\n{update_help.help_text(command)}```\n"
        for page, block in places:
            assert block == expected, (
                f"docs/{page}: the --help of `attnviz {command}` drifted; run `make docs`")
