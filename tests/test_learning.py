"""The verdict tells learned, shortcut and not yet learned apart, on real (tiny) runs of every
encoder family; docs/explain.md has the thresholds and the full-size runs they were set on.

Each run is trained once per module with a checkpoint every epoch, then explained at an
early and a late epoch. The founding task at L = 6 is learnable by every encoder within a
few seconds; at L = 20 the position-wise encoder learns the shortcut "a/2" instead.
"""

from __future__ import annotations

import pytest

from attnviz.analysis.verdict import compose, learning
from attnviz.keras.explain import ExplainOptions, explain_run

from conftest import train_tiny

pytestmark = pytest.mark.slow

SHORT = dict(seq_len=6, samples=4096, learning_rate=0.005, checkpoint_every=1)
RUNS = {
    # encoder: (training changes, {epoch: the state expected there})
    "lstm": (dict(SHORT, epochs=6), {1: "not learned", 6: "learned"}),
    "gru": (dict(SHORT, epochs=4), {1: "not learned", 4: "learned"}),
    "bilstm": (dict(SHORT, epochs=6), {1: "not learned", 6: "learned"}),
    "dense": (dict(SHORT, epochs=6, samples=2048), {1: "not learned", 6: "learned"}),
    # the founding case's position-wise encoder, smaller: it settles on the shortcut
    "dense-shortcut": (dict(epochs=10, samples=8192, units=100, attention_units=128,
                            learning_rate=0.002, checkpoint_every=1),
                       {3: "not learned", 10: "shortcut"}),
}


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    """{(run name, epoch): explain report}, each run trained once."""
    reports = {}
    for name, (changes, states) in RUNS.items():
        encoder = name.split("-")[0]
        run = train_tiny(tmp_path_factory.mktemp(name) / "run", encoder=encoder, **changes)
        for epoch in states:
            reports[name, epoch] = explain_run(run, ExplainOptions(epoch=epoch, samples=300,
                                                                   steps=8))
    return reports


@pytest.mark.parametrize("name, epoch, state", [
    (name, epoch, state) for name, (_, states) in RUNS.items()
    for epoch, state in states.items()])
def test_each_encoder_family_reaches_the_states_it_can(explained, name, epoch, state):
    report = explained[name, epoch]
    found, sentence = learning(report)
    ratio = report["baselines"]["predictors"][1]["ratio"]
    assert found == state, f"{name} epoch {epoch}: {ratio:.2f}x the shortcut: {sentence}"
    assert sentence in compose(report)
    assert ("SHORTCUT" in "\n".join(compose(report))) == (state == "shortcut")


def test_the_shortcut_run_rests_on_the_delimiter_and_its_state_carries_no_more(explained):
    report = explained["dense-shortcut", 10]
    joined = "\n".join(compose(report))
    assert "The input there is also sufficient" in joined
    assert "the encoder state there carries no more than that predictor uses" in joined


def test_a_run_worse_than_the_mean_has_learned_nothing(trained_run):
    """The shared 3-epoch LSTM run: worse than predicting the mean of y."""
    report = explain_run(trained_run, ExplainOptions(samples=300, steps=8))
    state, sentence = learning(report)
    assert state == "not learned"
    assert sentence.startswith("NOT LEARNED YET: its predictions are no better than the mean")
