"""Plain-words verdict composed from an explain report's numbers (pure Python, no TensorFlow).

Every sentence is chosen by a threshold on a number of the report (the constants below,
explained in docs/explain.md), and quotes the numbers it rests on, so the verdict of any run
follows its measurements rather than its task. Worked example, the founding case:

    attention mass delimiter 0.85     -> "Attention sits on the delimiter position ..."
    IG mass prefix 0.33 vs attn 0.11  -> "The prefix inputs carry more of the attribution ..."
    lstm, prefix before delimiter     -> "... the recurrent state at the delimiter position
                                           carries what the prediction needs from the prefix"
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
CLEARLY, JUST = 0.5, 0.75  # model MSE / baseline MSE: clearly beaten, beaten only just
COMPLETE = 0.05  # integrated gradients off completeness by more than 5 %: say so


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
        if carrier is not None and _state_carries(report, sitting, carrier):
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
        return (f"Attention sits on the {_place(report, sitting)}: "
                f"{heldout['masks'][sitting]:.2f} of its mass on held-out samples "
                f"(probe batch: {probe['masks'][sitting]:.2f}; {listing}).")
    if sitting is not None:
        return (f"Attention leans to the {_place(report, sitting)} ({listing}; uniform "
                f"attention would give it {report['mask_share'][sitting]:.2f}), but no mask "
                "holds most of it.")
    if _sits(heldout["outside"], 1.0 - sum(report["mask_share"].values())):
        return f"Attention sits mostly outside the task's masks ({listing})."
    return f"Attention is spread: no mask gets much more than uniform attention would ({listing})."


def _attribution(report: dict, sitting: str | None) -> list[str]:
    ig, gxi = report["integrated_gradients"]["heldout"], report["gradient_x_input"]["heldout"]
    parts = {**ig["masks"], "outside the masks": ig["outside"]}
    top = max(parts, key=parts.get)
    where = "outside the masks" if top == "outside the masks" else f"on the {top} inputs"
    blind = [name for name, share in report.get("mask_zero_inputs", {}).items() if share >= 0.99]
    sentences = [
        f"The inputs that move the prediction: integrated gradients put the most attribution "
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
    faith = report["faithfulness"]
    k, erase = faith["k"], faith["erase_value"]
    top, random = faith["comprehensiveness"]["top"], faith["comprehensiveness"]["random"]
    kept, kept_random = faith["sufficiency"]["top"], faith["sufficiency"]["random"]
    spread = faith["target_std"]
    noun = "position" if k == 1 else f"{k} positions"
    matters = _matters(faith)
    if matters:
        judgement = "the attended positions matter to the prediction"
    elif top > random:
        judgement = "the attended positions matter only a little more than random ones"
    else:
        judgement = "the attended positions matter no more than random ones"
    sentences = [
        f"Erasing the top-{k} attended {noun.split()[-1]} (set to {erase:g}) changes the "
        f"prediction by {top:.2f} on average, against {random:.2f} for {k} random "
        f"{noun.split()[-1]}: {judgement}."
    ]
    alone = (f"keeping only the top-{k} (the rest set to {erase:g}) changes it by {kept:.2f} "
             f"(random: {kept_random:.2f}; targets spread {spread:.2f} std)")
    if matters and kept < SUFFICIENT * spread:
        sentences.append(f"They are also sufficient: {alone}, so the prediction rests on those "
                         "inputs alone.")
    elif matters:
        sentences.append(f"But they are not sufficient: {alone}, so the prediction also needs "
                         "inputs attention does not look at.")
    return sentences


def _matters(faith: dict) -> bool:
    """Erasing the top-k changes the prediction clearly more than erasing k random ones."""
    top, random = faith["comprehensiveness"]["top"], faith["comprehensiveness"]["random"]
    return top >= MATTERS * random and top >= NOTICEABLE * faith["target_std"]


def _baselines(report: dict) -> list[str]:
    base = report["baselines"]
    mse, val_loss = base["heldout_mse"], base["val_loss"]
    predictors = base["predictors"]
    measured = f"Held-out MSE {mse:.3g}" + (
        f" (val_loss {val_loss:.3g})" if val_loss is not None else "")
    comparisons = "; ".join(f"{_ratio(p):.2f}x the {p['name']} predictor's {p['mse']:.3g}"
                            for p in predictors)
    sentences = [f"{measured}: {comparisons}." if predictors else f"{measured}."]
    mean = next((p for p in predictors if p["name"] == "mean"), None)
    learned = mean is None or _ratio(mean) < CLEARLY
    if mean is not None and _ratio(mean) >= 1:
        sentences.append("The model has not beaten the mean predictor: it has not learned "
                         "the task, so its attention says little yet.")
    elif not learned:
        sentences.append(f"The model beats the mean predictor only partly ({_ratio(mean):.2f}x): "
                         "it has not learned the task well yet.")
    for shortcut in (p for p in predictors if p["name"] != "mean"):
        ratio = _ratio(shortcut)
        if ratio >= 1 and learned:
            sentences.append(
                f"SHORTCUT: the model has not beaten the shortcut '{shortcut['name']}' "
                f"({shortcut['description']}); it has most likely learned that instead of "
                "the task.")
        elif ratio >= 1:
            sentences.append(f"It has not beaten the shortcut '{shortcut['name']}' either.")
        elif ratio >= JUST:
            sentences.append(
                f"It beats the shortcut '{shortcut['name']}' only just ({ratio:.2f}x): so far "
                "it has learned little beyond it (train longer).")
        elif ratio >= CLEARLY:
            sentences.append(f"It beats the shortcut '{shortcut['name']}', partly "
                             f"({ratio:.2f}x).")
        else:
            sentences.append(f"It beats the shortcut '{shortcut['name']}' clearly "
                             f"({ratio:.2f}x).")
    return sentences


def _state_carries(report: dict, sitting: str | None, carrier: str) -> bool:
    """Attention on A, attribution on B before A (either side if bidirectional), A matters,
    and the model beats every baseline: the state at A must carry what B contributes."""
    if sitting is None or not _sits(report["attention"]["heldout"]["masks"][sitting],
                                    report["mask_share"][sitting]):
        return False
    order = report["mask_order"]
    before = order[carrier][sitting] >= BEFORE
    after = order[sitting][carrier] >= BEFORE
    placed = before or (report["bidirectional"] and after)
    beaten = all(_ratio(p) < 1 for p in report["baselines"]["predictors"])
    return placed and _matters(report["faithfulness"]) and beaten


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
