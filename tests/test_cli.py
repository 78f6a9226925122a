"""The app as a whole: start-up without TensorFlow, --version, completion, NO_COLOR."""

import os
import re
import subprocess
import sys

from typer.testing import CliRunner

from attnviz import __version__, cli
from attnviz.cli import app

LOADED = ("import sys; from attnviz.cli import main; sys.argv = {argv!r}\n"
          "try:\n    main()\nexcept SystemExit:\n    pass\n"
          "print('TF-LOADED' if any(m.split('.')[0] in ('tensorflow', 'keras') "
          "for m in sys.modules) else 'TF-ABSENT')")


def run_cli(*argv):
    code = LOADED.format(argv=["attnviz", *argv])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_help_answers_without_importing_tensorflow():
    result = run_cli("--help")
    assert "train" in result.stdout and "score" in result.stdout
    assert result.stdout.strip().endswith("TF-ABSENT")


def test_every_command_help_is_fast_too():
    for command in ("train", "inspect", "animate", "score", "explain", "report", "data"):
        result = run_cli(command, "--help")
        assert "Usage" in result.stdout, command
        assert result.stdout.strip().endswith("TF-ABSENT"), command


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"attnviz {__version__}"


def test_python_dash_m_runs_the_app():
    result = subprocess.run([sys.executable, "-m", "attnviz", "--version"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and __version__ in result.stdout


def test_shell_completion_is_offered():
    result = CliRunner().invoke(app, ["--show-completion", "bash"], env={"SHELL": "/bin/bash"})
    assert result.exit_code == 0, (result.output, repr(result.exception))
    assert "_ATTNVIZ_COMPLETE" in result.output


def test_errors_have_no_colour_codes_under_no_color(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "attnviz", "train", "--out", str(tmp_path), "--epochs", "0"],
        capture_output=True, text=True, timeout=120,
        env={"NO_COLOR": "1", "FORCE_COLOR": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2 and "--epochs must be at least 1" in result.stderr
    # even on a forced terminal: bold may stay, colour (SGR 30-38, 90-97) may not
    assert "\x1b[1m" in result.stderr
    assert not re.search(r"\x1b\[(?:[0-9]+;)*(?:3[0-8]|9[0-7])(?:;[0-9]+)*m", result.stderr)


def test_the_command_runs_tensorflow_without_onednn_unless_told(monkeypatch):
    """oneDNN's kernels abort a training now and then here and make runs of one seed differ;
    the command turns them off before TensorFlow loads, and a user's own setting wins."""
    seen = []
    monkeypatch.setattr(cli, "app", lambda: seen.append(os.environ.get("TF_ENABLE_ONEDNN_OPTS")))
    for setting, expected in ((None, "0"), ("1", "1")):
        if setting is None:
            monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
        else:
            monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", setting)
        try:
            cli.main()
        except SystemExit:
            pass
        assert seen[-1] == expected
