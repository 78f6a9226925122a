"""What each head of a run became, when, and whether they make an induction circuit (numpy
only). Reads every recorded epoch of every multi-head self-attention layer; formulas and
the rules below are in docs/heads.md.

    formed     the first recorded epoch from which a head keeps its final label, with its
               number at or past the label's threshold, through the last epoch
    loss drop  the first epoch whose training loss is at or below the midpoint of the first
               epoch's loss and the last one's
    circuit    an induction head in a layer after a previous-token head: an induction
               circuit. An induction head with no previous-token head before it, whose
               attention one fixed offset explains: a positional shortcut (a period the
               data repeats with), not induction.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from attnviz.analysis import structural
from attnviz.analysis.heads import PEAKED, default_gate, first_held, label_bound, label_rows
from attnviz.errors import AttnvizError
from attnviz.store.layers import MULTI_HEAD


@dataclass(frozen=True)
class Head:
    layer: str
    index: int  # the layer's position among the run's multi-head layers (0 first)
    head: int
    label: str  # at the last recorded epoch
    value: float  # the number it rests on
    formed: int | None  # the epoch from which it held through the last; None: it never
    # held, or it is mixed (no threshold to hold)
    offset: int | None  # the relative key position its attention peaks at (q + offset)
    offset_mass: float  # the mass on that one offset, over the queries that have it

    @property
    def name(self) -> str:
        return f"{self.layer} head {self.head}"

    def to_json(self) -> dict:
        return {"layer": self.layer, "head": self.head, "label": self.label,
                "value": round(self.value, 6), "formed": self.formed, "offset": self.offset,
                "offset_mass": round(self.offset_mass, 6)}


@dataclass(frozen=True)
class Circuits:
    epochs: list[int]
    heads: list[Head]  # every head of every multi-head layer, layer by layer
    loss_drop: int | None
    kind: str  # "induction circuit", "positional shortcut", "induction head" or "none"
    verdict: str  # one sentence that names the heads
    axis: str = "epoch"  # what epochs, formed and loss_drop count: "step" by steps

    def to_json(self) -> dict:
        return {"axis": self.axis, "epochs": self.epochs, "loss_drop": self.loss_drop,
                "kind": self.kind,
                "verdict": self.verdict, "heads": [head.to_json() for head in self.heads]}


def best_offset(weights: np.ndarray, padding: np.ndarray | None = None) -> tuple[
        np.ndarray, np.ndarray]:
    """Per head of (n, H, L, L) weights: the relative offset d (key q + d, |d| >= 2) that
    holds the most mass, averaged over the queries whose key q + d exists, and that mass."""
    n, heads, length, _ = weights.shape
    real = np.ones((n, length), bool) if padding is None else np.asarray(padding, bool)
    best = np.zeros(heads, int)
    mass = np.zeros(heads)
    for offset in [*range(-(length - 1), -1), *range(2, length)]:
        band = np.diagonal(weights, offset=offset, axis1=2, axis2=3)  # (n, H, L - |d|)
        queries = real[:, max(0, -offset):length - max(0, offset)]  # the queries q with key q+d
        count = queries.sum()
        if not count:
            continue
        value = (band * queries[:, None, :]).sum(axis=(0, 2)) / count
        better = value > mass
        best[better], mass[better] = offset, value[better]
    return best, mass


def loss_drop(points: dict[int, float | None]) -> int | None:
    """The first point (epoch, or step) whose training loss is at or below the midpoint of
    the first and last losses; None with fewer than two losses or a loss that did not fall."""
    losses = [(point, loss) for point, loss in points.items() if loss is not None]
    if len(losses) < 2 or not losses[-1][1] < losses[0][1]:
        return None
    middle = (losses[0][1] + losses[-1][1]) / 2
    return next(epoch for epoch, loss in losses if loss <= middle)


def run_circuits(run) -> Circuits:
    """The heads of every multi-head self-attention layer of `run`, over its recorded epochs."""
    layers = [layer for layer in run.layers if layer["kind"] == MULTI_HEAD
              and len(layer["shape"]) == 4 and layer["shape"][2] == layer["shape"][3]]
    if not layers:
        raise AttnvizError(f"{run.root} records no multi-head self-attention: its heads have "
                           "no labels (inspect and score show what it recorded)")
    epochs = run.points
    if not epochs:
        raise AttnvizError(f"{run.root}: no attention recorded yet: train it first")
    if run.layer_info(layers[0]["name"]).get("record_heads") == "mean":
        raise AttnvizError(f"{run.root} recorded only the mean of its heads (--record-heads "
                           "mean): each head's story needs every head")
    tokens = structural.probe_tokens(run.probe.x)
    padding = structural.probe_padding(run.probe.x)
    heads = []
    for index, layer in enumerate(layers):
        rows, last = [], None
        for _, weights in run.iter_points(epochs, layer["name"]):
            rows.append(label_rows(weights, tokens, padding))
            last = weights
        offsets, masses = best_offset(last, padding)
        for head in range(layer["shape"][1]):
            final = rows[-1][head]
            label = final["label"]
            bound = label_bound(label)
            gate = default_gate(label)
            held = [epoch[head]["label"] == label and (
                epoch[head]["value"] >= gate if bound == "min" else epoch[head]["value"] <= gate)
                for epoch in rows]
            formed = None if label == "mixed" else first_held(epochs, held)
            heads.append(Head(layer["name"], index, head, label, final["value"], formed,
                              int(offsets[head]), float(masses[head])))
    losses = run.point_losses() if run.axis == "step" else {
        h["epoch"]: h.get("loss") for h in run.history}
    drop = loss_drop(losses)
    kind, verdict = _verdict(heads, drop, run.axis)
    return Circuits(list(epochs), heads, drop, kind, verdict, run.axis)


def _verdict(heads: list[Head], drop: int | None, axis: str = "epoch") -> tuple[str, str]:
    induction = [h for h in heads if h.label == "induction"]
    previous = [h for h in heads if h.label == "previous-token"]
    after_drop = "" if drop is None else f"; the loss dropped at {axis} {drop}"
    names = functools.partial(_names, axis=axis)

    if not induction:
        return "none", ("no induction head: no head attends to the token after an earlier "
                        "copy of its own (induction mass >= 0.5)" + after_drop)
    fed = [h for h in induction if any(p.index < h.index for p in previous)]
    if fed:
        feeding = [p for p in previous if p.index < min(h.index for h in fed)]
        return "induction circuit", (
            f"induction circuit: previous-token {names(feeding, 'prev')} feed induction "
            f"{names(fed, 'induction')}{after_drop}")
    fixed = [h for h in induction if h.offset_mass >= PEAKED and h.offset < 0]
    if fixed:
        offsets = sorted({-h.offset for h in fixed})
        return "positional shortcut", (
            f"positional shortcut, not an induction circuit: {names(fixed, 'induction')} "
            f"look a fixed {' or '.join(map(str, offsets))} positions back "
            f"({', '.join(f'{h.offset_mass:.2f}' for h in fixed)} of their attention), which "
            "lands on the token after the earlier copy only because the data repeat with that "
            "period; no earlier layer has a previous-token head" + after_drop)
    return "induction head", (
        f"induction {names(induction, 'induction')}, with no previous-token head in an "
        "earlier layer: they find the earlier copy some other way" + after_drop)


def _names(heads: list[Head], number: str, axis: str = "epoch") -> str:
    """'attention_0 heads 2, 3 (prev 0.83, 0.89; formed at epoch 7)', layer by layer."""
    parts = []
    for layer in dict.fromkeys(head.layer for head in heads):
        group = [head for head in heads if head.layer == layer]
        formed = sorted({head.formed for head in group if head.formed is not None})
        when = "" if not formed else f"; formed at {axis} {', '.join(map(str, formed))}"
        parts.append(f"{layer} head{'s' if len(group) > 1 else ''} "
                     f"{', '.join(str(head.head) for head in group)} ({number} "
                     f"{', '.join(f'{head.value:.2f}' for head in group)}{when})")
    return " and ".join(parts)
