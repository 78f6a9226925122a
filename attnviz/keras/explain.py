"""Why attention looks the way it does: attribution, faithfulness, baselines and interventions
of a run, a built-in task's or your own model's.

`explain_run` loads a checkpoint and measures, on the probe batch and a held-out batch:

    attention mass per mask         where the model looks
    attribution mass per mask       which inputs move the prediction (integrated gradients
                                    and gradient x input, both w.r.t. the input sequence)
    Kendall tau_b                   whether the two rank positions alike
    comprehensiveness, sufficiency  whether the inputs at the attended positions matter to
                                    the prediction
    baselines                       whether the model beat the mean predictor and the shortcut
    interventions                   the loss with the attention weights replaced (uniform,
                                    permuted, on each mask, argmax, adversarial): whether the
                                    model needs its attention, and would do better with
                                    attention elsewhere (attnviz.keras.interventions)

and returns a JSON-ready dict of numbers only; `attnviz.analysis.verdict.compose` turns it into
words. Attention is read and replaced only through `attnviz.keras.capture`. Inputs that are token
ids have no gradient: attribution and erasure are then not measured, and the report says so.
Formulas and thresholds are in docs/explain.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np

import attnviz.keras.capture as capture
import attnviz.keras.interventions as interventions
import attnviz.keras.models  # noqa: F401  (registers the layers the built-in tasks' checkpoints hold)
from attnviz.analysis import structural
from attnviz.analysis.score import attention_rows
from attnviz.analysis.tasks import get_task
from attnviz.analysis.verdict import MSE_NAMES, NOISE_FLOOR
from attnviz.errors import AttnvizError
from attnviz.keras.attribution import (
    IG_STEPS,
    completeness_error,
    gradient_x_input,
    integrated_gradients,
    l1_normalise,
    per_position,
    predict,
)
from attnviz.keras.capture import BATCH_BYTES, batch_length, slice_samples
from attnviz.keras.loading import load_model, numpy_inputs, prepare_inputs, run_code
from attnviz.store.run import Run

HELDOUT_SAMPLES = 1000
TOP_K = 1  # positions erased (or kept) by the faithfulness tests
RECURRENT = ("lstm", "gru", "bilstm")


@dataclass(frozen=True)
class ExplainOptions:
    """What `attnviz explain` measures, and on what."""

    epoch: int | None = None  # a checkpointed epoch (None: the latest)
    samples: int = HELDOUT_SAMPLES  # held-out samples (at most: a user's data may hold fewer)
    steps: int = IG_STEPS  # integrated-gradients steps
    top_k: int = TOP_K  # positions erased or kept by the faithfulness tests
    seed: int = 0  # of the random positions, permutations and the adversarial start
    layer: str | None = None  # the recorded attention layer (None: the first)
    data: Path | None = None  # a user's run: DATA.npz with held-out samples
    erase_value: float | None = None  # None: the task's neutral value, else the probe's mean
    baselines: tuple[tuple[str, float], ...] = ()  # (name, loss) of predictors the user knows
    imports: tuple[str, ...] = ()  # code the checkpoint needs, beyond what the run records
    draws: int = interventions.DRAWS  # permutations per sample
    adversarial_steps: int = interventions.ADVERSARIAL_STEPS  # 0: no adversarial search


def parse_baseline(spec: str) -> tuple[str, float]:
    """--baseline NAME=MSE -> (NAME, MSE)."""
    name, equals, value = spec.partition("=")
    try:
        loss = float(value)
    except ValueError:
        loss = math.nan
    if not equals or not name.strip() or not math.isfinite(loss) or loss < 0:
        raise AttnvizError(f"--baseline {spec}: give NAME=MSE, a predictor's held-out loss "
                           "(0 or more), e.g. --baseline shortcut=0.83")
    return name.strip(), loss


# ---- numpy measures ------------------------------------------------------------------------


def kendall_tau_b(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall tau_b of each row pair of (n, L) arrays; NaN where a row is constant.

    tau_b = (concordant - discordant) / sqrt((P - ties_a) (P - ties_b)), P = L (L - 1) / 2,
    as scipy.stats.kendalltau computes it.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n, seq_len = a.shape
    upper = np.triu(np.ones((seq_len, seq_len), dtype=bool), k=1)
    out = np.empty(n)
    chunk = max(1, BATCH_BYTES // (16 * seq_len * seq_len))  # two float64 sign arrays
    for start in range(0, n, chunk):
        sa = np.sign(a[start:start + chunk, :, None] - a[start:start + chunk, None, :])[:, upper]
        sb = np.sign(b[start:start + chunk, :, None] - b[start:start + chunk, None, :])[:, upper]
        untied = np.count_nonzero(sa, axis=1) * np.count_nonzero(sb, axis=1)  # (c,)
        score = (sa * sb).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + chunk] = np.where(untied > 0, score / np.sqrt(untied), np.nan)
    return out


def masses(rows: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean share of each row's total on every mask, and on no mask ("outside" the masks).

    Rows are made non-negative (|a|) and sum to 1 first, so attention and attribution compare.
    """
    weights = l1_normalise(np.abs(np.asarray(rows, dtype=np.float64)))
    result = {name: float(np.where(mask, weights, 0.0).sum(axis=1).mean())
              for name, mask in masks.items()}
    covered = np.logical_or.reduce([*masks.values(), np.zeros(weights.shape, bool)])
    return {"masks": result, "outside": float(np.where(covered, 0.0, weights).sum(axis=1).mean())}


def mask_order(masks: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """order[b][a]: share of samples in which every position of mask b comes before mask a's."""
    spans = {}
    for name, mask in masks.items():
        seq_len = mask.shape[1]
        marked = mask.any(axis=1)
        first = np.where(marked, mask.argmax(axis=1), seq_len)
        last = np.where(marked, seq_len - 1 - mask[:, ::-1].argmax(axis=1), -1)
        spans[name] = (first, last, marked)
    order = {}
    for b, (_, last_b, marked_b) in spans.items():
        order[b] = {}
        for a, (first_a, _, marked_a) in spans.items():
            if a != b:
                both = marked_a & marked_b
                order[b][a] = float((last_b < first_a)[both].mean()) if both.any() else 0.0
    return order


def faithfulness(
    model: keras.Model, x: np.ndarray, scale: float, rows: np.ndarray, erase_value: float,
    k: int, rng: np.random.Generator, index: np.ndarray | None = None,
) -> dict:
    """Mean |f(x) - f(x')| when x' erases (comprehensiveness) or keeps only (sufficiency) the
    top-k attended positions, or k random ones; erased inputs are set to `erase_value`.
    `scale` (the std of the targets) gives the changes a scale."""
    n, seq_len = rows.shape
    top = np.argsort(-rows, axis=1, kind="stable")[:, :k]  # (n, k) most attended first
    drawn = rng.permuted(np.tile(np.arange(seq_len), (n, 1)), axis=1)[:, :k]  # (n, k)
    full = predict(model, x, index)
    widen = (slice(None), slice(None), *([None] * (x.ndim - 2)))  # (n, L) against x

    def change(positions: np.ndarray, keep: bool) -> float:
        chosen = np.zeros((n, seq_len), dtype=bool)
        np.put_along_axis(chosen, positions, True, axis=1)
        erase = ~chosen if keep else chosen
        edited = np.where(erase[widen], np.float32(erase_value), x)
        return float(np.abs(predict(model, edited, index) - full).mean())

    return {
        "k": k,
        "erase_value": float(erase_value),
        "comprehensiveness": {"top": change(top, False), "random": change(drawn, False)},
        "sufficiency": {"top": change(top, True), "random": change(drawn, True)},
        "target_std": float(scale),
    }


# ---- the samples and the model -------------------------------------------------------------


@dataclass
class Samples:
    """A batch to measure on, as the model takes it."""

    x: object  # an array, or a dict / list of arrays
    y: np.ndarray | None
    masks: dict[str, np.ndarray]  # over the attention's keys; may be empty
    source: str  # where the samples come from, in words


def load_checkpoint(run: Run, epoch: int | None,
                    imports: tuple[str, ...] = ()) -> tuple[int, keras.Model]:
    """The run's model after `epoch` (default: the latest checkpoint). A user's model is
    compiled as it was saved (its loss is what interventions measure), after importing the
    code the run records and `imports`."""
    if epoch is not None and epoch not in run.checkpoints:
        raise AttnvizError(
            f"--epoch {epoch} has no checkpoint in {run.root}: checkpointed epochs are "
            f"{', '.join(map(str, run.checkpoints)) or 'none'}"
        )
    path = run.checkpoint_path(epoch)  # safe mode below; a damaged file in one line
    model = load_model(path, imports=(*run_code(run), *imports), compile=run.config is None,
                       script_classes=run.script_classes)
    return (run.checkpoints[-1] if epoch is None else epoch), model


def heldout_samples(run: Run, model, options: ExplainOptions, layer: dict,
                    probe: Samples) -> Samples:
    """The held-out samples: fresh ones of a built-in task; for a user's run --data, else the
    data `train --model` recorded, else the held-out samples the recorder kept (its
    `validation`), else `probe` (the probe batch) with its targets."""
    if run.config is not None:
        if options.data is not None:
            raise AttnvizError("--data is for runs of your own model: a built-in task's run "
                               "is measured on fresh samples of its task; drop --data")
        from attnviz.analysis.tasks import HELDOUT_STREAM, task_data

        batch = task_data(run.config, HELDOUT_STREAM, options.samples)
        return Samples(batch.x, batch.y, batch.masks,
                       f"{options.samples} fresh samples of {run.config.task}")
    from attnviz.keras.usermodel import load_data

    keys = layer["shape"][-1]
    kept = None if options.data is not None or run.model_info.get("fit") else run.heldout
    if options.data is not None:
        data, name = load_data(options.data, heldout=True), options.data.name
    elif run.model_info.get("fit"):
        from attnviz.keras.training import user_data

        data, name = user_data(run), Path(run.model_info["fit"]["data"]).name
    elif kept is not None:
        n = min(batch_length(kept.x), options.samples)
        given = run.heldout_given
        return Samples(prepare_inputs(model, slice_samples(kept.x, 0, n), "heldout.npz",
                                      "the run's"), kept.y[:n], {},
                       f"the held-out samples the recorder kept ({n} of the {given} given "
                       "as validation)")
    else:
        if probe.y is None:
            raise AttnvizError(f"{run.root} recorded its probe without targets, so no loss can "
                               "be measured: give held-out samples with --data DATA.npz "
                               "(x_val and y_val, or x and y), or record the run with "
                               "AttentionRecorder(..., validation=(x_val, y_val))")
        return replace(probe, source=f"the probe batch ({batch_length(probe.x)} samples, "
                                     "recorded with the run: few, and fixed)")
    key, x, y = ("x_val", data.x_val, data.y_val) if data.x_val is not None else ("x", data.x,
                                                                                    data.y)
    total = batch_length(x)
    n = min(total, options.samples)
    masks = {mask: value[:n].astype(bool) for mask, value in data.masks.items()
             if value.ndim == 2 and value.shape == (total, keys)}
    what = f"{key} and y{key[1:]} of {name}" + (f" (the first {n} of {total})" if n < total
                                               else f" ({n} samples)")
    if key == "x":
        what = what[:-1] + "; it holds no x_val, so x and y are taken as held out)"
    return Samples(prepare_inputs(model, slice_samples(x, 0, n), f"{name} {key}", "--data"),
                   np.asarray(y[:n]), masks, what)


BUILT_IN = ("prev", "self", "first", "induction")  # self-attention's built-in interventions


def builtin_masks(x, learned: np.ndarray) -> dict[str, np.ndarray]:
    """Self-attention (weights (n, [H,] L, L)): the built-in masks (attnviz.analysis.
    structural) of the samples `x` an intervention moves attention onto, per query;
    induction only where `x` holds token ids. Temporal attention: none."""
    if learned.ndim < 3 or learned.shape[-1] != learned.shape[-2]:
        return {}
    n, length = len(learned), learned.shape[-1]
    tokens = structural.probe_tokens(numpy_inputs(x))
    padding = structural.probe_padding(numpy_inputs(x))
    if tokens is not None and tokens.shape != (n, length):
        tokens = None
    if padding is not None and padding.shape != (n, length):
        padding = None
    names = [name for name in BUILT_IN if name != "induction" or tokens is not None]
    masks = {}
    for name in names:
        mask = structural.structural_mask(name, n, length, length, tokens, padding)
        if mask.any():
            masks[name] = mask
    return masks


def attribution_refused(x, keys: int) -> str | None:
    """Why attribution (and erasure) cannot be measured on inputs `x`, or None."""
    if isinstance(x, (dict, list, tuple)):
        return "the model takes several inputs"
    if not np.issubdtype(np.asarray(x).dtype, np.floating):
        return "the inputs are integer token ids, which have no gradient"
    if x.ndim < 2 or x.shape[1] != keys:
        return (f"the inputs have {x.shape[1] if x.ndim > 1 else 1} positions and the "
                f"attention {keys} keys, so the two cannot be compared position by position")
    return None


def scalar_index(outputs: np.ndarray) -> np.ndarray:
    """Which output attribution follows per sample: the only one, or the predicted class."""
    flat = outputs.reshape(len(outputs), -1)
    return np.zeros(len(flat), np.int32) if flat.shape[1] == 1 else flat.argmax(axis=1).astype(
        np.int32)


def model_loss(run: Run, model) -> interventions.Loss:
    """MSE for the built-in tasks; a user's model: its compiled loss, else MSE if it has one
    output value per sample."""
    if run.config is not None:
        return interventions.Loss("mse", "the built-in tasks' loss",
                                  interventions.squared_error)
    compiled = interventions.compiled_loss(model)
    if compiled is not None:
        return compiled
    shape = tuple(model.output_shape) if hasattr(model, "output_shape") else ()
    if len(shape) == 2 and shape[-1] == 1:
        return interventions.Loss("mse", "mean squared error: the checkpoint has no compiled "
                                  "loss, and the model has one output", interventions.squared_error)
    raise AttnvizError(f"{run.checkpoint_path()} has no compiled loss to measure: save the "
                       "model after model.compile(loss=...)")


def call_of(model, x, recorded: str) -> str:
    """The attention call of `model` that the run recorded as `recorded`: the same path, or
    the one path that differs only in Keras' automatic name suffixes ("_2"), which a model
    rebuilt in another session can get."""
    calls = [call.name for call in capture.survey(model, x).calls]
    if recorded in calls:
        return recorded
    matches = [name for name in calls if capture.unnumbered(name) == capture.unnumbered(recorded)]
    if len(matches) == 1:
        return matches[0]
    raise AttnvizError(f"the run recorded {recorded}, and its checkpoint computes no such "
                       f"attention call on the probe batch (it computes "
                       f"{', '.join(calls) or 'none'}): Keras rebuilt a layer under another "
                       "name, most likely one whose get_config drops its name; record the run "
                       "again with the name kept")


# ---- the report ----------------------------------------------------------------------------


def _check(options: ExplainOptions, keys: int) -> None:
    for flag, value, low, high in (
            ("--samples", options.samples, 2, None), ("--steps", options.steps, 1, None),
            ("--top-k", options.top_k, 1, keys - 1), ("--draws", options.draws, 1, None),
            ("--adversarial-steps", options.adversarial_steps, 0, None)):
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"in {low}..{high} (L = {keys})"
            raise AttnvizError(f"{flag} must be {bounds}, got {value}")


def explain_run(root: Path | Run, options: ExplainOptions | None = None) -> dict:
    """Measure attention, attribution, faithfulness, baselines and interventions of one
    checkpoint."""
    options = options or ExplainOptions()
    run = root if isinstance(root, Run) else Run.open(root)
    if run.config is not None and get_task(run.config.task).tokens:
        raise AttnvizError(f"explain measures a model that predicts one value; {run.root} "
                           f"predicts tokens ({run.config.task}): `attnviz heads {run.root}` "
                           "says what its heads do")
    run.checkpoint_path()  # a run without checkpoints says why before anything else
    layer = run.layer(options.layer)
    keys = layer["shape"][-1]
    _check(options, keys)
    epoch, model = load_checkpoint(run, options.epoch, options.imports)
    loss = model_loss(run, model)
    probe = Samples(prepare_inputs(model, run.probe.x, "probe.npz"), run.probe.y,
                    run.masks_for(layer["name"]), "the probe batch")
    batches = {"probe": probe, "heldout": heldout_samples(run, model, options, layer, probe)}
    intervener = interventions.Intervener(model, call_of(model, batches["probe"].x,
                                                         layer["name"]))
    heldout = batches["heldout"]
    masks_on = "heldout" if heldout.masks else "probe" if batches["probe"].masks else None
    masked = batches[masks_on].masks if masks_on else {}
    self_attention = len(layer["shape"]) == 4
    query = "last" if run.config is not None else "mean"
    report = {
        "run": str(run.root),
        "epoch": epoch,
        "task": run.config.task if run.config else None,
        "target": run.task["description"] if run.task else None,
        "model": run.model_info.get("name") or model.name,
        "encoder": run.config.encoder if run.config else None,
        "attention_kind": run.config.attention if run.config else layer["class"],
        "layer": layer["name"],
        "attention_view": (f"heads averaged, {query} query" if self_attention else None),
        "recurrent": run.config.encoder in RECURRENT if run.config else None,
        "bidirectional": run.config.encoder == "bilstm" if run.config else None,
        "seq_len": keys,
        "samples": {name: batch_length(batch.x) for name, batch in batches.items()},
        "heldout_source": heldout.source,
        "masks": list(masked),
        "masks_on": masks_on,
        "mask_share": {name: float(mask.mean()) for name, mask in masked.items()},
        "mask_order": mask_order(masked),
        "attention": {},
    }
    outputs, weights, rows = {}, {}, {}
    for name, batch in batches.items():
        outputs[name], weights[name] = intervener.learned(batch.x)
        # (n, L); multi-head: the mean of heads, for the last query (which predicts) in the
        # built-in models, over every query in a user's
        standard = weights[name][:, None] if weights[name].ndim == 3 else weights[name]
        rows[name] = attention_rows(standard, query=query) if self_attention else standard
        if batch.masks:
            report["attention"][name] = masses(rows[name], batch.masks)
    report.update(_attribution(run, model, batches, rows, outputs, masks_on, options))
    report["baselines"] = baselines(run, epoch, loss, outputs["heldout"], heldout.y,
                                    options.baselines)
    report["interventions"], report["intervention_setup"] = measure_interventions(
        intervener, heldout, weights["heldout"], outputs["heldout"], loss, options)
    return report


def _attribution(run: Run, model, batches: dict[str, Samples], rows: dict[str, np.ndarray],
                 outputs: dict[str, np.ndarray], masks_on: str | None,
                 options: ExplainOptions) -> dict:
    """Integrated gradients, gradient x input and faithfulness, or why they are not measured."""
    heldout = batches["heldout"]
    keys = rows["heldout"].shape[1]
    refused = attribution_refused(heldout.x, keys)
    if run.task is not None:
        erase_value, erase_source = float(run.task["erase_value"]), "the task's neutral value"
    elif refused is None:
        erase_value, erase_source = float(np.mean(batches["probe"].x)), "the probe's mean"
    else:
        erase_value, erase_source = None, None
    if options.erase_value is not None:
        erase_value, erase_source = float(options.erase_value), "--erase-value"
    part = {"attribution_refused": refused, "erase_value": erase_value,
            "erase_value_source": erase_source}
    if masks_on is not None and refused is None:
        masked = batches[masks_on]
        part["mask_zero_inputs"] = {
            name: float((per_position(np.asarray(masked.x)) == 0)[mask].mean())
            for name, mask in masked.masks.items()}
    if refused is not None:
        return {**part, "integrated_gradients": None, "gradient_x_input": None,
                "faithfulness": None}
    part["integrated_gradients"] = {"baseline": erase_value, "steps": options.steps}
    part["gradient_x_input"] = {}
    index = {}
    for name, batch in batches.items():
        x = np.asarray(batch.x, np.float32)
        index[name] = scalar_index(outputs[name])
        ig = integrated_gradients(model, x, erase_value, options.steps, index[name])
        gxi = gradient_x_input(model, x, index[name])
        for key, values in (("integrated_gradients", ig), ("gradient_x_input", gxi)):
            part[key][name] = {**(masses(values, batch.masks) if batch.masks else {}),
                               "tau_b": _nanmean(kendall_tau_b(rows[name], np.abs(values)))}
        if name == "heldout":
            part["integrated_gradients"]["completeness_error"] = completeness_error(
                model, x, erase_value, ig, index[name])
    x = np.asarray(heldout.x, np.float32)
    scale = _target_scale(heldout.y, model, x, index["heldout"])
    part["faithfulness"] = faithfulness(model, x, scale, rows["heldout"], erase_value,
                                        options.top_k, np.random.default_rng(options.seed),
                                        index["heldout"])
    return part


def _target_scale(y: np.ndarray | None, model, x: np.ndarray, index: np.ndarray) -> float:
    """The scale of prediction changes: the std of the targets when the model predicts one
    value per sample, else the std of the output that attribution follows."""
    flat = None if y is None else np.asarray(y, np.float64).reshape(len(y), -1)
    if flat is not None and flat.shape[1] == 1 and int(np.prod(model.output_shape[1:])) == 1:
        return float(np.std(flat))
    return float(np.std(predict(model, x, index)))


def store_report(root: Path, report: dict) -> None:
    """Keep `report` (with its verdict) in the run as explain.json, under the run's lock, on
    the run as committed now (training may have committed epochs since it was opened)."""
    from attnviz.store.lock import exclusive
    from attnviz.store.run import RunWriter

    with exclusive(root):
        RunWriter.open(root).save_explain(report)


def baselines(run: Run, epoch: int, loss: interventions.Loss, outputs: np.ndarray,
              y: np.ndarray, given: tuple[tuple[str, float], ...] = ()) -> dict:
    """Held-out loss with its standard error, the run's val_loss, and the predictors to
    compare with: the task's; for a user's MSE regression the mean of the held-out targets
    (measured); and those given with --baseline."""
    per_sample = loss.per_sample(y, outputs)
    value = float(per_sample.mean())
    history = {record["epoch"]: record for record in run.history}
    val_loss = history.get(epoch, {}).get("val_loss")
    predictors = [{"name": b["name"], "loss": b["mse"], "description": b["description"]}
                  for b in run.baselines]
    if run.task is None and loss.name in MSE_NAMES and np.issubdtype(np.asarray(y).dtype,
                                                                      np.number):
        mean = np.broadcast_to(np.asarray(y, np.float64).mean(axis=0), np.shape(y))
        predictors.append({"name": "mean", "loss": float(interventions.squared_error(
            y, mean).mean()), "description": "predict the mean of the held-out targets "
                                             "(measured on them)"})
    for name, given_loss in given:
        predictors = [p for p in predictors if p["name"] != name]
        predictors.append({"name": name, "loss": given_loss, "description": "given with "
                                                                            "--baseline"})
    return {
        "loss": loss.name,
        "loss_source": loss.source,
        "heldout_loss": value,
        "heldout_loss_se": float(per_sample.std(ddof=1) / np.sqrt(len(per_sample)))
        if len(per_sample) > 1 else None,
        "val_loss": None if val_loss is None or not np.isfinite(val_loss) else float(val_loss),
        "predictors": [{**p, "ratio": _ratio(value, p["loss"])} for p in predictors],
        "noise_floor": noise_floor(loss, y),
    }


def noise_floor(loss: interventions.Loss, y: np.ndarray) -> float:
    """The loss at or below which the verdict calls a loss near zero (verdict.NOISE_FLOOR):
    for MSE, that share of the held-out targets' variance (what predicting their mean costs);
    for any other loss, that many of its units."""
    if loss.name in MSE_NAMES and np.issubdtype(np.asarray(y).dtype, np.number):
        targets = np.asarray(y, np.float64).reshape(len(y), -1)
        return float(NOISE_FLOOR * targets.var(axis=0).mean())
    return NOISE_FLOOR


def measure_interventions(intervener: interventions.Intervener, heldout: Samples,
                          learned: np.ndarray, outputs: np.ndarray, loss: interventions.Loss,
                          options: ExplainOptions) -> tuple[list[dict], dict]:
    """The held-out loss with the learned weights and with every replacement, and how the
    replacements were made."""
    rng = np.random.default_rng(options.seed)
    x, y = heldout.x, heldout.y
    learned_loss = loss.mean(y, intervener.outputs(x, learned))

    def entry(name: str, replaced: np.ndarray, **more) -> dict:
        value = loss.mean(y, intervener.outputs(x, replaced))
        return {"name": name, "loss": value, "jsd": float(interventions.jsd(learned,
                                                                            replaced).mean()),
                "ratio": _ratio(value, learned_loss), **more}

    found = [{"name": "learned", "loss": learned_loss, "jsd": 0.0, "ratio": 1.0},
             entry("uniform", interventions.uniform(learned))]
    draws = [interventions.permuted(learned, rng) for _ in range(options.draws)]
    losses = [loss.mean(y, intervener.outputs(x, drawn)) for drawn in draws]
    found.append({"name": "permuted", "loss": float(np.mean(losses)),
                  "loss_spread": float(np.std(losses)), "draws": options.draws,
                  "jsd": float(np.mean([interventions.jsd(learned, d).mean() for d in draws])),
                  "ratio": _ratio(float(np.mean(losses)), learned_loss)})
    for name, mask in heldout.masks.items():
        replaced, kept = interventions.on_mask(learned, mask)
        found.append(entry(f"mask:{name}", replaced, kept=kept))
    for name, mask in builtin_masks(heldout.x, learned).items():
        replaced, kept = interventions.on_mask(learned, mask)
        found.append(entry(f"mask:{name}", replaced, kept=kept, built_in=True))
    found.append(entry("argmax", interventions.argmax(learned)))
    if options.adversarial_steps:
        found.append(_adversarial(intervener, x, y, learned, outputs, loss, options, rng))
    setup = {"layer": intervener.call, "shape": list(learned.shape[1:]),
             "replaced": ("every head and every query row" if learned.ndim > 2 else
                          "each sample's row"), "samples": len(learned)}
    return found, setup


def _adversarial(intervener, x, y, learned, outputs, loss, options, rng) -> dict:
    n = min(len(learned), interventions.ADVERSARIAL_SAMPLES)
    tolerance = interventions.ADVERSARIAL_TOLERANCE * float(np.std(outputs))
    part_x, part_y = slice_samples(x, 0, n), y[:n]
    found = intervener.adversarial(part_x, learned[:n], outputs[:n], tolerance, rng,
                                   options.adversarial_steps)
    moved = intervener.outputs(part_x, found)
    value = loss.mean(part_y, moved)
    learned_loss = loss.mean(part_y, outputs[:n])
    divergence = interventions.jsd(learned[:n], found)
    return {"name": "adversarial", "loss": value, "jsd": float(divergence.mean()),
            "ratio": _ratio(value, learned_loss), "learned_loss": learned_loss,
            "samples": n, "steps": options.adversarial_steps,
            "learning_rate": interventions.ADVERSARIAL_RATE, "tolerance": tolerance,
            "tolerance_share": interventions.ADVERSARIAL_TOLERANCE,
            "max_change": float(np.abs(moved - outputs[:n]).max()),
            "very_different": interventions.VERY_DIFFERENT,
            "far": float((divergence >= interventions.VERY_DIFFERENT).mean())}


def _ratio(value: float, reference: float) -> float | None:
    """value / reference; None where the reference is exact (loss 0)."""
    return value / reference if reference > 0 else None


def _nanmean(values: np.ndarray) -> float | None:
    """Mean ignoring NaN; None when every value is NaN (JSON has no NaN)."""
    valid = values[~np.isnan(values)]
    return float(valid.mean()) if valid.size else None
