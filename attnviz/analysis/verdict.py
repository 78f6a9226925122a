"""Plain-words verdict composed from an explain report's numbers (pure Python, no TensorFlow).

Every sentence is chosen by a threshold on a number of the report (the constants below,
explained in docs/explain.md, with the runs they were set on), quotes the numbers it rests
on, and says what it is about: the attention weights, the inputs (attribution, erasure),
the predictions (baselines), or the predictions with the weights replaced (interventions,
which also measure what the encoder states carry). Worked example, the founding case after
15 epochs:

    attention mass delimiter 0.85          -> "Attention weights sit on the delimiter ..."
    IG mass prefix 0.33 vs attention 0.10  -> "The prefix inputs carry more of the
                                               attribution than of the attention ..."
    MSE 0.89x the shortcut's, the prefix   -> "NOT LEARNED YET: ... no better than the
    inputs still needed                        shortcut ..., yet not the shortcut either"
    uniform attention: 13x the learned MSE -> "... the model needs its attention ..."
    all on the delimiter: MSE 0.17         -> "... the encoder state there carries what the
                                               task needs ..."
    a very different attention within      -> "A very different attention predicts just as
    the tolerance for 43 % of the samples      well for 43 % of the samples ..."

A run of the user's own model has no task: what needs a task (a shortcut to compare with)
is said to be not judged, unless the user gave a baseline (--baseline).
"""

from __future__ import annotations

SITS = 0.5  # attention "sits on" a mask holding at least this share of its mass
SITS_LIFT = 1.5  # ... and 1.5x what uniform attention would give it (so not by mask size)
LEANS = 2.0  # ... "leans to" a mask holding this many times what uniform attention would
CARRIER_RATIO = 2.0  # a mask "carries the attribution" beyond attention: attribution >= 2x
CARRIER_MARGIN = 0.15  # ... its attention mass, and (integrated gradients) >= attention + 0.15
BEFORE = 0.9  # mask B lies before mask A in at least 90 % of the held-out samples
AGREE, PARTLY = 0.5, 0.2  # Kendall tau_b between attention and |IG|: agree / agree partly
MATTERS = 2.0  # erasing the top-k changes the prediction >= 2x as much as erasing k random
NOTICEABLE = 0.1  # ... and by at least 0.1 standard deviations of the targets
SUFFICIENT = 0.2  # keeping only the top-k moves the prediction < 0.2 target std: they suffice
COMPLETE = 0.05  # integrated gradients off completeness by more than 5 %: say so
# Learned, shortcut or not yet learned: model MSE / the shortcut's MSE (set on 20-epoch
# runs of every encoder, docs/explain.md). Below LEARNED it learned the task; at NOT_YET or
# above it has not even learned the shortcut; in between it is at the shortcut's level,
# and it is the shortcut when its prediction rests on the attended inputs alone.
LEARNED, NOT_YET = 0.5, 1.5
MEAN_LEARNED = 0.5  # a task without a shortcut: model MSE / the mean predictor's
# Interventions (set on the founding case, docs/explain.md): loss with the weights replaced /
# the learned loss.
NEEDS = 2.0  # uniform and permuted attention both at least double the loss: it needs them
IGNORES = 1.2  # uniform attention within 1.2x: it does not need the pattern it learned
BETTER, WORSE = 0.8, 1.25  # attention on a mask: better below 0.8x, worse above 1.25x
FORCED_GAIN = 0.5  # all attention on the attended mask halves the loss: the weights cost it
ALTERNATIVES = 0.1  # a very different attention (JSD >= 0.2) predicts as well for at least
# 10 % of the samples searched: for those the heatmap is not an explanation
MSE_NAMES = ("mse", "mean_squared_error", "MeanSquaredError")  # a loss reported as MSE
# A loss at or below the noise floor is "near zero", and no verdict reads a ratio of two such
# losses (7e-6 against 2e-5 is no "2.9x worse"): 1e-3 of the held-out targets' variance for
# MSE (the mean predictor's loss), 1e-3 in the loss's own units for any other loss
# (explain.noise_floor measures it; docs/explain.md).
NOISE_FLOOR = 1e-3


def learning(report: dict) -> tuple[str, str]:
    """('learned' | 'shortcut' | 'not learned', the sentence that says so and why): what
    the model's predictions have learned, judged by its held-out MSE against the baselines."""
    mean, shortcut = _mean_predictor(report), _shortcut(report)
    if not report["baselines"]["predictors"] and report["task"] is None:
        return "not judged", (
            "NOT JUDGED: there is no baseline to compare its loss with (a run of your own model "
            "has no task): pass --baseline NAME=MSE with a predictor's held-out loss.")
    if mean is not None and _ratio(mean) >= 1:
        return "not learned", (
            f"NOT LEARNED YET: its predictions are no better than the mean predictor's "
            f"({_ratio(mean):.2f}x its {_label(report)}): it has learned nothing yet (train "
            "longer), so its "
            "attention says little.")
    if shortcut is None:
        if mean is None:  # every built-in task has one; a report without is not judged
            return "not learned", "NOT LEARNED YET, as far as can be told: no baseline to judge by."
        if _ratio(mean) < MEAN_LEARNED:
            return "learned", (
                f"LEARNED: its predictions beat the mean predictor clearly ({_ratio(mean):.2f}x "
                f"its {_label(report)}; below {MEAN_LEARNED}x counts as learned)"
                + (", and the task has no known shortcut." if report["task"] is not None
                   else "."))
        return "not learned", (
            f"NOT LEARNED YET: its predictions beat the mean predictor only partly "
            f"({_ratio(mean):.2f}x its {_label(report)}; below {MEAN_LEARNED}x counts as "
            "learned): train longer.")
    ratio, name = _ratio(shortcut), f"'{shortcut['name']}'"
    if ratio < LEARNED:
        return "learned", (
            f"LEARNED: its predictions beat the shortcut {name} clearly ({ratio:.2f}x its "
            f"{_label(report)}; below {LEARNED}x counts as learned): it has learned the task, "
            "not the shortcut.")
    if ratio >= NOT_YET:
        return "not learned", (
            f"NOT LEARNED YET: its predictions are worse than even the shortcut {name} "
            f"({ratio:.2f}x its {_label(report)}): it has learned neither the task nor the "
            "shortcut yet (train longer).")
    if report["faithfulness"] is not None and _rests_on_attended_inputs(report["faithfulness"]):
        return "shortcut", (
            f"SHORTCUT: its predictions are about as good as the shortcut {name} and not clearly "
            f"better ({ratio:.2f}x its {_label(report)}), and they rest on the attended inputs "
            f"alone: it has most likely learned that shortcut instead of the task "
            f"({shortcut['description']}).")
    if report["faithfulness"] is None:
        return "not learned", (
            f"NOT LEARNED YET: its predictions are not clearly better than the shortcut {name} "
            f"({ratio:.2f}x its {_label(report)}; below {LEARNED}x counts as learned); whether "
            "it learned that shortcut is not judged: the inputs' erasure was not measured.")
    return "not learned", (
        f"NOT LEARNED YET: its predictions are not clearly better than the shortcut {name} "
        f"({ratio:.2f}x its {_label(report)}; below {LEARNED}x counts as learned), yet they use "
        "inputs beyond the attended ones, so it has not learned the shortcut either: train "
        "longer.")


def compose(report: dict) -> list[str]:
    """The verdict as a list of sentences, most important first."""
    sitting = _attention_mask(report)
    carrier = _carrier(report, sitting)
    found = {entry["name"]: entry for entry in report.get("interventions") or []}
    sentences = [_where_attention_sits(report, sitting)]
    if report["integrated_gradients"] is None:
        sentences.append(f"Attribution and erasure are not measured: "
                         f"{report['attribution_refused']}; the interventions below are.")
    else:
        sentences += _attribution(report, sitting, carrier)
        sentences.append(_agreement(report))
        sentences += _faithfulness(report)
    sentences += _baselines(report)
    if report["recurrent"]:
        sentences.append(
            "Attention over recurrent states weighs states, not inputs: the state at position "
            "t summarises the inputs <= t" + (" and > t (bidirectional)" if
                                              report["bidirectional"] else "") + "."
        )
    sentences += _interventions(report, sitting, found)
    if (report["recurrent"] and carrier is not None
            and _state_carries(report, sitting, carrier, found)):
        attention = _on(report, "attention")["masks"]
        sentences.append(
            f"So the recurrent state at the {_place(report, sitting)} carries what the "
            f"prediction needs from the {carrier} inputs "
            + ("around it" if report["bidirectional"] else "before it")
            + f", though attention puts only {attention[carrier]:.2f} of its mass on "
            f"those inputs themselves." + (f" The target here: {report['target']}."
                                           if report.get("target") else "")
        )
    return [sentence for sentence in sentences if sentence]


# ---- the parts -----------------------------------------------------------------------------


def _masks_on(report: dict) -> str:
    """The batch that has the masks: held-out, else the probe."""
    return report.get("masks_on") or "heldout"


def _on(report: dict, part: str) -> dict:
    """A part's numbers on the batch that has the masks."""
    return report[part][_masks_on(report)]


def _attention_mask(report: dict) -> str | None:
    """The mask attention sits on (the most mass, >= SITS), else the one it leans to (the
    most mass per position, >= LEANS x uniform), else None: spread or outside the masks."""
    if not report["masks"]:
        return None
    masses, share = _on(report, "attention")["masks"], report["mask_share"]
    top = max(masses, key=masses.get)
    if _sits(masses[top], share[top]):
        return top
    lift = {name: masses[name] / share[name] for name in masses if share[name] > 0}
    leaning = max(lift, key=lift.get, default=None)
    return leaning if leaning is not None and lift[leaning] >= LEANS else None


def _where_attention_sits(report: dict, sitting: str | None) -> str:
    if not report["masks"]:
        return ("No masks were given for these samples, so where the attention weights sit "
                "is not judged against a ground truth.")
    main = _on(report, "attention")
    listing = _listing(main)
    if _masks_on(report) == "heldout":
        probe = report["attention"]["probe"]["masks"] if "probe" in report["attention"] else None
        where = "held-out samples"
    else:
        probe, where = None, "the probe batch (the held-out samples have no masks)"
    if sitting is not None and _sits(main["masks"][sitting], report["mask_share"][sitting]):
        also = f"probe batch: {probe[sitting]:.2f}; " if probe is not None else ""
        return (f"Attention weights sit on the {_place(report, sitting)}: "
                f"{main['masks'][sitting]:.2f} of their mass on {where} ({also}{listing}).")
    if sitting is not None:
        return (f"Attention weights lean to the {_place(report, sitting)} ({listing}; uniform "
                f"attention would give it {report['mask_share'][sitting]:.2f}), but no mask "
                "holds most of it.")
    if _sits(main["outside"], 1.0 - sum(report["mask_share"].values())):
        return f"Attention weights sit mostly outside the masks ({listing})."
    return (f"Attention weights are spread: no mask gets much more than uniform attention would "
            f"({listing}).")


def _attribution(report: dict, sitting: str | None, carrier: str | None) -> list[str]:
    if not report["masks"]:
        return []
    ig, gxi = _on(report, "integrated_gradients"), _on(report, "gradient_x_input")
    parts = {**ig["masks"], "outside the masks": ig["outside"]}
    top = max(parts, key=parts.get)
    where = "outside the masks" if top == "outside the masks" else f"on the {top} inputs"
    blind = [name for name, share in report.get("mask_zero_inputs", {}).items() if share >= 0.99]
    sentences = [
        f"Inputs that move the prediction: integrated gradients put the most attribution "
        f"{where} ({_listing(ig)}); gradient x input gives {_listing(gxi)}"
        + (f" (it cannot credit the {', '.join(blind)} inputs: they are 0)" if blind else "")
        + "."
    ]
    error = report["integrated_gradients"].get("completeness_error")
    if error is not None and error > COMPLETE:
        sentences.append(
            f"Integrated gradients miss completeness by {100 * error:.0f} %: raise --steps "
            "before trusting them."
        )
    attention = _on(report, "attention")["masks"]
    if carrier is not None:
        sentences.append(
            f"The {carrier} inputs carry more of the attribution than of the attention: "
            f"{ig['masks'][carrier]:.2f} of integrated gradients and "
            f"{gxi['masks'][carrier]:.2f} of gradient x input, against "
            f"{attention[carrier]:.2f} of the attention."
        )
    elif sitting is not None and top == sitting:
        sentences.append(
            f"Attribution agrees that the {sitting} inputs, where attention sits, are the ones "
            "that matter most."
        )
    return sentences


def _carrier(report: dict, sitting: str | None) -> str | None:
    """A mask other than the attended one whose inputs carry attribution beyond attention."""
    if report["integrated_gradients"] is None or not report["masks"]:
        return None
    ig = _on(report, "integrated_gradients")["masks"]
    gxi = _on(report, "gradient_x_input")["masks"]
    attention = _on(report, "attention")["masks"]
    candidates = [
        name for name in attention
        if name != sitting
        and ig[name] >= max(CARRIER_RATIO * attention[name], attention[name] + CARRIER_MARGIN)
        and gxi[name] >= CARRIER_RATIO * attention[name]
    ]
    return max(candidates, key=lambda name: ig[name] - attention[name], default=None)


def _agreement(report: dict) -> str:
    tau = report["integrated_gradients"]["heldout"]["tau_b"]
    tau_gxi = report["gradient_x_input"]["heldout"]["tau_b"]
    if tau is None:
        return "Attention and attribution cannot be compared: the rows are constant."
    how = ("alike" if tau >= AGREE else "only partly alike" if tau >= PARTLY
           else "differently")
    other = "" if tau_gxi is None else f"; with gradient x input {tau_gxi:.2f}"
    return (f"Attention and attribution rank the positions {how} (Kendall tau_b with "
            f"integrated gradients {tau:.2f}{other}).")


def _faithfulness(report: dict) -> list[str]:
    """Input erasure: about the inputs at the attended positions, not the encoder states."""
    faith = report["faithfulness"]
    k, erase = faith["k"], faith["erase_value"]
    top, random = faith["comprehensiveness"]["top"], faith["comprehensiveness"]["random"]
    kept, kept_random = faith["sufficiency"]["top"], faith["sufficiency"]["random"]
    spread = faith["target_std"]
    where = "position" if k == 1 else "positions"
    inputs = "the input there" if k == 1 else "the inputs there"
    matters = _matters(faith)
    if matters:
        judgement = f"{inputs} matter{'s' if k == 1 else ''} to the prediction"
    elif top > random:
        judgement = f"{inputs} matter{'s' if k == 1 else ''} only a little more than random ones"
    else:
        judgement = f"{inputs} matter{'s' if k == 1 else ''} no more than random ones"
    erased = f"set to {erase:.3g}" + (", the probe's mean" if report.get(
        "erase_value_source") == "the probe's mean" else "")
    sentences = [
        f"Erasing the input at the top-{k} attended {where} ({erased}) changes the "
        f"prediction by {top:.2f} on average, against {random:.2f} for {k} random "
        f"{where}: {judgement}."
    ]
    alone = (f"keeping only the input{'s' if k > 1 else ''} at the top-{k} attended {where} "
             f"(the rest set to {erase:.3g}) changes it by {kept:.2f} (random: {kept_random:.2f}; "
             f"targets spread {spread:.2f} std)")
    if _rests_on_attended_inputs(faith):
        sentences.append(f"{inputs[:1].upper()}{inputs[1:]} {'is' if k == 1 else 'are'} also "
                         f"sufficient: {alone}, so the prediction rests on "
                         f"{'that input' if k == 1 else 'those inputs'} alone.")
    elif matters:
        sentences.append(f"But {inputs} alone {'is' if k == 1 else 'are'} not sufficient: "
                         f"{alone}, so the prediction also uses other inputs.")
    return sentences


def _rests_on_attended_inputs(faith: dict) -> bool:
    """The inputs at the attended positions matter, and alone they suffice."""
    return _matters(faith) and faith["sufficiency"]["top"] < SUFFICIENT * faith["target_std"]


def _matters(faith: dict) -> bool:
    """Erasing the top-k changes the prediction clearly more than erasing k random ones."""
    top, random = faith["comprehensiveness"]["top"], faith["comprehensiveness"]["random"]
    return top >= MATTERS * random and top >= NOTICEABLE * faith["target_std"]


def _baselines(report: dict) -> list[str]:
    """About the predictions: the error against the baselines, and what it has learned."""
    base = report["baselines"]
    loss, val_loss = base["heldout_loss"], base["val_loss"]
    predictors = base["predictors"]
    measured = f"Held-out {_label(report)} {loss:.3g}" + (
        f" (val_loss {val_loss:.3g})" if val_loss is not None else "")
    comparisons = "; ".join(f"{_ratio(p):.2f}x the {p['name']} predictor's {p['loss']:.3g}"
                            for p in predictors)
    sentences = [f"{measured}: {comparisons}." if predictors else f"{measured}."]
    state, judged = learning(report)
    sentences.append(judged)
    if (report["task"] is None and state != "not judged"
            and all(p["name"] == "mean" for p in predictors)):
        sentences.append(
            "Without a task there is no shortcut to compare with, so whether it learned a "
            "shortcut instead of the task is not judged: pass --baseline NAME=MSE with a "
            "shortcut predictor's held-out loss.")
    return sentences


def _interventions(report: dict, sitting: str | None, found: dict[str, dict]) -> list[str]:
    """About the predictions with the attention weights replaced, the rest of the model as
    trained: whether it needs its attention, whether attention where a mask says would do
    better, what the states at the attended mask carry, and whether a very different
    attention predicts as well."""
    if "learned" not in found:
        return []
    sentences = [_needs(report, found)]
    states = _states(report, sitting, found)
    sentences += states
    shown = {sitting} if states else set()
    masks = [name for name in report["masks"] if f"mask:{name}" in found and name not in shown]
    if masks:
        entries = {name: found[f"mask:{name}"] for name in masks}
        parts = [f"{_spread_on(report, name)} gives held-out {_label(report)} "
                 f"{entry['loss']:.3g} ({_vs_learned(report, entry)}): "
                 f"{_better_or_worse(report, entry)}" for name, entry in entries.items()]
        joined = "; ".join(parts)
        sentences.append(joined[:1].upper() + joined[1:] + ".")
    if "adversarial" in found:
        sentences.append(_adversarial(report, found["adversarial"]))
    return sentences


def _needs(report: dict, found: dict) -> str:
    learned, uniform, permuted = found["learned"], found["uniform"], found["permuted"]
    head = "Replacing the attention weights, the rest of the model as trained, shows"
    if _near_zero(report, learned["loss"], uniform["loss"]):
        permuted_too = ("" if not _near_zero(report, permuted["loss"]) else
                        f"; randomly permuted, {permuted['loss']:.3g}, near zero too")
        return (f"{head} that the model does not need the attention it learned: its held-out "
                f"{_label(report)} is {learned['loss']:.3g} with the learned weights and "
                f"{uniform['loss']:.3g} with uniform ones: both losses are near zero (at most "
                f"the noise floor {_floor(report):.2g}, {_floor_basis(report)}), so no ratio of "
                f"them is read{permuted_too}. Spread evenly, the weights predict as well, so "
                "their pattern says little about the predictions.")
    mean = _mean_predictor(report)
    worse_than_mean = mean is not None and uniform["loss"] > mean["loss"]
    measured = (
        f"with uniform attention its held-out {_label(report)} is {uniform['loss']:.3g}, "
        f"{_vs_learned(report, uniform)}"
        + (f" and worse than predicting the mean ({mean['loss']:.3g})" if worse_than_mean
           else "")
        + f"; with randomly permuted attention {permuted['loss']:.3g} ± "
        f"{permuted['loss_spread']:.2g} ({_times(report, permuted)}, {permuted['draws']} "
        "draws)")
    ratios = [_effective(report, uniform), _effective(report, permuted)]
    if min(ratios) >= NEEDS:
        return f"{head} the model needs its attention: {measured}."
    if ratios[0] < IGNORES:
        return (f"{head} the model does not need the attention it learned: {measured}: spread "
                "evenly, the weights predict about as well, so their pattern says little about "
                "the predictions.")
    return f"{head} the model needs its attention only partly: {measured}."


def _states(report: dict, sitting: str | None, found: dict) -> list[str]:
    """About the states at the attended mask, from all attention on it (temporal attention:
    one row a sample, so the states there are all the layer reads)."""
    measured = _all_on_attended(report, sitting, found)
    if measured is None:
        return []
    entry, reference = measured
    place = _place(report, sitting)
    states = "state" if place.endswith("position") else "states"
    ratio = entry["loss"] / max(reference["loss"], _floor(report))
    learned = found["learned"]["loss"]
    head = (f"With all attention on the {place}" + ("" if states == "state" else
                                                    " (spread evenly)")
            + f", its held-out {_label(report)} is {entry['loss']:.3g} ("
            f"{_vs_learned(report, entry)}; {ratio:.2f}x the {reference['name']} predictor's)")
    if ratio < LEARNED:
        cost = (" The learned attention weights, the one thing this changes, cost the "
                "difference." if entry["loss"] < FORCED_GAIN * learned else "")
        return [head + f": the encoder {states} there carr{'ies' if states == 'state' else 'y'}"
                f" what the task needs." + cost]
    return [head + f": the encoder {states} there carr{'ies' if states == 'state' else 'y'} "
            "no more than that predictor uses."]


def _adversarial(report: dict, entry: dict) -> str:
    budget = (f"{entry['steps']} Adam steps on the attention logits of {entry['samples']} "
              "samples")
    within = (f"within {entry['tolerance']:.2g} of the learned predictions "
              f"({100 * entry['tolerance_share']:.0f} % of their spread)")
    different = f"JSD >= {entry['very_different']:g} from the learned, at most ln 2 = 0.69"
    measured = (f"mean JSD {entry['jsd']:.2f}; on those {entry['samples']} held-out samples "
                f"{_label(report)} {entry['loss']:.3g} against the learned "
                f"{entry['learned_loss']:.3g} on the same samples")
    if entry["far"] >= ALTERNATIVES and _effective(report, entry) > WORSE:
        return (f"A very different attention keeps the prediction {within} for "
                f"{100 * entry['far']:.0f} % of the samples, yet predicts worse: a search "
                f"({budget}) found attention that is very different ({different}), and its "
                f"loss is {_vs_learned(report, entry)} ({measured}). The tolerance lets "
                "each prediction move; the learned attention is still the better one.")
    if entry["far"] >= ALTERNATIVES:
        return (f"A very different attention predicts just as well for "
                f"{100 * entry['far']:.0f} % of the samples: a search ({budget}) found, for "
                f"each of them, attention that is very different ({different}) and keeps the "
                f"prediction {within}. For those samples the heatmap is one of many attentions "
                f"that give the prediction, so by itself it does not explain it ({measured}).")
    return (f"No very different attention predicts as well, as far as a search ({budget}) can "
            f"tell: it found one ({different}) that keeps the prediction {within} for only "
            f"{100 * entry['far']:.0f} % of the samples, so the predictions are tied to this "
            f"attention pattern ({measured}).")


def _mean_predictor(report: dict) -> dict | None:
    return next((p for p in report["baselines"]["predictors"] if p["name"] == "mean"), None)


def _shortcut(report: dict) -> dict | None:
    """The first predictor other than the mean: the task's shortcut, or one --baseline gave."""
    return next((p for p in report["baselines"]["predictors"] if p["name"] != "mean"), None)


def _reference(report: dict) -> dict | None:
    """The baseline that a learned model beats clearly: the shortcut, else the mean."""
    shortcut = _shortcut(report)
    return shortcut if shortcut is not None else _mean_predictor(report)


def _all_on_attended(report: dict, sitting: str | None,
                     found: dict[str, dict]) -> tuple[dict, dict] | None:
    """(all attention on the attended mask, the baseline its loss is judged by), where that
    intervention measures what the states on the mask carry: temporal attention and a
    baseline with a loss; else None."""
    entry, reference = found.get(f"mask:{sitting}"), _reference(report)
    if (sitting is None or entry is None or reference is None or reference["loss"] <= 0
            or not _temporal(report)):
        return None
    return entry, reference


def _state_carries(report: dict, sitting: str | None, carrier: str,
                   found: dict[str, dict]) -> bool:
    """Attention on A, attribution on B before A (either side if bidirectional), and the
    state at A measured to carry what the task needs (all attention on A beats the
    shortcut clearly): the state at A carries what B contributes."""
    measured = _all_on_attended(report, sitting, found)
    if measured is None or not _sits(_on(report, "attention")["masks"][sitting],
                                     report["mask_share"][sitting]):
        return False
    entry, reference = measured
    order = report["mask_order"]
    before = order[carrier][sitting] >= BEFORE
    after = order[sitting][carrier] >= BEFORE
    placed = before or (report["bidirectional"] and after)
    return placed and entry["loss"] < LEARNED * reference["loss"]


def _temporal(report: dict) -> bool:
    """One attention row a sample (not a map per head and query)."""
    return len(report["intervention_setup"]["shape"]) == 1


def _sits(mass: float, share: float) -> bool:
    """At least half the mass, and clearly more than uniform attention would put there."""
    return mass >= SITS and mass >= SITS_LIFT * share


def _ratio(predictor: dict) -> float:
    """Model loss / predictor loss; an exact predictor (ratio None) is never beaten."""
    return _value(predictor["ratio"])


def _floor(report: dict) -> float:
    """The loss at or below which a loss is near zero (0 for a report that has none)."""
    return report["baselines"].get("noise_floor") or 0.0


def _floor_basis(report: dict) -> str:
    return ("1e-3 of the held-out targets' variance" if loss_label(report) == "MSE" else
            "1e-3 in the loss's units")


def _near_zero(report: dict, *losses: float) -> bool:
    return all(loss <= _floor(report) for loss in losses)


def _learned_loss(report: dict, entry: dict) -> float:
    """The learned loss on the samples `entry` was measured on."""
    learned = entry.get("learned_loss")
    if learned is None:
        learned = next(e["loss"] for e in report["interventions"] if e["name"] == "learned")
    return learned


def _effective(report: dict, entry: dict) -> float:
    """An intervention's loss over the learned one (measured on the same samples), the
    learned taken at the noise floor at least: a ratio of two near-zero losses is noise."""
    reference = max(_learned_loss(report, entry), _floor(report))
    if reference <= 0:
        return 1.0 if entry["loss"] <= 0 else float("inf")
    return entry["loss"] / reference


def _value(ratio: float | None) -> float:
    return float("inf") if ratio is None else ratio


# ---- wording -------------------------------------------------------------------------------


def loss_label(report: dict) -> str:
    """'MSE', or the name of the model's own loss."""
    name = report["baselines"]["loss"]
    return "MSE" if name in MSE_NAMES else name


def _label(report: dict) -> str:
    """'MSE', or 'loss (NAME)' for the model's own loss."""
    label = loss_label(report)
    return label if label == "MSE" else f"loss ({label})"


def _times(report: dict, entry: dict) -> str:
    """'13x' or '0.23x': an intervention's loss over the learned (at least the noise floor)."""
    ratio = _effective(report, entry)
    return f"{ratio:.2g}x" if ratio < 10 else f"{ratio:.0f}x"


def _vs_learned(report: dict, entry: dict) -> str:
    """'13x the learned 0.789', or against the noise floor when the learned is below it."""
    learned = _learned_loss(report, entry)
    if learned < _floor(report):
        return (f"{_times(report, entry)} the noise floor {_floor(report):.2g}, the learned "
                f"{learned:.3g} being below it")
    return f"{_times(report, entry)} the learned {learned:.3g}"


def _better_or_worse(report: dict, entry: dict) -> str:
    if _near_zero(report, entry["loss"], _learned_loss(report, entry)):
        return "about as good: both losses are near zero"
    ratio = _effective(report, entry)
    return "better" if ratio < BETTER else "worse" if ratio > WORSE else "about as good"


def _place(report: dict, mask: str) -> str:
    """'delimiter position' or 'prefix positions', by the mask's mean size."""
    size = report["mask_share"][mask] * report["seq_len"]
    return f"{mask} position" if size <= 1.05 else f"{mask} positions"


def _spread_on(report: dict, mask: str) -> str:
    """'all attention on the delimiter position' or 'attention spread evenly over the prefix
    positions'."""
    place = _place(report, mask)
    return (f"all attention on the {place}" if place.endswith("position")
            else f"attention spread evenly over the {place}")


def _listing(masses: dict) -> str:
    parts = [f"{name} {value:.2f}" for name, value in masses["masks"].items()]
    return ", ".join([*parts, f"outside the masks {masses['outside']:.2f}"])
