"""attnviz.analysis.verdict on hand-made reports: sentences follow the numbers (no TensorFlow)."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from attnviz.analysis.verdict import compose, learning


def interventions(learned: float, losses: dict[str, float], far: float = 0.43
                  ) -> list[dict]:
    """Intervention entries as explain reports them: the learned loss, then `losses`."""
    entries = [{"name": "learned", "loss": learned, "jsd": 0.0, "ratio": 1.0}]
    for name, loss in losses.items():
        entry = {"name": name, "loss": loss, "jsd": 0.5, "ratio": loss / learned}
        if name == "permuted":
            entry.update(loss_spread=0.3, draws=5)
        if name.startswith("mask:"):
            entry["kept"] = 0
        if name == "adversarial":
            entry.update(jsd=far * 0.6, learned_loss=learned, samples=500, steps=50,
                         learning_rate=1.0, tolerance=0.14, tolerance_share=0.05,
                         max_change=0.14, very_different=0.2, far=far)
        entries.append(entry)
    return entries


def with_intervention(report: dict, name: str, loss: float) -> dict:
    """`report` with intervention `name` at `loss`."""
    learned = report["interventions"][0]["loss"]
    for entry in report["interventions"]:
        if entry["name"] == name:
            entry.update(loss=loss, ratio=loss / learned)
    return report


def founding_like(**changes) -> dict:
    """Numbers like the founding case after 30 epochs: LSTM, attention on the delimiter."""
    report = {
        "run": "runs/x", "epoch": 30, "task": "add-before-delimiter",
        "target": "y = sum of the values before the delimiter 0.0",
        "encoder": "lstm", "attention_kind": "luong", "recurrent": True, "bidirectional": False,
        "seq_len": 20, "samples": {"probe": 10, "heldout": 1000},
        "masks": ["delimiter", "prefix"], "masks_on": "heldout",
        "mask_share": {"delimiter": 0.05, "prefix": 0.5},
        "mask_zero_inputs": {"delimiter": 1.0, "prefix": 0.0},
        "mask_order": {"delimiter": {"prefix": 0.0}, "prefix": {"delimiter": 1.0}},
        "attention": {
            "heldout": {"masks": {"delimiter": 0.91, "prefix": 0.06}, "outside": 0.03},
            "probe": {"masks": {"delimiter": 0.94, "prefix": 0.02}, "outside": 0.04},
        },
        "integrated_gradients": {
            "baseline": 0.5, "steps": 64, "completeness_error": 1e-4,
            "heldout": {"masks": {"delimiter": 0.49, "prefix": 0.34}, "outside": 0.17,
                        "tau_b": 0.29},
            "probe": {"masks": {"delimiter": 0.4, "prefix": 0.3}, "outside": 0.3, "tau_b": 0.3},
        },
        "gradient_x_input": {
            "heldout": {"masks": {"delimiter": 0.0, "prefix": 0.83}, "outside": 0.17,
                        "tau_b": -0.32},
            "probe": {"masks": {"delimiter": 0.0, "prefix": 0.8}, "outside": 0.2, "tau_b": -0.3},
        },
        "attribution_refused": None, "erase_value": 0.5,
        "erase_value_source": "the task's neutral value",
        "faithfulness": {
            "k": 1, "erase_value": 0.5, "target_std": 2.9,
            "comprehensiveness": {"top": 3.04, "random": 0.33},
            "sufficiency": {"top": 0.81, "random": 2.92},
        },
        "baselines": {
            "loss": "mse", "loss_source": "the built-in tasks' loss",
            "heldout_loss": 0.36, "heldout_loss_se": 0.03, "val_loss": 0.43,
            "predictors": [
                {"name": "mean", "loss": 8.33, "description": "predict the mean of y",
                 "ratio": 0.36 / 8.33},
                {"name": "half-delimiter-index", "loss": 0.833,
                 "description": "predict a/2 from where the delimiter is", "ratio": 0.36 / 0.833},
            ],
        },
        "interventions": interventions(0.36, {"uniform": 10.0, "permuted": 15.5,
                                              "mask:delimiter": 0.08, "mask:prefix": 2.65,
                                              "argmax": 1.7, "adversarial": 0.37}),
        "intervention_setup": {"layer": "attention", "shape": [20],
                               "replaced": "each sample's row", "samples": 1000},
    }
    for path, value in changes.items():
        target = report
        *parents, leaf = path.split("__")
        for key in parents:
            target = target[key]
        target[leaf] = value
    return report


def shortcut_like() -> dict:
    """Numbers like the position-wise encoder: attention and IG on the delimiter, MSE at the
    shortcut's, the delimiter alone sufficient."""
    report = founding_like(encoder="dense", recurrent=False)
    report["baselines"]["heldout_loss"] = 1.17
    for predictor in report["baselines"]["predictors"]:
        predictor["ratio"] = 1.17 / predictor["loss"]
    report["faithfulness"]["sufficiency"] = {"top": 0.37, "random": 3.79}
    report["integrated_gradients"]["heldout"]["tau_b"] = 0.72
    report["interventions"] = interventions(1.17, {
        "uniform": 3.0, "permuted": 4.0, "mask:delimiter": 0.88, "mask:prefix": 7.5,
        "argmax": 1.1, "adversarial": 1.18}, far=0.05)
    return report


def text(report: dict) -> str:
    return "\n".join(compose(report))


def test_founding_case_says_delimiter_prefix_and_the_state_carries_the_sum():
    sentences = compose(founding_like())
    assert sentences[0].startswith("Attention weights sit on the delimiter position: 0.91")
    joined = "\n".join(sentences)
    assert "The prefix inputs carry more of the attribution than of the attention" in joined
    assert "the input there matters to the prediction" in joined
    assert "the input there alone is not sufficient" in joined
    assert "weighs states, not inputs" in joined
    assert ("With all attention on the delimiter position, its held-out MSE is 0.08 (0.22x "
            "the learned 0.36; 0.10x the half-delimiter-index predictor's): the encoder state "
            "there carries what the task needs.") in joined
    assert sentences[-1].startswith(
        "So the recurrent state at the delimiter position carries what the prediction needs "
        "from the prefix inputs before it")
    assert "y = sum of the values" in sentences[-1]
    assert "SHORTCUT" not in joined and "LEARNED: its predictions beat the shortcut " \
        "'half-delimiter-index' clearly (0.43x its MSE" in joined
    assert learning(founding_like())[0] == "learned"


def test_shortcut_is_flagged_and_a_position_wise_encoder_gets_no_recurrent_caveat():
    joined = text(shortcut_like())
    assert ("SHORTCUT: its predictions are about as good as the shortcut 'half-delimiter-index' "
            "and not clearly better (1.40x its MSE)") in joined
    assert "1.40x the half-delimiter-index" in joined
    assert "The input there is also sufficient" in joined
    assert "rank the positions alike" in joined
    assert "the encoder state there carries no more than that predictor uses" in joined
    assert "recurrent" not in joined and "So the recurrent state" not in joined
    assert learning(shortcut_like())[0] == "shortcut"


def test_a_recurrent_model_at_the_shortcut_gets_the_flag_and_not_the_conclusion():
    report = shortcut_like()
    report.update(encoder="lstm", recurrent=True)
    joined = text(report)
    assert "SHORTCUT" in joined and "weighs states, not inputs" in joined
    assert "So the recurrent state" not in joined


def test_near_the_shortcut_but_using_other_inputs_is_not_yet_learned_nor_the_shortcut():
    """The founding case after 15 epochs: 0.89x the shortcut's MSE, the delimiter's input
    alone not sufficient (the prefix values are used)."""
    report = founding_like()
    report["baselines"]["predictors"][1]["ratio"] = 0.89
    state, sentence = learning(report)
    assert state == "not learned" and "SHORTCUT" not in text(report)
    assert sentence.startswith("NOT LEARNED YET: its predictions are not clearly better than "
                               "the shortcut 'half-delimiter-index' (0.89x its MSE")
    assert "has not learned the shortcut either" in sentence


def test_worse_than_the_shortcut_is_not_yet_learned_never_shortcut():
    """The issue's case: a 3-epoch dense run at 2.11x the shortcut's MSE, attended input
    sufficient: it has learned nothing yet, not the shortcut."""
    report = shortcut_like()
    report["baselines"]["predictors"][1]["ratio"] = 2.11
    state, sentence = learning(report)
    assert state == "not learned" and "SHORTCUT" not in text(report)
    assert "worse than even the shortcut 'half-delimiter-index' (2.11x its MSE)" in sentence


@pytest.mark.parametrize("mean_ratio, state", [(0.05, "learned"), (0.7, "not learned"),
                                               (1.2, "not learned")])
def test_a_task_without_a_shortcut_is_judged_against_the_mean(mean_ratio, state):
    report = founding_like()
    report["baselines"]["predictors"] = [
        {"name": "mean", "loss": 0.08, "description": "predict the mean of y",
         "ratio": mean_ratio}]
    assert learning(report)[0] == state
    assert "SHORTCUT" not in text(report)


def test_bidirectional_caveat_mentions_later_inputs():
    joined = text(founding_like(encoder="bilstm", bidirectional=True))
    assert "and > t (bidirectional)" in joined and "inputs around it" in joined


def test_no_conclusion_when_attribution_does_not_lie_before_the_attended_mask():
    report = founding_like()
    report["mask_order"]["prefix"]["delimiter"] = 0.5
    joined = text(report)
    assert "The prefix inputs carry more" in joined and "So the recurrent state" not in joined


def test_no_carrier_when_attribution_follows_attention():
    report = founding_like()
    report["integrated_gradients"]["heldout"]["masks"] = {"delimiter": 0.9, "prefix": 0.05}
    report["gradient_x_input"]["heldout"]["masks"] = {"delimiter": 0.9, "prefix": 0.05}
    joined = text(report)
    assert "Attribution agrees that the delimiter inputs" in joined
    assert "carry more of the attribution" not in joined and "So the recurrent state" not in joined


def test_the_verdict_follows_numbers_not_task_names():
    renamed = founding_like(task="anything", target="y = something else", masks=["a", "b"])
    for key in ("mask_share", "mask_zero_inputs"):
        renamed[key] = {"a": renamed[key]["delimiter"], "b": renamed[key]["prefix"]}
    renamed["mask_order"] = {"a": {"b": 0.0}, "b": {"a": 1.0}}
    for entry in renamed["interventions"]:
        entry["name"] = {"mask:delimiter": "mask:a", "mask:prefix": "mask:b"}.get(
            entry["name"], entry["name"])
    for part in ("attention", "integrated_gradients", "gradient_x_input"):
        for batch in ("heldout", "probe"):
            masses = renamed[part][batch]["masks"]
            renamed[part][batch]["masks"] = {"a": masses["delimiter"], "b": masses["prefix"]}
    original = founding_like(target="y = something else")
    for report in (original, renamed):
        report["baselines"]["predictors"][1].update(name="shortcut", description="a guess")
    expected = [s.replace("delimiter", "a").replace("prefix", "b") for s in compose(original)]
    assert compose(renamed) == expected


@pytest.mark.parametrize("masses, outside, expected", [
    ({"delimiter": 0.1, "prefix": 0.8}, 0.1, "sit on the prefix positions: 0.80"),
    ({"delimiter": 0.3, "prefix": 0.45}, 0.25, "lean to the delimiter position"),
    ({"delimiter": 0.02, "prefix": 0.18}, 0.8, "sit mostly outside"),
    # more than half the mass, but only what uniform attention gives a mask of that size
    ({"delimiter": 0.05, "prefix": 0.55}, 0.40, "spread"),
    ({"delimiter": 0.07, "prefix": 0.48}, 0.45, "spread"),
])
def test_where_attention_sits_follows_the_masses(masses, outside, expected):
    report = founding_like()
    report["attention"]["heldout"] = {"masks": masses, "outside": outside}
    report["attention"]["probe"] = copy.deepcopy(report["attention"]["heldout"])
    assert expected in compose(report)[0]


@pytest.mark.parametrize("tau, expected", [(0.7, "rank the positions alike"),
                                           (0.3, "only partly alike"),
                                           (0.05, "rank the positions differently"),
                                           (None, "cannot be compared")])
def test_agreement_follows_tau_b(tau, expected):
    report = founding_like()
    report["integrated_gradients"]["heldout"]["tau_b"] = tau
    assert expected in text(report)


def test_attended_positions_that_matter_no_more_than_random_are_called_so():
    report = founding_like()
    report["faithfulness"]["comprehensiveness"] = {"top": 0.3, "random": 0.33}
    assert "the input there matters no more than random ones" in text(report)


def test_a_model_worse_than_the_mean_has_not_learned_the_task():
    report = founding_like()
    for predictor, ratio in zip(report["baselines"]["predictors"], (1.1, 11.0), strict=True):
        predictor["ratio"] = ratio
    joined = text(report)
    assert "NOT LEARNED YET: its predictions are no better than the mean predictor's (1.10x" \
        in joined
    assert "SHORTCUT" not in joined
    assert learning(report)[0] == "not learned"


def test_inexact_integrated_gradients_are_flagged():
    report = founding_like()
    report["integrated_gradients"]["completeness_error"] = 0.12
    assert "miss completeness by 12 %" in text(report)


def test_verdict_and_explain_output_do_not_import_tensorflow():
    code = ("import sys, attnviz.analysis.verdict, attnviz.views.explain; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_states_are_claimed_only_for_temporal_attention():
    """Self-attention replaces a map per head and query: no sentence about what the state at
    the mask carries, though the mask's intervention is reported."""
    report = founding_like(attention_kind="self")
    report["intervention_setup"]["shape"] = [2, 20, 20]
    joined = text(report)
    assert "carries what the task needs" not in joined and "So the recurrent state" not in joined
    assert "All attention on the delimiter position gives held-out MSE 0.08 (0.22x the " \
        "learned 0.36): better; attention spread evenly over the prefix positions" in joined
    assert "weighs states, not inputs" in joined  # the caveat is about the architecture
    measured = text(founding_like())
    assert "The learned attention weights, the one thing this changes, cost the " \
        "difference." in measured  # 0.08 with all attention on the delimiter, 0.36 learned


def test_interventions_say_whether_the_model_needs_its_attention():
    joined = text(founding_like())
    assert ("Replacing the attention weights, the rest of the model as trained, shows the "
            "model needs its attention: with uniform attention its held-out MSE is 10, 28x the "
            "learned 0.36 and worse than predicting the mean (8.33); with randomly permuted "
            "attention 15.5 ± 0.3 (43x, 5 draws).") in joined
    assert ("Attention spread evenly over the prefix positions gives held-out MSE 2.65 (7.4x "
            "the learned 0.36): worse.") in joined
    ignored = with_intervention(with_intervention(founding_like(), "uniform", 0.38),
                                "permuted", 0.4)
    assert "the model does not need the attention it learned" in text(ignored)
    partly = with_intervention(founding_like(), "uniform", 0.5)
    assert "needs its attention only partly" in text(partly)


def test_a_very_different_attention_that_predicts_as_well_is_called_so():
    joined = text(founding_like())  # a very different attention for 43 % of the samples
    assert "A very different attention predicts just as well for 43 % of the samples" in joined
    assert "so by itself it does not explain it" in joined
    tied = text(shortcut_like())  # for 5 %
    assert "No very different attention predicts as well" in tied
    assert "for only 5 % of the samples" in tied and "tied to this attention pattern" in tied


def test_a_users_run_says_what_it_cannot_judge_without_a_task():
    report = founding_like(task=None, target=None)
    report["baselines"]["predictors"] = [
        {"name": "mean", "loss": 8.33, "description": "predict the mean of the held-out "
         "targets (measured on them)", "ratio": 0.36 / 8.33}]
    state, sentence = learning(report)
    assert state == "learned" and sentence.endswith("counts as learned).")
    assert ("Without a task there is no shortcut to compare with, so whether it learned a "
            "shortcut instead of the task is not judged: pass --baseline NAME=MSE") in text(report)
    for ratio in (1.2, 0.7):  # worse than the mean, or only partly better: said all the same
        report["baselines"]["predictors"][0]["ratio"] = ratio
        assert "Without a task there is no shortcut" in text(report)
    report["baselines"]["predictors"].append(
        {"name": "half-index", "loss": 0.833, "description": "given with --baseline",
         "ratio": 0.36 / 0.833})
    assert "Without a task" not in text(report)
    assert learning(report)[1].startswith("LEARNED: its predictions beat the shortcut "
                                          "'half-index' clearly")
    report["baselines"]["predictors"] = []
    state, sentence = learning(report)
    assert state == "not judged" and sentence.startswith("NOT JUDGED: there is no baseline")
    assert sentence in compose(report)


def test_token_inputs_get_no_attribution_sentences_and_keep_the_interventions():
    report = founding_like(attribution_refused="the inputs are integer token ids, which have "
                           "no gradient", integrated_gradients=None, gradient_x_input=None,
                           faithfulness=None)
    joined = text(report)
    assert ("Attribution and erasure are not measured: the inputs are integer token ids, which "
            "have no gradient; the interventions below are.") in joined
    assert "Inputs that move" not in joined and "Erasing" not in joined
    assert "the model needs its attention" in joined


def test_no_masks_no_claim_about_where_attention_sits():
    report = founding_like(masks=[], mask_share={}, mask_order={}, masks_on=None)
    report["interventions"] = [e for e in report["interventions"]
                               if not e["name"].startswith("mask:")]
    sentences = compose(report)
    assert sentences[0].startswith("No masks were given for these samples")
    assert not any("Attention spread evenly" in s for s in sentences)


# ---- losses near zero ----------------------------------------------------------------------


def keyword_like() -> dict:
    """Numbers like the docs' keyword run: a learned MSE of 7e-6, uniform attention 2e-5,
    targets of variance 0.25 (noise floor 2.5e-4), and an adversarial attention within the
    tolerance for every sample whose loss is 858x the learned."""
    report = founding_like()
    report["baselines"]["noise_floor"] = 2.5e-4
    report["interventions"] = interventions(7.15e-6, {
        "uniform": 2.07e-5, "permuted": 2.3e-5, "mask:delimiter": 1.5e-5,
        "mask:prefix": 0.3, "argmax": 1e-5, "adversarial": 858 * 7.15e-6}, far=1.0)
    return report


def test_no_ratio_of_near_zero_losses_is_read():
    sentences = " ".join(compose(keyword_like()))
    assert "both losses are near zero" in sentences
    assert "needs its attention" not in sentences and "2.9x" not in sentences
    assert "does not need the attention it learned" in sentences
    # all attention on the delimiter, 1.5e-5, is read against the floor, not as "2.1x worse"
    assert "1.5e-05 (0.06x the noise floor 0.00025, the learned 7.15e-06 being below it" in (
        sentences)
    report = keyword_like()
    report["interventions"][3]["loss"] = 2e-5  # mask:delimiter: near zero as the learned
    report["intervention_setup"]["shape"] = [2, 20, 20]  # self-attention: no state sentence
    sentences = " ".join(compose(report))
    assert "gives held-out MSE 2e-05 (0.08x the noise floor" in sentences
    assert "about as good: both losses are near zero" in sentences


def test_the_adversarial_sentence_says_worse_when_its_loss_is_far_above_the_learned():
    report = keyword_like()
    sentence = next(s for s in compose(report) if "very different attention" in s)
    assert "predicts just as well" not in sentence
    assert "yet predicts worse" in sentence and "25x the noise floor" in sentence
    assert "on those 500 held-out samples" in sentence and "on the same samples" in sentence
    # without a floor (an older report) the ratio is the raw one: 858x
    del report["baselines"]["noise_floor"]
    sentence = next(s for s in compose(report) if "very different attention" in s)
    assert "858x the learned" in sentence


def test_losses_above_the_floor_read_as_before():
    report = founding_like()
    report["baselines"]["noise_floor"] = 0.0083
    sentences = " ".join(compose(report))
    assert "the model needs its attention" in sentences
    assert "A very different attention predicts just as well for 43 %" in sentences
