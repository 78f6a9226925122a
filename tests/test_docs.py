"""The docs are made by running them: every --help and every command's output in README.md
and docs/*.md is what attnviz prints now (docs/build.py, `make docs`), and every file a page
names exists."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
spec = importlib.util.spec_from_file_location("docs_build", DOCS / "build.py")
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)

COMMANDS = ["", "train", "inspect", "animate", "score", "explain", "report", "data", "heads"]
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


# What a page is compared by. Trainings land on other digits on other processors (another
# SIMD width sums in another order; oneDNN on or off; another thread count): on one seed
# and the same packages, an Intel machine printed val_loss 1.956 where the docs' AMD one
# printed 2.260. So a number is compared by where it stands, not by its digits: every number
# (a loss, a mass, a size, a count, a percentage, 1.0e-05) becomes "#", and the heatmaps'
# shades and the tables' borders, which are numbers drawn, are dropped. Every word, option,
# column name, message and the order of them all is compared exactly, whitespace aside (a
# wider number re-wraps a paragraph or widens a column). A number that changes by chance
# passes; a changed word fails. `make test-other-cpu` runs the suite with oneDNN on and one
# thread to imitate another processor.
NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?")
DRAWN = re.compile("[\u2500-\u259f]")  # box drawing and block elements: borders and shades


def words(text: str) -> list[str]:
    """The text as the docs check compares it: whitespace-separated words, numbers as #."""
    return [NUMBER.sub("#", word) for word in DRAWN.sub(" ", text).split()]


def same_words(page: str, built: str) -> str | None:
    """None when `built` says what `page` says, numbers and drawing aside; else where the two
    first differ, with a few words around it."""
    old, new = words(page), words(built)
    if old == new:
        return None
    pairs = enumerate(zip(old, new, strict=False))
    at = next((i for i, (a, b) in pairs if a != b), min(len(old), len(new)))
    start = max(0, at - 6)
    return (f"{' '.join(old[start:at + 6])!r} became {' '.join(new[start:at + 6])!r} "
            f"(numbers shown as #)")


def test_numbers_may_differ_and_words_may_not():
    # what another processor printed for the same command (oneDNN on, one thread)
    assert same_words("mass 0.031 loss 0.7437", "mass 0.032 loss 0.7448") is None
    assert same_words("val_loss 2.260 … for 33 % (500", "val_loss 1.781 … for 34 % (500") is None
    assert same_words("│       0.099 │ 0.05 │\n└─────────────┴──────┘",
                      "│     0.09899 │ 0.05 │\n└───────────┴──────┘") is None
    assert same_words("uniform 12.70x the learned\n0.7887 held out",
                      "uniform 13x the\nlearned 0.7437 held out") is None  # re-wrapped
    assert same_words("0 ███ ▓▓▓\nscale", "0 ▓▓▓ ███\nscale") is None  # shades are numbers
    # what a change to attnviz prints
    assert same_words("mass 0.031", "weight 0.031") is not None  # a word
    assert same_words("│ 0.099 │ a │", "│ 0.099 │ b │") is not None  # a cell
    assert same_words("a\nb", "a") is not None  # a line gone
    assert same_words("--min mass=0.8", "--min mas=0.8") is not None  # an option
    assert same_words("│ mass │ jsd │", "│ mass │ iou │") is not None  # a column
    assert same_words("error: no run at x", "error: no run in x") is not None  # a message
    assert same_words("(beaten)", "(not beaten)") is not None


@pytest.mark.slow
def test_pages_are_what_their_commands_print_now(tmp_path):
    """Every page built again from an empty sandbox: trainings included (a few minutes)."""
    built = build.build(fresh=True, check=True, sandbox_root=tmp_path / "sandbox")
    drifted = {page.name: why for page, text in built.items()
               if (why := same_words(page.read_text(), text))}
    assert not drifted, f"pages drifted from what attnviz prints (run make docs): {drifted}"
    _inspect_commands_print_the_same_in_a_fresh_process(tmp_path / "sandbox")


def _inspect_commands_print_the_same_in_a_fresh_process(sandbox: Path) -> None:
    """The build runs attnviz in one process, where a class one command imported is known to
    the next: `inspect runs/x --checkpoint 5` once loaded only because `train` had run
    before it. A user runs each command in a process of its own, so every `attnviz inspect`
    the pages show (the command that loads models and checkpoints) runs again that way, in
    the build's sandbox, and must print what the page shows."""
    import os
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    shown = {}  # command -> (page, what the page shows it printing)
    for page in build.pages():
        for match in build.MARKER.finditer(page.read_text()):
            kind, command, block = build.marker(match)
            if kind == "run" and command.startswith("attnviz inspect"):
                shown.setdefault(command, (page.name, block.removeprefix(
                    f"```console\n$ {command}\n").removesuffix("```\n")))
    assert len(shown) >= 8, shown

    def printed(command: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "attnviz", *shlex.split(command)[1:]], cwd=sandbox,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
            env={**os.environ, **build._env(), "TF_CPP_MIN_LOG_LEVEL": "3",
                 "PYTHONUNBUFFERED": "1"})  # stdout and stderr in the order printed
        return build.DURATION.sub("…", result.stdout)

    with ThreadPoolExecutor(max_workers=2) as pool:  # two processes: the two cores
        outputs = dict(zip(shown, pool.map(printed, shown), strict=True))
    for command, (page, block) in shown.items():
        why = same_words(block, outputs[command])
        assert why is None, f"{page}: `{command}` in a fresh process: {why}"
