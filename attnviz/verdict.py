"""Plain-words verdict composed from an explain report's numbers (pure Python, no TensorFlow).

Every sentence is chosen by a threshold on a number of the report (the constants below,
explained in docs/explain.md, with the runs they were set on), quotes the numbers it rests
on, and says what it is about: the attention weights, the inputs (attribution, erasure),
the encoder states (attention forced onto a mask) or the predictions (baselines). Worked
example, the founding case after 15 epochs:

    attention mass delimiter 0.85          -> "Attention weights sit on the delimiter ..."
    IG mass prefix 0.33 vs attention 0.10  -> "The prefix inputs carry more of the
                                               attribution than of the attention ..."
    MSE 0.89x the shortcut's, the prefix   -> "NOT LEARNED YET: ... no better than the
    inputs still needed                        shortcut ..., yet not the shortcut either"
    forced onto the delimiter: MSE 0.17    -> "The encoder state at the delimiter position
                                               carries what the task needs ..."
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
FORCED_GAIN = 0.5  # attention forced onto a mask halves the MSE: the trained weights cost it


def learning(report: dict) -> tuple[str, str]:
    """('learned' | 'shortcut' | 'not learned', the sentence that says so and why): what
    the model's predictions have learned, judged by its held-out MSE against the baselines."""
    predictors = report["baselines"]["predictors"]
    mean = next((p for p in predictors if p["name"] == "mean"), None)
    shortcut = next((p for p in predictors if p["name"] != "mean"), None)
    if mean is not None and _ratio(mean) >= 1:
        return "not learned", (
            f"NOT LEARNED YET: its predictions are no better than the mean predictor's "
            f"({_ratio(mean):.2f}x its MSE): it has learned nothing yet (train longer), so its "
            "attention says little.")
    if shortcut is None:
        if mean is None:  # every task of attnviz.tasks has one; a report without is not judged
            return "not learned", "NOT LEARNED YET, as far as can be told: no baseline to judge by."
        if _ratio(mean) < MEAN_LEARNED:
            return "learned", (
                f"LEARNED: its predictions beat the mean predictor clearly ({_ratio(mean):.2f}x "
                f"its MSE; below {MEAN_LEARNED}x counts as learned), and the task has no known "
                "shortcut.")
        return "not learned", (
            f"NOT LEARNED YET: its predictions beat the mean predictor only partly "
            f"({_ratio(mean):.2f}x its MSE; below {MEAN_LEARNED}x counts as learned): train "
            "longer.")
    ratio, name = _ratio(shortcut), f"'{shortcut['name']}'"
    if ratio < LEARNED:
        return "learned", (
            f"LEARNED: its predictions beat the shortcut {name} clearly ({ratio:.2f}x its MSE; "
            f"below {LEARNED}x counts as learned): it has learned the task, not the shortcut.")
    if ratio >= NOT_YET:
        return "not learned", (
            f"NOT LEARNED YET: its predictions are worse than even the shortcut {name} "
            f"({ratio:.2f}x its MSE): it has learned neither the task nor the shortcut yet "
            "(train longer).")
    if _rests_on_attended_inputs(report["faithfulness"]):
        return "shortcut", (
            f"SHORTCUT: its predictions are about as good as the shortcut {name} and not clearly "
            f"better ({ratio:.2f}x its MSE), and they rest on the attended inputs alone: it has "
            f"most likely learned that shortcut instead of the task "
            f"({shortcut['description']}).")
    return "not learned", (
        f"NOT LEARNED YET: its predictions are not clearly better than the shortcut {name} "
        f"({ratio:.2f}x its MSE; below {LEARNED}x counts as learned), yet they use inputs "
        "beyond the attended ones, so it has not learned the shortcut either: train longer.")


def compose(report: dict) -> list[str]:
    """The verdict as a list of sentences, most important first."""
    attention = report["attention"]["heldout"]
    sitting = _attention_mask(report)
    sentences = [_where_attention_sits(report, sitting)]
    sentences += _attribution(report, sitting)
    sentences.append(_agreement(report))
    sentences += _faithfulness(report)
    sentences += _baselines(report)
    carrier = _carrier(report, sitting)
    if report["recurrent"]:
        sentences.append(
            "Attention over recurrent states weighs states, not inputs: the state at position "
            "t summarises the inputs <= t" + (" and > t (bidirectional)" if
                                              report["bidirectional"] else "") + "."
        )
    sentences += _forced(report, sitting)
    if report["recurrent"] and carrier is not None and _state_carries(report, sitting, carrier):
        sentences.append(
            f"So the recurrent state at the {_place(report, sitting)} carries what the "
            f"prediction needs from the {carrier} inputs "
            + ("around it" if report["bidirectional"] else "before it")
            + f", though attention puts only {attention['masks'][carrier]:.2f} of its mass on "
            f"those inputs themselves. The target here: {report['target']}."
        )
    return [sentence for sentence in sentences if sentence]


# ---- the parts -----------------------------------------------------------------------------


def _attention_mask(report: dict) -> str | None:
    """The mask attention sits on (the most mass, >= SITS), else the one it leans to (the
    most mass per position, >= LEANS x uniform), else None: spread or outside the masks."""
    masses, share = report["attention"]["heldout"]["masks"], report["mask_share"]
    if not masses:
        return None
    top = max(masses, key=masses.get)
    if _sits(masses[top], share[top]):
        return top
    lift = {name: masses[name] / share[name] for name in masses if share[name] > 0}
    leaning = max(lift, key=lift.get, default=None)
    return leaning if leaning is not None and lift[leaning] >= LEANS else None


def _where_attention_sits(report: dict, sitting: str | None) -> str:
    heldout, probe = report["attention"]["heldout"], report["attention"]["probe"]
    listing = _listing(heldout)
    if sitting is not None and _sits(heldout["masks"][sitting], report["mask_share"][sitting]):
        return (f"Attention weights sit on the {_place(report, sitting)}: "
                f"{heldout['masks'][sitting]:.2f} of their mass on held-out samples "
                f"(probe batch: {probe['masks'][sitting]:.2f}; {listing}).")
    if sitting is not None:
        return (f"Attention weights lean to the {_place(report, sitting)} ({listing}; uniform "
                f"attention would give it {report['mask_share'][sitting]:.2f}), but no mask "
                "holds most of it.")
    if _sits(heldout["outside"], 1.0 - sum(report["mask_share"].values())):
        return f"Attention weights sit mostly outside the task's masks ({listing})."
    return (f"Attention weights are spread: no mask gets much more than uniform attention would "
            f"({listing}).")


def _attribution(report: dict, sitting: str | None) -> list[str]:
    ig, gxi = report["integrated_gradients"]["heldout"], report["gradient_x_input"]["heldout"]
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
    carrier = _carrier(report, sitting)
    attention = report["attention"]["heldout"]["masks"]
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
    ig = report["integrated_gradients"]["heldout"]["masks"]
    gxi = report["gradient_x_input"]["heldout"]["masks"]
    attention = report["attention"]["heldout"]["masks"]
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
    sentences = [
        f"Erasing the input at the top-{k} attended {where} (set to {erase:g}) changes the "
        f"prediction by {top:.2f} on average, against {random:.2f} for {k} random "
        f"{where}: {judgement}."
    ]
    alone = (f"keeping only the input{'s' if k > 1 else ''} at the top-{k} attended {where} "
             f"(the rest set to {erase:g}) changes it by {kept:.2f} (random: {kept_random:.2f}; "
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
    mse, val_loss = base["heldout_mse"], base["val_loss"]
    predictors = base["predictors"]
    measured = f"Held-out MSE {mse:.3g}" + (
        f" (val_loss {val_loss:.3g})" if val_loss is not None else "")
    comparisons = "; ".join(f"{_ratio(p):.2f}x the {p['name']} predictor's {p['mse']:.3g}"
                            for p in predictors)
    return [f"{measured}: {comparisons}." if predictors else f"{measured}.", learning(report)[1]]


def _forced(report: dict, sitting: str | None) -> list[str]:
    """About the encoder states: the error with all attention forced onto the attended mask
    (measured with the model's own layers; temporal attention only)."""
    forced = report.get("forced_attention")
    if forced is None or sitting is None:
        return []
    mse, trained = forced["mse"][sitting], report["baselines"]["heldout_mse"]
    reference = _reference(report)
    place = _place(report, sitting)
    states = "state" if place.endswith("position") else "states"
    head = (f"With all attention forced onto the {place}"
            + ("" if states == "state" else " (spread evenly)")
            + f", the model's own layers give held-out MSE {mse:.3g} (as trained: {trained:.3g}")
    if reference is None:
        return [head + ")."]
    name, ratio = reference["name"], mse / reference["mse"] if reference["mse"] > 0 else None
    if ratio is None:
        return [head + ")."]
    if ratio < LEARNED:
        cost = (" The trained attention weights, the one thing forcing changes, cost the "
                "difference." if mse < FORCED_GAIN * trained else "")
        return [head + f"; {ratio:.2f}x the {name} predictor's): the encoder {states} there "
                f"carr{'ies' if states == 'state' else 'y'} what the task needs." + cost]
    return [head + f"; {ratio:.2f}x the {name} predictor's): the encoder {states} there "
            f"carr{'ies' if states == 'state' else 'y'} no more than that predictor uses."]


def _reference(report: dict) -> dict | None:
    """The baseline that a learned model beats clearly: the shortcut, else the mean."""
    predictors = report["baselines"]["predictors"]
    return next((p for p in predictors if p["name"] != "mean"),
                next((p for p in predictors if p["name"] == "mean"), None))


def _state_carries(report: dict, sitting: str | None, carrier: str) -> bool:
    """Attention on A, attribution on B before A (either side if bidirectional), and the
    state at A measured to carry what the task needs (attention forced onto A beats the
    shortcut clearly): the state at A carries what B contributes."""
    forced, reference = report.get("forced_attention"), _reference(report)
    if (sitting is None or forced is None or reference is None or reference["mse"] <= 0
            or not _sits(report["attention"]["heldout"]["masks"][sitting],
                         report["mask_share"][sitting])):
        return False
    order = report["mask_order"]
    before = order[carrier][sitting] >= BEFORE
    after = order[sitting][carrier] >= BEFORE
    placed = before or (report["bidirectional"] and after)
    return placed and forced["mse"][sitting] < LEARNED * reference["mse"]


def _sits(mass: float, share: float) -> bool:
    """At least half the mass, and clearly more than uniform attention would put there."""
    return mass >= SITS and mass >= SITS_LIFT * share


def _ratio(predictor: dict) -> float:
    """Model MSE / predictor MSE; an exact predictor (ratio None) is never beaten."""
    return float("inf") if predictor["ratio"] is None else predictor["ratio"]


# ---- wording -------------------------------------------------------------------------------


def _place(report: dict, mask: str) -> str:
    """'delimiter position' or 'prefix positions', by the mask's mean size."""
    size = report["mask_share"][mask] * report["seq_len"]
    return f"{mask} position" if size <= 1.05 else f"{mask} positions"


def _listing(masses: dict) -> str:
    parts = [f"{name} {value:.2f}" for name, value in masses["masks"].items()]
    return ", ".join([*parts, f"outside the masks {masses['outside']:.2f}"])
