"""attnviz's own bugs surface as bugs (a traceback, a line asking for a report, exit code 1);
errors raised in a user's code stay one line naming it (exit code 2)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from attnviz.errors import BUG, AttnvizError, raised_by_attnviz


def _user_code(source: str, tmp_path):
    """A function compiled from a file outside the attnviz package, as a user's model is."""
    path = tmp_path / "mymodel.py"
    path.write_text(source)
    namespace: dict = {}
    exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 (the test's own code)
    return namespace["call"]


def _raised(function) -> BaseException:
    try:
        function()
    except Exception as err:  # noqa: BLE001
        return err
    raise AssertionError("did not raise")


def test_an_error_in_attnviz_code_is_told_from_one_in_user_code(tmp_path):
    from attnviz.analysis.tasks import get_task
    from attnviz.store import layers

    user = _user_code("def call():\n    return {}['x']\n", tmp_path)
    assert not raised_by_attnviz(_raised(user))
    assert raised_by_attnviz(_raised(lambda: layers.kind_of(None)))  # TypeError in attnviz
    assert not raised_by_attnviz(_raised(lambda: get_task("no-such-task")))  # a mistake
    assert not raised_by_attnviz(ValueError("never raised: no traceback"))


def test_an_error_keras_raises_about_a_users_model_stays_the_users():
    """Keras cuts its own frames from the errors it raises, so a shape mismatch in a user's
    model ends in the attnviz line that ran it: still the user's (the probe does not fit)."""
    keras = pytest.importorskip("keras")
    from attnviz.keras.capture import capture

    model = keras.Sequential([keras.Input((5, 1)), keras.layers.LSTM(2),
                              keras.layers.Dense(1)])
    err = _raised(lambda: capture(model, np.zeros((2, 5, 3), np.float32)))
    tb = err.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert "attnviz" in tb.tb_frame.f_code.co_filename  # where the cut traceback ends
    assert not raised_by_attnviz(err), err


def test_model_failures_keeps_user_errors_one_line_and_lets_bugs_through(tmp_path):
    pytest.importorskip("keras")
    from attnviz.keras.loading import model_failures

    user = _user_code("def call():\n    raise ValueError('shapes (2, 3) and (4,)')\n", tmp_path)
    with pytest.raises(AttnvizError, match=r"the probe does not fit: ValueError: shapes"):
        with model_failures("the probe does not fit"):
            user()

    from attnviz.store import layers

    with pytest.raises(TypeError):  # raised inside attnviz.store.layers: a bug, as it is
        with model_failures("the probe does not fit"):
            layers.kind_of(None)


def _score_with_broken_core(tmp_path, imports: str, body: str):
    """`attnviz score` in a fresh process, as users run it, with its core call replaced by a
    function whose body is `body` (defined outside the package, after `imports`)."""
    code = (
        "import sys\n"
        "import attnviz.analysis.score as score\n"
        f"{imports}"
        "def broken(*args, **kwargs):\n"
        f"    {body}\n"
        "score.score_target = broken\n"
        "from attnviz.cli import main\n"
        f"sys.argv = ['attnviz', 'score', {str(tmp_path)!r}]\n"
        "main()\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_a_bug_in_a_command_is_a_traceback_and_a_request_for_a_report(tmp_path):
    """A core function that breaks (planted) ends the command with its traceback, the report
    line and exit code 1, not a one-line error."""
    # the slip happens inside attnviz's own code: a layer kind of no shape
    done = _score_with_broken_core(tmp_path, "from attnviz.store.layers import kind_of\n",
                                   "return kind_of(None)")
    assert done.returncode == 1, done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert "TypeError: object of type 'NoneType' has no len()" in done.stderr
    assert BUG in done.stderr.replace("\n", " ")
    assert "error:" not in done.stderr  # not dressed up as the user's mistake


def test_an_error_from_elsewhere_is_named_as_such_not_as_attnvizs_bug(tmp_path):
    """An exception no attnviz code raised (here from a planted function outside the
    package, as Keras or a user's model would) keeps its traceback, and is not called a bug
    of attnviz."""
    done = _score_with_broken_core(tmp_path, "", "return {}['planted']")
    assert done.returncode == 1, done.stderr
    assert "KeyError: 'planted'" in done.stderr
    assert BUG not in done.stderr.replace("\n", " ")
    assert "raised by Keras, TensorFlow or your model's code" in done.stderr.replace("\n", " ")


def test_a_user_mistake_stays_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "attnviz", "score", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert BUG not in done.stderr
