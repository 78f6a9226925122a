"""Command-line usage errors (an unknown option, a missing argument, a bad value) as one line.

Click prints a usage box for these; attnviz prints one line naming the option and the fix,
like every other bad input, and exits 2:

    attnviz train --epoch 5   ->  error: attnviz train: no such option --epoch (did you mean
                                  --epochs?)
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from typer.core import TyperGroup

from attnviz.errors import did_you_mean
from attnviz.views.terminal import fail

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover (older typer: click itself)
    from click import exceptions as click_errors

# what to give instead, by a word of click's (or pydantic's) complaint about a value
TYPE_FIXES = (("integer", "give a whole number"), ("float", "give a number"),
              ("number", "give a number"), ("bool", "give true or false"))


class UsageErrorsInOneLine(TyperGroup):
    """The app's group: usage errors of the group and of every command become one line."""

    def make_context(self, info_name, args, parent=None, **extra):
        with one_line_usage_errors(self):
            return super().make_context(info_name, args, parent=parent, **extra)

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta["attnviz.command"] = name, command  # the parser's errors may lack a context
        return name, command, rest

    def invoke(self, ctx):
        with one_line_usage_errors(self, ctx):
            return super().invoke(ctx)


@contextlib.contextmanager
def one_line_usage_errors(group, group_ctx=None) -> Iterator[None]:
    """Re-raise click's UsageError (not the help shown for no arguments) as one line, exit 2."""
    try:
        yield
    except click_errors.NoArgsIsHelpError:
        raise
    except click_errors.UsageError as err:
        ctx = err.ctx or group_ctx
        command, where = group, "attnviz"
        if ctx is not None and ctx.command is not group:
            command, where = ctx.command, f"attnviz {ctx.info_name}"
        elif ctx is not None and "attnviz.command" in ctx.meta:
            name, command = ctx.meta["attnviz.command"]
            where = f"attnviz {name}"
        raise fail(message(err, command, where)) from None


def message(err, command, where: str) -> str:
    """One line naming the option (or argument, or command) and the fix; `command` is the
    click command whose options were parsed, `where` how it is typed ("attnviz train")."""
    help_hint = f"`{where} --help` lists {'its options' if ' ' in where else 'them'}"
    params = list(getattr(command, "params", []))
    if isinstance(err, click_errors.NoSuchOption):
        hint = did_you_mean(err.option_name, _option_names(params))
        return f"{where}: no such option {err.option_name}" + (hint or f": {help_hint}")
    param = getattr(err, "param", None)
    if isinstance(err, click_errors.MissingParameter) and param is not None:
        return f"{where}: missing {_name(param)}{_described(param)}: {help_hint}"
    if isinstance(err, click_errors.BadParameter) and param is not None:
        text = err.message.rstrip(".")
        fix = next((fix for word, fix in TYPE_FIXES if word in text.lower()), help_hint)
        return (f"{where}: invalid value for {_name(param)} ({text[:1].lower()}{text[1:]}): "
                f"{fix}{_example(param)}")
    text = err.message.rstrip(".")
    if isinstance(err, click_errors.BadOptionUsage):
        param = _option(params, err.option_name)
        if param is not None and "requires an argument" in text:
            return (f"{where}: {err.option_name} needs a value{_described(param)}"
                    + (_example(param) or f": {help_hint}"))
        return f"{where}: {text[:1].lower()}{text[1:]}: {help_hint}"
    if text.startswith("No such command"):
        quoted = re.search(r"[\"']([^\"']+)[\"']", text)
        name = quoted[1] if quoted else text
        commands = list(getattr(command, "commands", {}))
        return (f"no such command {name!r}{did_you_mean(name, commands)}: the commands are "
                f"{', '.join(commands)}")
    extra = re.fullmatch(r"Got unexpected extra arguments? ?(?:\(s\))? \((.*)\)", text)
    if extra:
        return (f"{where}: unexpected argument {extra[1]!r} (quote a path that holds spaces): "
                f"{help_hint}")
    return f"{where}: {text[:1].lower()}{text[1:]}: {help_hint}"


def _option_names(params) -> list[str]:
    return [name for param in params for name in (*param.opts, *param.secondary_opts)
            if name.startswith("-")]


def _option(params, name: str):
    return next((param for param in params if name in (*param.opts, *param.secondary_opts)),
                None)


def _name(param) -> str:
    """--epochs for an option, RUN for an argument."""
    if param.param_type_name == "argument":
        return (param.name or "argument").upper()
    return max(param.opts, key=len)


def _described(param) -> str:
    """' (the run directory)': the parameter's metavar or the start of its help."""
    if getattr(param, "metavar", None):
        return f" ({param.metavar})"
    text = re.split(r" \(|; |\. |: ", getattr(param, "help", None) or "")[0].rstrip(".")
    return f" ({text[:1].lower()}{text[1:]})" if text else ""


def _example(param) -> str:
    """', e.g. --epochs 20': the option with its default, when it has a plain one."""
    default = getattr(param, "default", None)
    if (param.param_type_name != "option" or isinstance(default, (bool, list, tuple))
            or default in (None, "")):
        return ""
    return f", e.g. {_name(param)} {default}"
