"""Advice that works: every fix an error message suggests is valid and, followed, gets past
that error.

The walk takes every case of the bad-input corpus (tests/test_bad_input.py: a case added
there is walked too), reads the suggestions out of its one-line message, follows each one
and runs the command again. A suggestion is one of:

    did you mean X?             the mistyped word (the argument piece closest to X) becomes X
    `attnviz ...`               that command is run (then the original one again)
    use | add | write | e.g.  --opt [V]
                                --opt is set (to V), replacing an option that held V
    drop --opt | drop ARG       that option (and its value) or that argument is removed
    choose one of A, B, C       the quoted bad value becomes A, then B, then C (when it
                                is on the command line, not in a file)

Each option it names must be an option of the command, and the command followed must not
end in the same error, nor in a usage error (an option that does not exist, say).
Training is replaced by a stub: following a suggestion must get past the error, not train.
"""

from __future__ import annotations

import difflib
import re
import shlex
import shutil

import pytest
import typer
from typer.testing import CliRunner

from attnviz.cli import app

from conftest import make_synthetic_run
from test_bad_input import SYNTHETIC, TRAINED, Case, prepare

runner = CliRunner()
COMMANDS = typer.main.get_command(app).commands
USAGE_ERROR = re.compile(r"no such (option|command)|invalid value for|needs a value|"
                         r"unexpected argument|missing [A-Z]+ ")
CONNECTORS = {"to", "or", "and", "on", "in", "instead", "for", "with", "if", "when", "then",
              "the", "a", "it", "them", "that", "this", "before", "after"}
OPTION_ADVICE = re.compile(r"\b(?:use|add|write|e\.g\.)\s+(--[a-z][\w-]*)(?:\s+([^\s,;:)]+))?")
WORD = re.compile(r"[^\s,;:()]+")


def options(command: str) -> dict[str, bool]:
    """Every option of `command`: name -> whether it is a flag (takes no value)."""
    return {name: bool(getattr(param, "is_flag", False))
            for param in COMMANDS[command].params
            for name in (*param.opts, *param.secondary_opts) if name.startswith("-")}


def suggestions(message: str, args: list[str]) -> list[tuple[str, list[str]]]:
    """(what was suggested, the command line that follows it) for each suggestion."""
    command = args[0] if args and args[0] in COMMANDS else None
    followed = []
    for target in re.findall(r"did you mean (\S+)\?", message):
        followed.append((f"did you mean {target}?", _replace_closest(args, target)))
    for line in re.findall(r"`attnviz ([^`]+)`", message):
        followed.append((f"`attnviz {line}`", shlex.split(line)))
    for option, value in OPTION_ADVICE.findall(message):
        assert command is not None and option in options(command), (
            f"{message}\nsuggests {option}, which `attnviz {command}` does not have")
        if options(command)[option] or value.lower() in CONNECTORS or value.startswith("-"):
            value = ""
        followed.append((f"{option} {value}".strip(), _set_option(args, option, value,
                                                                 options(command))))
    for dropped in re.findall(r"\bdrop (\S+?)[,;:]?(?:\s|$)", message):
        if dropped in args:
            flags = options(command) if command else {}
            followed.append((f"drop {dropped}", _drop(args, dropped, flags)))
    for listing in re.finditer(r"choose one of ([^:;]+)", message):
        quoted = re.findall(r"'([^']+)'", message[:listing.start()])  # the last is the bad one
        if quoted and any(quoted[-1] in arg for arg in args):  # not a value inside a file
            for choice in WORD.findall(listing[1].replace(" or ", ", ")):
                followed.append((f"choose {choice}",
                                 [arg.replace(quoted[-1], choice) for arg in args]))
    return followed


def _pieces(arg: str) -> list[str]:
    return [piece for piece in re.split(r"[=@]", arg) if piece]


def _replace_closest(args: list[str], target: str) -> list[str]:
    """Replace the piece of an argument (split at = and @) most like `target` by it."""
    scored = [(difflib.SequenceMatcher(None, piece, target).ratio(), index, piece)
              for index, arg in enumerate(args) for piece in _pieces(arg) if piece != target]
    _, index, piece = max(scored)
    out = list(args)
    out[index] = args[index].replace(piece, target, 1) if piece != args[index] else target
    return out


def _set_option(args: list[str], option: str, value: str, flags: dict[str, bool]) -> list[str]:
    out = list(args)
    if value and value in out and out.index(value) > 0 and out[out.index(value) - 1] in flags:
        at = out.index(value) - 1  # the option that held the value gives way to `option`
        del out[at:at + 2]
    if option in out:
        at = out.index(option)
        if value:
            out[at + 1] = value
        return out
    return [*out, option, *([value] if value else [])]


def _drop(args: list[str], dropped: str, flags: dict[str, bool]) -> list[str]:
    at = args.index(dropped)
    takes_value = dropped in flags and not flags[dropped]
    return args[:at] + args[at + (2 if takes_value else 1):]


def first_line(result) -> str:
    return result.output.strip().splitlines()[0] if result.output.strip() else ""


@pytest.fixture
def no_training(monkeypatch):
    """`train` plans (and writes) the run as usual, then trains nothing."""
    from attnviz.keras import training as train
    monkeypatch.setattr(train, "fit", lambda plan, **_: train.TrainResult(
        plan.run, plan.run.epochs_done, interrupted=False))


def walk(case: Case, root, monkeypatch) -> None:
    args = prepare(case, root, monkeypatch)
    error = first_line(runner.invoke(app, args))
    assert error.startswith("error:"), error
    for suggested, line in suggestions(error, args):
        result = runner.invoke(app, line)
        after = first_line(result)
        assert not USAGE_ERROR.search(after) or after == error, (
            f"{error}\nfollowing {suggested!r} ({line}) gives: {after}")
        if line[-1:] == ["--help"]:
            assert result.exit_code == 0, after
            continue
        if suggested.startswith("`"):
            result = runner.invoke(app, args)  # a command run first, then the one that failed
            after = first_line(result)
        assert after != error, f"{error}\nfollowing {suggested!r} ({line}) gives the same error"


@pytest.mark.parametrize("name", SYNTHETIC)
def test_suggestions_work_on_a_synthetic_run(name, tmp_path, monkeypatch, no_training):
    root = tmp_path / "run"
    make_synthetic_run(root)
    walk(SYNTHETIC[name], root, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINED)
def test_suggestions_work_on_a_trained_run(name, tmp_path, monkeypatch, no_training,
                                           trained_run):
    root = tmp_path / "run"
    shutil.copytree(trained_run.root, root)
    walk(TRAINED[name], root, monkeypatch)


@pytest.mark.parametrize("message, args, expected", [
    ("error: attnviz train: no such option --epoch (did you mean --epochs?)",
     ["train", "--epoch", "5"], [["train", "--epochs", "5"]]),
    ("error: --min 'mas@delimiter=0.5': unknown metric 'mas' (did you mean mass?): choose one "
     "of mass, jsd", ["score", "r", "--min", "mas@delimiter=0.5"],
     [["score", "r", "--min", "mass@delimiter=0.5"],
      ["score", "r", "--min", "mass@delimiter=0.5"], ["score", "r", "--min", "jsd@delimiter=0.5"]]),
    ("error: --min 'jsd=0.1': jsd is better when lower, so its threshold is a maximum: write "
     "--max jsd=0.1", ["score", "r", "--min", "jsd=0.1"], [["score", "r", "--max", "jsd=0.1"]]),
    ("error: give a RUN or --attention, not both: drop r to score a.npy, or drop --attention",
     ["score", "r", "--attention", "a.npy"], [["score", "--attention", "a.npy"], ["score", "r"]]),
    ("error: r already holds files: use --resume to continue it, --force to replace it",
     ["train", "--out", "r"], [["train", "--out", "r", "--resume"]]),
    ("error: no run at r: train one with `attnviz train --out r`", ["score", "r"],
     [["train", "--out", "r"]]),
    ("error: the run is damaged: train it again", ["score", "r"], []),
])
def test_the_suggestions_read_from_a_message(message, args, expected):
    assert [line for _, line in suggestions(message, args)] == expected
