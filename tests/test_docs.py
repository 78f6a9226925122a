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
        # a Python traceback (a command that crashed, a logging error) is never documentation
        assert "Traceback (most recent call last)" not in text and '\n  File "' not in text, (
            f"{page.name} holds a Python traceback: fix its command, then run `make docs`")
        generated = {m.span() for m in build.MARKER.finditer(text)}
        for console in re.finditer(r"```console\n", text):
            inside = any(start <= console.start() < end for start, end in generated)
            assert inside, (f"{page.name}: a console block at offset {console.start()} is not "
                            "made by a <!-- run: --> marker")


NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
PADDING = re.compile(r"[ ─━═┬┴┼┳┻╇╈]+")  # a table's columns widen when a number has a digit more


def _shape(line: str) -> str:
    return PADDING.sub(" ", NUMBER.sub("#", line))


def same_but_for_float_noise(page: str, built: str) -> str | None:
    """None when `built` equals `page` except numbers within float noise of each other;
    else the first line that differs. With TensorFlow's oneDNN kernels on, two trainings of
    one seed differed in the last digits (a mass of 0.0315 shows as 0.031 or 0.032); with
    them off, as make and the tests run, two fresh builds here wrote bit-identical runs, but
    another CPU may round differently. That is no drift of what attnviz prints."""
    for old, new in zip(page.splitlines(), built.splitlines(), strict=False):
        if old == new:
            continue
        if _shape(old) != _shape(new):
            return f"{old!r} became {new!r}"
        for a, b in zip(NUMBER.findall(old), NUMBER.findall(new), strict=True):
            x, y = float(a), float(b)
            if abs(x - y) > max(0.02 * max(abs(x), abs(y)), 0.0015):
                return f"{old!r} became {new!r}"
    if len(page.splitlines()) != len(built.splitlines()):
        return "the number of lines changed"
    return None


def test_float_noise_is_tolerated_and_real_drift_is_not():
    assert same_but_for_float_noise("mass 0.031 loss 0.7437", "mass 0.032 loss 0.7448") is None
    assert same_but_for_float_noise("mass 0.031", "mass 0.31") is not None
    assert same_but_for_float_noise("mass 0.031", "weight 0.031") is not None
    assert same_but_for_float_noise("a\nb", "a") is not None
    assert same_but_for_float_noise("│       0.099 │ 0.05 │\n└─────────────┴──────┘",
                                    "│     0.09899 │ 0.05 │\n└───────────┴──────┘") is None
    assert same_but_for_float_noise("│ 0.099 │ a │", "│ 0.099 │ b │") is not None


@pytest.mark.slow
def test_pages_are_what_their_commands_print_now(tmp_path):
    """Every page built again from an empty sandbox: trainings included (a few minutes)."""
    built = build.build(fresh=True, check=True, sandbox_root=tmp_path / "sandbox")
    drifted = {page.name: why for page, text in built.items()
               if (why := same_but_for_float_noise(page.read_text(), text))}
    assert not drifted, f"pages drifted from what attnviz prints (run make docs): {drifted}"
