"""Why attention looks the way it does: attribution, faithfulness and baselines of a run.

`explain_run` loads a checkpoint and measures, on the probe batch and a held-out batch:

    attention mass per mask         where the model looks
    attribution mass per mask       which inputs move the prediction (integrated gradients
                                    and gradient x input, both w.r.t. the input sequence)
    Kendall tau_b                   whether the two rank positions alike
    comprehensiveness, sufficiency  whether the inputs at the attended positions matter to
                                    the prediction
    baselines                       whether the model beat the mean predictor and the shortcut
    forced attention                the error when attention is forced onto each mask: what
                                    the encoder states there carry

and returns a JSON-ready dict of numbers only; `attnviz.verdict.compose` turns it into
words. Formulas and thresholds are in docs/explain.md.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from attnviz.errors import AttnvizError
from attnviz.modelio import load_model
from attnviz.models import (  # also registers the layers checkpoints need
    attention_model,
    forced_attention_model,
)
from attnviz.run import Run
from attnviz.score import attention_rows

IG_STEPS = 64  # trapezoid steps of integrated gradients: completeness off by ~0.01 % for
# the founding case's LSTM, ~1.5 % for the ReLU kinks of the dense encoder
HELDOUT_SAMPLES = 1000
TOP_K = 1  # positions erased (or kept) by the faithfulness tests
CELLS_PER_CALL = 2**21  # sequences x L^2 per traced call: bounds the memory of one call
RECURRENT = ("lstm", "gru", "bilstm")

# model -> its traced functions. Each function reaches its model through a weak reference,
# so the cache never keeps a model alive.
_TRACED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ---- gradients -----------------------------------------------------------------------------


def _traced(model: keras.Model, gradient: bool):
    """One tf.function per model: x -> f(x), or x -> (f(x) (B,), df/dx (B, L, F))."""
    functions = _TRACED.setdefault(model, {})
    if gradient not in functions:
        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        this = weakref.ref(model)

        @tf.function(input_signature=[spec])
        def forward(x):
            return this()(x, training=False)

        @tf.function(input_signature=[spec])
        def with_gradient(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                prediction = this()(x, training=False)[:, 0]  # (B,)
            # Samples are independent at inference, so the gradient of the sum is per sample.
            return prediction, tape.gradient(prediction, x)

        functions[gradient] = with_gradient if gradient else forward
    return functions[gradient]


def _chunks(x: np.ndarray):
    step = max(1, CELLS_PER_CALL // (x.shape[1] * x.shape[1]))
    for start in range(0, len(x), step):
        yield tf.constant(x[start:start + step], tf.float32)


def outputs(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """model(x) at inference, in chunks: predictions, or attention weights of an
    `attention_model`."""
    forward = _traced(model, gradient=False)
    return np.concatenate([forward(chunk).numpy() for chunk in _chunks(x)])


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """f(x) as (n,) float64."""
    return outputs(model, x)[:, 0].astype(np.float64)


def predictions_and_gradients(model: keras.Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f(x) (n,) and df/dx (n, L, F), in chunks."""
    with_gradient = _traced(model, gradient=True)
    pairs = [with_gradient(chunk) for chunk in _chunks(x)]
    return (np.concatenate([p.numpy() for p, _ in pairs]),
            np.concatenate([g.numpy() for _, g in pairs]))


def l1_normalise(values: np.ndarray) -> np.ndarray:
    """Divide each row by the sum of its absolute values; all-zero rows stay zero."""
    total = np.abs(values).sum(axis=1, keepdims=True)
    return np.divide(values, total, out=np.zeros_like(values), where=total > 0)


def gradient_x_input(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """(n, L) float32 gradient x input, signed, each row divided by its L1 norm.

    a_t = sum_f x_tf * df/dx_tf, then a_t / sum_s |a_s|. An input of 0.0 (the delimiter)
    always gets 0: use integrated gradients to see whether such a position matters.
    """
    x = np.asarray(x, dtype=np.float32)
    _, gradients = predictions_and_gradients(model, x)
    return l1_normalise((gradients * x).sum(axis=-1)).astype(np.float32)


def integrated_gradients(
    model: keras.Model, x: np.ndarray, baseline: np.ndarray | float, steps: int = IG_STEPS
) -> np.ndarray:
    """(n, L) float32 integrated gradients from `baseline` to `x`, not normalised.

    IG_t = sum_f (x - x')_tf * integral_0^1 df/dx_tf(x' + alpha (x - x')) d alpha, with the
    integral by the trapezoid rule on `steps` intervals, so that sum_t IG_t ~= f(x) - f(x').
    """
    if steps < 1:
        raise AttnvizError(f"--steps must be at least 1, got {steps}")
    x = np.asarray(x, dtype=np.float32)
    baseline = np.broadcast_to(np.asarray(baseline, dtype=np.float32), x.shape)
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)  # (S,)
    weights = np.full(steps + 1, 1.0 / steps)
    weights[[0, -1]] *= 0.5
    per_chunk = max(1, CELLS_PER_CALL // (x.shape[1] * x.shape[1] * (steps + 1)))
    out = np.empty(x.shape[:2], dtype=np.float32)
    for start in range(0, len(x), per_chunk):
        xs, bs = x[start:start + per_chunk], baseline[start:start + per_chunk]
        path = bs[None] + alphas[:, None, None, None] * (xs - bs)[None]  # (S, c, L, F)
        _, gradients = predictions_and_gradients(model, path.reshape(-1, *x.shape[1:]))
        average = np.tensordot(weights, gradients.reshape(path.shape), axes=1)  # (c, L, F)
        out[start:start + per_chunk] = ((xs - bs) * average).sum(axis=-1)
    return out


def completeness_gaps(
    model: keras.Model, x: np.ndarray, baseline: np.ndarray | float, attribution: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample (sum_t IG_t - (f(x) - f(x')), f(x) - f(x')): completeness says gap ~ 0."""
    x = np.asarray(x, dtype=np.float32)
    baseline = np.broadcast_to(np.asarray(baseline, dtype=np.float32), x.shape)
    delta = predict(model, x) - predict(model, np.ascontiguousarray(baseline))
    return attribution.sum(axis=1, dtype=np.float64) - delta, delta


def completeness_error(
    model: keras.Model, x: np.ndarray, baseline: np.ndarray | float, attribution: np.ndarray
) -> float:
    """sum_i |gap_i| / sum_i |f(x_i) - f(x'_i)|: IG's completeness miss over a batch."""
    gap, delta = completeness_gaps(model, x, baseline, attribution)
    total = np.abs(delta).sum()
    return float(np.abs(gap).sum() / total) if total > 0 else 0.0


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
    chunk = max(1, 4_000_000 // (seq_len * seq_len))
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
    covered = np.logical_or.reduce(list(masks.values()))
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
    model: keras.Model, x: np.ndarray, y: np.ndarray, rows: np.ndarray, erase_value: float,
    k: int, rng: np.random.Generator,
) -> dict:
    """Mean |f(x) - f(x')| when x' erases (comprehensiveness) or keeps only (sufficiency) the
    top-k attended positions, or k random ones; erased inputs are set to `erase_value`. The
    std of the targets `y` gives the changes a scale."""
    n, seq_len = rows.shape
    top = np.argsort(-rows, axis=1, kind="stable")[:, :k]  # (n, k) most attended first
    drawn = rng.permuted(np.tile(np.arange(seq_len), (n, 1)), axis=1)[:, :k]  # (n, k)
    full = predict(model, x)

    def change(positions: np.ndarray, keep: bool) -> float:
        chosen = np.zeros((n, seq_len), dtype=bool)
        np.put_along_axis(chosen, positions, True, axis=1)
        erase = ~chosen if keep else chosen
        edited = np.where(erase[..., None], np.float32(erase_value), x)
        return float(np.abs(predict(model, edited) - full).mean())

    return {
        "k": k,
        "erase_value": float(erase_value),
        "comprehensiveness": {"top": change(top, False), "random": change(drawn, False)},
        "sufficiency": {"top": change(top, True), "random": change(drawn, True)},
        "target_std": float(np.std(y, dtype=np.float64)),
    }


# ---- the report ----------------------------------------------------------------------------


def load_checkpoint(run: Run, epoch: int | None) -> tuple[int, keras.Model]:
    """The run's model after `epoch` (default: the latest checkpoint), uncompiled."""
    if epoch is not None and epoch not in run.checkpoints:
        raise AttnvizError(
            f"--epoch {epoch} has no checkpoint in {run.root}: checkpointed epochs are "
            f"{', '.join(map(str, run.checkpoints)) or 'none'}"
        )
    model = load_model(run.checkpoint_path(epoch))  # safe mode; a damaged file in one line
    return (run.checkpoints[-1] if epoch is None else epoch), model


def explain_run(
    root: Path | Run, epoch: int | None = None, samples: int = HELDOUT_SAMPLES,
    steps: int = IG_STEPS, top_k: int = TOP_K, seed: int = 0,
) -> dict:
    """Measure attention, attribution, faithfulness and baselines of one checkpoint."""
    from attnviz.train import HELDOUT_STREAM, task_data

    run = root if isinstance(root, Run) else Run.open(root)
    run.checkpoint_path()  # a run without checkpoints says why before anything else
    if run.config is None:
        raise AttnvizError(f"{run.root} records your own model: explain measures the built-in "
                           "tasks' runs only so far")
    seq_len = run.config.seq_len
    for flag, value, low, high in (("--samples", samples, 2, None), ("--steps", steps, 1, None),
                                   ("--top-k", top_k, 1, seq_len - 1)):
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"in {low}..{high} (L = {seq_len})"
            raise AttnvizError(f"{flag} must be {bounds}, got {value}")
    epoch, model = load_checkpoint(run, epoch)
    config = run.config
    attention_of = attention_model(model)
    erase_value = float(run.task["erase_value"])
    heldout = task_data(config, HELDOUT_STREAM, samples)
    batches = {"probe": run.probe, "heldout": heldout}

    report = {
        "run": str(run.root),
        "epoch": epoch,
        "task": config.task,
        "target": run.task["description"],
        "encoder": config.encoder,
        "attention_kind": config.attention,
        "recurrent": config.encoder in RECURRENT,
        "bidirectional": config.encoder == "bilstm",
        "seq_len": config.seq_len,
        "samples": {name: len(batch.x) for name, batch in batches.items()},
        "masks": list(run.mask_names),
        "mask_share": {name: float(mask.mean()) for name, mask in heldout.masks.items()},
        "mask_zero_inputs": {name: float((heldout.x[..., 0][mask] == 0).mean())
                             for name, mask in heldout.masks.items()},
        "mask_order": mask_order(heldout.masks),
        "attention": {},
        "integrated_gradients": {"baseline": erase_value, "steps": steps},
        "gradient_x_input": {},
    }
    rows = {}
    for name, batch in batches.items():
        # (n, L); self-attention: the mean of heads, for the last query (which predicts)
        rows[name] = attention_rows(outputs(attention_of, batch.x).astype(np.float32))
        ig = integrated_gradients(model, batch.x, erase_value, steps)
        gxi = gradient_x_input(model, batch.x)
        report["attention"][name] = masses(rows[name], batch.masks)
        for key, values in (("integrated_gradients", ig), ("gradient_x_input", gxi)):
            report[key][name] = {**masses(values, batch.masks),
                                 "tau_b": _nanmean(kendall_tau_b(rows[name], np.abs(values)))}
        if name == "heldout":
            report["integrated_gradients"]["completeness_error"] = completeness_error(
                model, batch.x, erase_value, ig)
    report["faithfulness"] = faithfulness(
        model, heldout.x, heldout.y, rows["heldout"], erase_value, top_k,
        np.random.default_rng(seed),
    )
    report["baselines"] = baselines(run, epoch, predict(model, heldout.x), heldout.y[:, 0])
    report["forced_attention"] = forced_attention(model, heldout.x, heldout.y[:, 0],
                                                  heldout.masks)
    return report


def store_report(root: Path, report: dict) -> None:
    """Keep `report` (with its verdict) in the run as explain.json, under the run's lock, on
    the run as committed now (training may have committed epochs since it was opened)."""
    from attnviz.train import exclusive

    with exclusive(root):
        Run.open(root).save_explain(report)


def forced_attention(model: keras.Model, x: np.ndarray, y: np.ndarray,
                     masks: dict[str, np.ndarray]) -> dict | None:
    """Held-out MSE with the attention of every sample forced to the uniform distribution on
    each mask (all of it on a one-position mask), the encoder and the layers after attention
    as trained: what the encoder states at those positions carry. None for self-attention."""
    forced = forced_attention_model(model)
    if forced is None:
        return None
    mse = {}
    for name, mask in masks.items():
        weights = (mask / mask.sum(axis=1, keepdims=True)).astype(np.float32)  # (n, L)
        step = max(1, CELLS_PER_CALL // (x.shape[1] * x.shape[1]))
        predictions = np.concatenate([
            forced([x[i:i + step], weights[i:i + step]], training=False).numpy()[:, 0]
            for i in range(0, len(x), step)]).astype(np.float64)
        mse[name] = float(((predictions - y.astype(np.float64)) ** 2).mean())
    return {"mse": mse}


def baselines(run: Run, epoch: int, predictions: np.ndarray, targets: np.ndarray) -> dict:
    """Held-out MSE with its standard error, the run's val_loss, and the task's baselines."""
    squared = (predictions - targets.astype(np.float64)) ** 2
    mse = float(squared.mean())
    history = {record["epoch"]: record for record in run.history}
    val_loss = history.get(epoch, {}).get("val_loss")
    return {
        "heldout_mse": mse,
        "heldout_mse_se": float(squared.std(ddof=1) / np.sqrt(len(squared))),
        "val_loss": None if val_loss is None or not np.isfinite(val_loss) else float(val_loss),
        "predictors": [  # ratio: None where the baseline is exact (MSE 0)
            {**b, "ratio": mse / b["mse"] if b["mse"] > 0 else None}
            for b in run.task["baselines"]
        ],
    }


def _nanmean(values: np.ndarray) -> float | None:
    """Mean ignoring NaN; None when every value is NaN (JSON has no NaN)."""
    valid = values[~np.isnan(values)]
    return float(valid.mean()) if valid.size else None
