"""Rewrite every generated block of README.md and docs/*.md from real commands: `make docs`.

Three kinds of marker, in file order (files sorted, README.md first):

    <!-- help: attnviz CMD -->  ...  <!-- /help -->   what `attnviz CMD --help` prints
    <!-- setup: COMMAND -->                            run COMMAND, show nothing (a training)
    <!-- run: COMMAND -->  ...  <!-- /run -->          COMMAND and what it printed

Commands run in one sandbox directory for the whole build (build/docs-sandbox), where
`docs/` is the repository's docs folder, so a page can run `python docs/examples/X.py`.
`attnviz ...` runs in-process (its stdout and stderr, as a terminal of WIDTH columns without
colour would show them); `python ...` runs as a subprocess. A command that makes something
(`attnviz train`, `attnviz data`, `python ...`) runs once per sandbox: a setup or a run
block that names it again is given what it printed the first time; so is a second block of
the same `attnviz explain` in one build (it reads a finished run and prints the same
report each time, in 10-20 s). Timings vary from run
to run, so every duration in the output ("in 0.12 s", "1.7s") is shown as "…". Everything
else is printed as it came. The trainings are seeded and, on one machine, deterministic;
on another processor their numbers land on other digits, so tests/test_docs.py compares
what a page says, its numbers aside, and fails when that drifts.

    python docs/build.py            rewrite the pages (reusing the sandbox's runs)
    python docs/build.py --fresh    start from an empty sandbox
    python docs/build.py --check    rewrite nothing; exit 1 naming the pages that drifted
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

# as `make` does: TensorFlow's oneDNN kernels abort a training now and then (docs/reliability.md)
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
SANDBOX = ROOT / "build" / "docs-sandbox"
HELP_WIDTH = 100  # --help blocks, as wide as the docs' tables
WIDTH = 80  # command output: what a standard terminal shows
HELP = re.compile(r"(<!-- help: attnviz ?([\w-]*) -->\n)(.*?)(<!-- /help -->)", re.DOTALL)
MARKER = re.compile(r"<!-- (setup): (.+?) -->\n()|<!-- (run): (.+?) -->\n(.*?)<!-- /run -->",
                    re.DOTALL)
DURATION = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?= ?m?s\b)")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _env() -> dict[str, str]:
    return {"COLUMNS": str(WIDTH), "NO_COLOR": "1", "TERM": "dumb"}


def help_text(command: str) -> str:
    """What `attnviz COMMAND --help` prints on a HELP_WIDTH-column terminal without colour."""
    from typer.testing import CliRunner

    from attnviz.cli import app

    env = {"COLUMNS": str(HELP_WIDTH), "NO_COLOR": "1", "TERM": "dumb"}
    os.environ.update(env)
    os.environ.pop("FORCE_COLOR", None)
    args = [command, "--help"] if command else ["--help"]
    result = CliRunner().invoke(app, args, env=env)
    lines = [line.rstrip() for line in result.output.splitlines()]
    return "\n".join(lines).strip("\n") + "\n"


def render_help(text: str) -> str:
    return HELP.sub(lambda m: f"{m[1]}```text\n{help_text(m[2])}```\n{m[4]}", text)


class Sandbox:
    """Runs the pages' commands in one directory; remembers the setup commands it ran."""

    def __init__(self, root: Path, fresh: bool = False):
        self.root = root
        if fresh and root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        docs = root / "docs"
        if not docs.exists():
            docs.symlink_to(DOCS, target_is_directory=True)
        self.made_file = root / ".made.json"
        self.made: dict[str, str] = json.loads(self.made_file.read_text()) \
            if self.made_file.exists() else {}
        self.explained: dict[str, str] = {}  # this build's explain outputs, by command

    def setup(self, command: str) -> None:
        self._once(command)

    def run(self, command: str) -> str:
        """The block a page shows: the command after `$ `, then its output."""
        if _makes(command):
            output = self._once(command)
        elif command.split()[:2] == ["attnviz", "explain"]:
            if command not in self.explained:
                self.explained[command] = self.execute(command, check=False)
            output = self.explained[command]
        else:
            output = self.execute(command, check=False)
        return f"```console\n$ {command}\n{output}```\n"

    def _once(self, command: str) -> str:
        """Run a command that makes something the first time; then what it printed."""
        if command not in self.made:
            self.made[command] = self.execute(command, check=True)
            self.made_file.write_text(json.dumps(self.made, indent=1))
        return self.made[command]

    def execute(self, command: str, check: bool) -> str:
        words = shlex.split(command)
        if words[0] == "attnviz":
            output, code = self._attnviz(words[1:])
        elif words[0] == "python":
            output, code = self._python(words[1:])
        else:
            raise SystemExit(f"docs/build.py runs attnviz and python commands, not {command}")
        if check and code != 0:
            raise SystemExit(f"docs/build.py: `{command}` failed ({code}):\n{output[-3000:]}")
        lines = [line.rstrip() for line in output.splitlines()]
        text = "\n".join(lines).strip("\n")
        return DURATION.sub("…", text) + "\n" if text else ""

    def _python(self, args: list[str]) -> tuple[str, int]:
        """A script's output and exit code. A script killed by a signal (TensorFlow's CPU
        kernels have aborted a training here once in many, "corrupted size vs. prev_size")
        is run once more, and the build says so (a recorder's run it half wrote is continued:
        the recorder follows the epoch Keras starts from)."""
        def run():
            return subprocess.run([sys.executable, *args], cwd=self.root, text=True,
                                  capture_output=True, env={**os.environ, **_env(),
                                                            "TF_CPP_MIN_LOG_LEVEL": "3"})

        result = run()
        if result.returncode < 0:
            print(f"docs/build.py: `python {' '.join(args)}` was killed by signal "
                  f"{-result.returncode}; running it again", file=sys.stderr)
            result = run()
        return result.stdout + result.stderr, result.returncode

    def _attnviz(self, args: list[str]) -> tuple[str, int]:
        from typer.testing import CliRunner

        from attnviz.cli import app

        here = Path.cwd()
        os.chdir(self.root)
        try:
            result = CliRunner().invoke(app, args, env=_env())
        finally:
            os.chdir(here)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise SystemExit(f"docs/build.py: `attnviz {' '.join(args)}` raised "
                             f"{result.exception!r}")
        return result.output, result.exit_code


def marker(match: re.Match) -> tuple[str, str, str]:
    """(kind, command, the block's current text) of a MARKER match."""
    if match[1]:
        return "setup", match[2].strip(), ""
    return "run", match[5].strip(), match[6]


def _makes(command: str) -> bool:
    words = command.split()
    return words[0] == "python" or words[:2] in (["attnviz", "train"], ["attnviz", "data"])


def render(text: str, sandbox: Sandbox) -> str:
    """The page with its help and run blocks made again, its setups run in order."""

    def block(match: re.Match) -> str:
        kind, command, _ = marker(match)
        if kind == "setup":
            sandbox.setup(command)
            return match[0]
        return f"<!-- run: {command} -->\n{sandbox.run(command)}<!-- /run -->"

    return MARKER.sub(block, render_help(text))


def build(fresh: bool = False, check: bool = False, sandbox_root: Path = SANDBOX
          ) -> dict[Path, str]:
    """Rewrite (or, with `check`, only make) every page; return the pages that changed,
    with their new text."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # One process runs every page's commands, so TensorFlow's Python logger would warn about
    # functions traced again for each new model (a user runs one command per process) and
    # write into an output captured by an earlier command.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    sandbox = Sandbox(sandbox_root, fresh)
    changed = {}
    for page in pages():
        text = page.read_text()
        updated = render(text, sandbox)
        if updated != text:
            changed[page] = updated
            if not check:
                page.write_text(updated)
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="start from an empty sandbox")
    parser.add_argument("--check", action="store_true", help="compare, rewrite nothing")
    args = parser.parse_args()
    changed = build(args.fresh, args.check)
    for page in changed:
        print(f"{'drifted' if args.check else 'updated'}: {page.relative_to(ROOT)}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
