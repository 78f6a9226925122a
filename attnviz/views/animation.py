"""`attnviz animate`: a run's recorded attention over training, one frame per epoch, to a
GIF or MP4 (attnviz.views.frames draws, attnviz.views.encoders writes). No TensorFlow."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnviz.analysis.score import (
    attention_rows,
    check_recorded_heads,
    mass,
    parse_head,
    parse_query,
    run_masks,
)
from attnviz.analysis.tokens import position_labels
from attnviz.errors import AttnvizError
from attnviz.store.files import check_output_file, check_writable_dir
from attnviz.store.layers import TEMPORAL
from attnviz.store.run import Run
from attnviz.views.colors import colormap_lut, palette_for
from attnviz.views.encoders import (
    GIF_MAX_FPS,
    SUFFIXES,
    require_ffmpeg,
    write_gif,
    write_mp4,
    write_pngs,
)
from attnviz.views.frames import FrameData, render_frames
from attnviz.views.head_grid import HeadsFrame, render_heads

ALL_HEADS = "all"  # --head all: every head of the layer as a grid per frame


NO_MASK = "no mask"  # the empty row under the attention of a run recorded without masks


@dataclass(frozen=True)
class AnimateOptions:
    """The `attnviz animate` options; see docs/animate.md."""

    output: Path | None = None  # .gif or .mp4; None: RUN/attention.gif
    fps: float = 10.0  # frames per second (the last frame holds HOLD_LAST_MS)
    mask: str | None = None  # ground truth drawn under the attention; None: the main mask
    cmap: str = "hot"  # a matplotlib colour map name
    every: int = 1  # keep every K-th recorded epoch (the last is always kept)
    samples: int | None = None  # show the first N probe samples; None: all
    scale: int | None = None  # pixels per attention cell (None: 16; --head all: a panel
    # of about 128 px)
    head: str | None = None  # self-attention: a head index, "mean" (None) or "all" (a grid)
    sample: int = 0  # --head all: the probe sample drawn
    query: str | None = None  # self-attention: a query index, "last" or "mean" (None: "last")
    vmax: str = "1"  # the value drawn in the top colour: a number, or "auto" (run maximum)
    frames_dir: Path | None = None  # also write one PNG per frame here
    layer: str | None = None  # a recorded layer (name or glob); None: the run's first
    tokens: Path | None = None  # --tokens FILE.json: labels of the positions


@dataclass(frozen=True)
class Animation:
    """What `animate` wrote."""

    path: Path
    frames: int
    width: int
    height: int
    size_bytes: int
    epochs: list[int]
    vmax: float
    attribution: bool  # whether the attribution panel is shown
    png_paths: list[Path]
    seconds: float  # reading, rendering and writing
    axis: str = "epoch"  # what `epochs` counts: "step" for a run recorded by steps


def animate(run_dir: Path, options: AnimateOptions) -> Animation:
    """Render the run's recorded attention, one frame per epoch, to a GIF or MP4."""
    started = time.perf_counter()
    _check_numbers(options)
    fixed_vmax = _parse_vmax(options.vmax)
    lut = colormap_lut(options.cmap)
    run = Run.open(run_dir)
    output = Path(options.output) if options.output else run.root / "attention.gif"
    _check_output(output, options.fps)
    if options.head == ALL_HEADS:
        frames = collect_heads(run, options)
        if options.frames_dir is not None:
            _prepare_frames_dir(Path(options.frames_dir))
        vmax = fixed_vmax or max(float(frame.maps.max()) for frame in frames) or 1.0
        pictures = render_heads(frames, options.scale, vmax)
    else:
        frames, mask, mask_name, positions = collect_frames(run, options)
        if options.frames_dir is not None:
            _prepare_frames_dir(Path(options.frames_dir))
        # 'auto': the largest attention value of the whole run, so frames share one scale
        vmax = fixed_vmax or max(float(frame.rows.max()) for frame in frames) or 1.0
        pictures = render_frames(frames, mask, options.scale or 16, vmax, mask_name, positions)
    palette = palette_for(lut)
    try:
        if output.suffix.lower() == ".mp4":
            write_mp4(output, pictures, palette, options.fps)
        else:
            write_gif(output, pictures, palette, options.fps)
        png_paths = []
        if options.frames_dir is not None:
            png_paths = write_pngs(Path(options.frames_dir), pictures,
                                   [frame.epoch for frame in frames], palette, run.axis)
    except OSError as err:
        raise AttnvizError(f"cannot write {err.filename or output}: {err.strerror}") from None
    height, width = pictures[0].shape
    return Animation(
        path=output, frames=len(pictures), width=width, height=height,
        size_bytes=output.stat().st_size, epochs=[frame.epoch for frame in frames], vmax=vmax,
        attribution=any(getattr(frame, "attribution", None) is not None for frame in frames),
        png_paths=png_paths, seconds=time.perf_counter() - started, axis=run.axis,
    )


def collect_frames(
    run: Run, options: AnimateOptions
) -> tuple[list[FrameData], np.ndarray, str, list[str] | None]:
    """The frames' data from a run, the mask (n, L) shown under them with its name, and the
    tokens that name the positions when every sample shown has the same ones (else the
    first sample's tokens are a header line)."""
    info = run.layer(options.layer)
    layer, keys = info["name"], info["shape"][-1]
    head, query = _resolve_reduction(run, layer, options.head, options.query)
    mask_name = options.mask or run.main_mask
    if mask_name is None:  # a run recorded without masks: an empty row
        mask, mask_name = np.zeros((run.header["probe"]["size"], keys), bool), NO_MASK
    elif mask_name in run.mask_names:
        mask = run.mask(mask_name)
        if mask.shape[-1] != keys:
            raise AttnvizError(f"mask {mask_name} covers {mask.shape[-1]} positions and layer "
                               f"{layer} attends over {keys}: pick another --mask or --layer")
    else:  # a built-in mask (prev, first, induction, token:ID ...), or a name refused
        mask = query_row(run_masks(run, info, [mask_name])[mask_name], mask_name, query)
    epochs = keep_every(run, options.every)
    samples = resolve_samples(options.samples, mask.shape[0])
    shown = view_line(run, info, head, query)
    positions, tokens_line = _shown_tokens(run, options, keys, samples)
    losses = run.point_losses()
    attributed = set(run.attribution_epochs)
    frames = []
    for point, attention in run.iter_points(epochs, layer):
        rows = attention_rows(attention, head=head, query=query)  # (n, L)
        loss = losses.get(point)
        header = [
            f"{run.point_title(point)}   loss " + ("-" if loss is None else f"{loss:.4g}"),
            *([f"mass on {mask_name} {mass(rows, mask):.3f}"] if mask_name != NO_MASK else []),
        ]
        if shown:
            header.insert(0, shown)
        if tokens_line:
            header.append(tokens_line)
        if attributed:
            header.append("left: attention   right: |attribution| / its row maximum")
        attribution = None
        epoch = run.epoch_of(point)
        if epoch in attributed:
            attribution = _normalise_rows(np.abs(run.attribution(epoch))[:samples])
        frames.append(FrameData(epoch=point, rows=rows[:samples], attribution=attribution,
                                header=tuple(header)))
    return frames, mask[:samples], mask_name, positions


TOKEN_CHARS = 8  # a token under a column: at most this many characters
TOKENS_LINE_CHARS = 100  # a header line of one sample's tokens: at most this many


def drawable(label: str, width: int = TOKEN_CHARS) -> str:
    """A token as the frames' bitmap font can draw it: printable ASCII (others escaped),
    at most `width` characters ('..' ending a shortened one)."""
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                    for c in label).encode("ascii", "backslashreplace").decode("ascii")
    return shown if len(shown) <= width else shown[:max(width - 2, 1)] + ".."


def _shown_tokens(run: Run, options: AnimateOptions, keys: int,
                  samples: int) -> tuple[list[str] | None, str | None]:
    """Tokens under the columns (every shown sample has the same), or a header line with the
    first sample's; (None, None) when the run has no tokens over these keys."""
    labels = position_labels(run, options.tokens)
    if labels is None or len(labels[0]) != keys:
        return None, None
    rows = labels[:samples]
    if all(row == rows[0] for row in rows):
        return [drawable(label) for label in rows[0]], None
    return None, tokens_line("sample 0", rows[0])


def tokens_line(name: str, labels: list[str]) -> str:
    """'sample 0: the cat sat ...', within TOKENS_LINE_CHARS."""
    return drawable(f"{name}: " + " ".join(drawable(label) for label in labels),
                    TOKENS_LINE_CHARS)


def collect_heads(run: Run, options: AnimateOptions) -> list[HeadsFrame]:
    """--head all: every head's map of one probe sample, one frame per kept epoch."""
    info = run.layer(options.layer)
    if info["kind"] == TEMPORAL:
        raise AttnvizError(f"--head all draws the heads of multi-head attention; {run.root} "
                           f"recorded {info['name']} as temporal attention (one row per "
                           "sample): drop --head")
    unused = [flag for flag, given in (("--query", options.query is not None),
                                        ("--mask", options.mask is not None),
                                        ("--samples", options.samples is not None)) if given]
    if unused:
        raise AttnvizError(f"--head all draws every query of one sample (--sample N), without "
                           f"a mask: drop {' and '.join(unused)}")
    n, heads, queries, keys = info["shape"]
    if not 0 <= options.sample < n:
        raise AttnvizError(f"--sample {options.sample}: the probe holds samples 0..{n - 1}")
    shown = " · ".join([*([f"layer {info['name']}"] if len(run.layers) > 1 else []),
                        "mean of heads (recorded so)" if run.recording["record_heads"] == "mean"
                        else f"all {heads} heads", f"sample {options.sample}",
                        f"queries (rows) x keys (columns), {queries} x {keys}"])
    losses = run.point_losses()
    labels = position_labels(run, options.tokens)
    extra = () if labels is None or len(labels[0]) != keys else (
        tokens_line(f"sample {options.sample}", labels[options.sample]),)
    frames = []
    for point, attention in run.iter_points(keep_every(run, options.every), info["name"]):
        loss = losses.get(point)
        frames.append(HeadsFrame(epoch=point, maps=attention[options.sample], header=(
            shown, f"{run.point_title(point)}   loss " + ("-" if loss is None
                                                          else f"{loss:.4g}"), *extra)))
    return frames


def keep_every(run: Run, every: int) -> list[int]:
    """Every `every`-th recorded point of the run (epoch, or step when it records by steps),
    and always the last."""
    recorded = run.points
    if not recorded:
        raise AttnvizError(f"{run.root}: no attention recorded yet: train it first")
    epochs = recorded[::every]
    if epochs[-1] != recorded[-1]:
        epochs.append(recorded[-1])
    return epochs


def _normalise_rows(values: np.ndarray) -> np.ndarray:
    """Divide each row by its maximum (rows of zeros stay zero)."""
    peak = values.max(axis=1, keepdims=True)
    return np.divide(values, peak, out=np.zeros_like(values), where=peak > 0)


def _check_numbers(options: AnimateOptions) -> None:
    if not 0 < options.fps < float("inf"):
        raise AttnvizError(f"--fps {options.fps:g} must be above 0 (e.g. --fps 10)")
    check_every_and_samples(options.every, options.samples)
    if options.scale is not None and options.scale < 1:
        raise AttnvizError(f"--scale {options.scale} must be 1 or more pixels per cell")
    if options.sample != 0 and options.head != ALL_HEADS:
        raise AttnvizError("--sample picks the sample --head all draws: add --head all, or "
                           "use --samples N for the first N samples of one head")


def check_every_and_samples(every: int, samples: int | None) -> None:
    """--every and --samples as `keep_every` and `resolve_samples` take them (animate, report)."""
    if every < 1:
        raise AttnvizError(f"--every {every} must be 1 or more (1 keeps every epoch)")
    if samples is not None and samples < 1:
        raise AttnvizError(f"--samples {samples} must be 1 or more")


def _check_output(output: Path, fps: float) -> None:
    check_output_file(output, "-o", "a .gif or .mp4 file")
    suffix = output.suffix.lower()
    if suffix not in SUFFIXES:
        raise AttnvizError(
            f"-o {output}: unknown file type {suffix or '(none)'!r}: use .gif or .mp4 "
            "(and --frames DIR for PNGs)"
        )
    if suffix == ".mp4":
        require_ffmpeg()
    if suffix == ".gif" and fps > GIF_MAX_FPS:
        raise AttnvizError(
            f"--fps {fps:g} is faster than GIF viewers play ({GIF_MAX_FPS} at most): lower it "
            "or write an .mp4"
        )


def _prepare_frames_dir(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise AttnvizError(f"--frames {directory} is a file: name a directory for the PNGs")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AttnvizError(f"--frames {directory}: cannot create it ({err.strerror})") from None
    check_writable_dir(directory, f"--frames {directory}")


def resolve_samples(samples: int | None, available: int) -> int:
    if samples is None:
        return available
    if samples > available:
        raise AttnvizError(
            f"--samples {samples} is more than the probe batch holds: choose 1..{available}"
        )
    return samples


def view_line(run: Run, info: dict, head, query) -> str:
    """Which attention a frame shows, when a run holds more than one view of it: the layer
    of several, the head (of how many) and the query of multi-head attention."""
    parts = [f"layer {info['name']}"] if len(run.layers) > 1 else []
    if info["kind"] != TEMPORAL:
        heads, queries = info["shape"][1], info["shape"][2]
        if run.recording["record_heads"] == "mean":
            parts.append("mean of heads (recorded so)")
        else:
            parts.append(f"mean of {heads} heads" if head == "mean" else f"head {head} of {heads}")
        parts.append("mean of queries" if query == "mean" else
                     f"query {queries - 1} (last)" if query == "last" else f"query {query}")
    return " · ".join(parts)


def query_row(mask: np.ndarray, name: str, query) -> np.ndarray:
    """A mask as the frames draw it, (n, keys): a mask per query gives the row of the query
    the frames show (--query N or last)."""
    if mask.ndim == 2:
        return mask
    queries = mask.shape[1]
    if query == "mean":
        raise AttnvizError(f"mask {name} marks keys per query: draw one query's row with "
                           "--query N or last, not the mean of the queries")
    index = queries - 1 if query == "last" else query
    if not 0 <= index < queries:
        raise AttnvizError(f"--query {query}: the layer has queries 0..{queries - 1}")
    return mask[:, index, :]


def _resolve_reduction(run: Run, layer: str, head: str | None, query: str | None) -> tuple:
    """Parse --head and --query into what score.attention_rows takes."""
    if run.layer(layer)["kind"] == TEMPORAL:
        if head is not None or query is not None:
            raise AttnvizError(
                f"--head and --query apply to multi-head attention; {run.root} recorded "
                f"{layer} as temporal attention (one row per sample): drop them"
            )
        return "mean", "last"
    check_recorded_heads(run, head, layer)
    return parse_head(head or "mean"), parse_query(query or "last")


def _parse_vmax(vmax: str) -> float | None:
    """A number above 0, or None for 'auto'."""
    if vmax == "auto":
        return None
    try:
        value = float(vmax)
    except ValueError:
        raise AttnvizError(f"--vmax {vmax!r}: use a number above 0 or 'auto'") from None
    if not value > 0 or not np.isfinite(value):
        raise AttnvizError(f"--vmax {vmax} must be a number above 0 (or 'auto')")
    return value
