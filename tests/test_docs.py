"""The docs are made by running them: every --help and every command's output in README.md
and docs/*.md is what attnviz prints now (docs/build.py, `make docs`), and every file a page
names exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
spec = importlib.util.spec_from_file_location("docs_build", DOCS / "build.py")
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)

COMMANDS = ["", "train", "inspect", "animate", "score", "explain", "report", "data"]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")  # [text](path) and ![alt](path)
PATH = re.compile(r"(?<![\w./-])((?:docs|examples|tests|benchmarks|attnviz)/[\w./-]+\.\w+)")


def help_blocks() -> dict[str, list[tuple[str, str]]]:
    found: dict = {}
    for page in build.pages():
        for match in build.HELP.finditer(page.read_text()):
            found.setdefault(match[2], []).append((page.name, match[3]))
    return found


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_its_help_in_the_docs(command):
    assert command in help_blocks(), f"no `<!-- help: attnviz {command} -->` block in docs/"


def test_help_blocks_match_the_cli():
    for command, places in help_blocks().items():
        expected = f"```text\n{build.help_text(command)}```\n"
        for page, block in places:
            assert block == expected, (
                f"{page}: the --help of `attnviz {command}` drifted; run `make docs`")


def test_every_link_and_file_a_page_names_exists():
    for page in build.pages():
        text = page.read_text()
        for target in LINK.findall(text):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
        for name in PATH.findall(text):
            base = DOCS if name.startswith("examples/") else ROOT
            assert (base / name).exists() or (ROOT / name).exists(), (
                f"{page.name} names {name}, which the repository does not have")


def test_every_run_block_has_output_and_no_hand_typed_console_block():
    for page in build.pages():
        text = page.read_text()
        for match in build.MARKER.finditer(text):
            kind, command, block = build.marker(match)
            if kind == "run":
                assert block.startswith(f"```console\n$ {command}\n"), (
                    f"{page.name}: `{command}` has no generated output: run `make docs`")
        generated = {m.span() for m in build.MARKER.finditer(text)}
        for console in re.finditer(r"```console\n", text):
            inside = any(start <= console.start() < end for start, end in generated)
            assert inside, (f"{page.name}: a console block at offset {console.start()} is not "
                            "made by a <!-- run: --> marker")


@pytest.mark.slow
def test_pages_are_what_their_commands_print_now(tmp_path):
    """Every page built again from an empty sandbox: trainings included (a few minutes)."""
    drifted = build.build(fresh=True, check=True, sandbox_root=tmp_path / "sandbox")
    assert not drifted, f"these pages drifted from what attnviz prints: {drifted}; run make docs"
