"""Attention over training as pictures: numpy -> palette frames -> GIF, MP4 or PNG.

Every frame is a 2-D uint8 array of indices into one 256-colour palette: the first
`CMAP_LEVELS` entries are the colour map, the rest draw the header, lines and gaps. Values
become indices through a lookup, cells become pixels through integer upscaling, and the
GIF is written with that palette as its only colour table, so nothing is quantised per frame.

Layout of a frame (pixels; `s` = --scale, n samples, L positions):

    header               epoch / loss / mass text                    HEADER_LINE_PX per line
    0 1 2 ... (samples)  attention  n*s x L*s  [gap  |attribution|]  colour bar, 0 to vmax
                         separator  a grey line, max(1, s // 8) tall
    MASK NAME            mask       n*s x L*s  [gap  mask again   ]
    position             ticks and position numbers under the columns

Everything but the header text and the attention cells is drawn once, into a template.

No TensorFlow here, and matplotlib only to look up a colour map other than 'hot'.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnviz.analysis.score import (
    attention_rows,
    check_recorded_heads,
    mass,
    parse_head,
    parse_query,
)
from attnviz.errors import AttnvizError, did_you_mean
from attnviz.store.files import atomic_path, check_output_file, check_writable_dir
from attnviz.store.run import Run

CMAP_LEVELS = 248  # palette entries for the colour map; 248..255 are for everything else
BACKGROUND = 248  # header and the gap between panels
TEXT = 249  # header text
SEPARATOR = 250  # the line between attention rows and mask rows
NOT_RECORDED = 251  # an attribution panel at an epoch whose attribution was not recorded
UNCHANGED = 255  # GIF only: transparent, so the previous frame's pixel shows through
RESERVED_RGB = {
    BACKGROUND: (24, 24, 24),
    TEXT: (240, 240, 240),
    SEPARATOR: (128, 128, 128),
    NOT_RECORDED: (56, 56, 64),
}
HEADER_LINE_PX = 12  # one line of Pillow's 6 x 11 px bitmap font plus leading
HEADER_PAD_PX = 4
LABEL_PAD_PX = 4  # between a label and what it names
TICK_PX = 3  # tick marks under the mask rows
BAR_WIDTH_PX = 10  # the colour bar
AXIS_NAME = "position"  # the row label of the position numbers
HOLD_LAST_MS = 2000  # the last frame stays this long before the loop starts again
GIF_MAX_FPS = 50  # GIF delays are in 1/100 s and viewers slow anything under 2/100 s
SUFFIXES = (".gif", ".mp4")
SOME_CMAPS = "hot, viridis, magma, inferno, gray, Blues"

# matplotlib's 'hot' segment data, so the default colour map needs no matplotlib import
_HOT = (
    ((0.0, 0.0416), (0.365079, 1.0), (1.0, 1.0)),  # red: (x, y) knots
    ((0.0, 0.0), (0.365079, 0.0), (0.746032, 1.0), (1.0, 1.0)),  # green
    ((0.0, 0.0), (0.746032, 0.0), (1.0, 1.0)),  # blue
)


# ---- colour --------------------------------------------------------------------------------


def colormap_lut(name: str, levels: int = CMAP_LEVELS) -> np.ndarray:
    """(levels, 3) uint8 colours of matplotlib colour map `name`, sampled evenly from 0 to 1.

    Byte-identical to `matplotlib.colormaps[name](np.linspace(0, 1, levels), bytes=True)`;
    'hot' is computed here so the default path never imports matplotlib.
    """
    # matplotlib samples a 256-entry table at index int(v * 256), and truncates to bytes
    index = np.minimum((np.linspace(0.0, 1.0, levels) * 256).astype(int), 255)
    if name == "hot":
        grid = np.linspace(0.0, 1.0, 256)
        table = np.stack(
            [np.interp(grid, [x for x, _ in knots], [y for _, y in knots]) for knots in _HOT],
            axis=1,
        )  # (256, 3) floats in [0, 1]
        return (table[index] * 255).astype(np.uint8)
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise AttnvizError(
            f"unknown --cmap {name!r}{did_you_mean(name, matplotlib.colormaps)}: use a "
            f"matplotlib colour map, e.g. {SOME_CMAPS}"
        ) from None
    return cmap(np.linspace(0.0, 1.0, levels), bytes=True)[:, :3]


def palette_for(lut: np.ndarray) -> np.ndarray:
    """The (256, 3) uint8 palette: the colour map's levels, then the reserved colours."""
    palette = np.zeros((256, 3), np.uint8)
    palette[:CMAP_LEVELS] = lut
    for index, rgb in RESERVED_RGB.items():
        palette[index] = rgb
    return palette


def to_indices(values: np.ndarray, vmax: float) -> np.ndarray:
    """Map values in [0, vmax] onto colour-map palette indices (clipping outside)."""
    scaled = np.rint(values * ((CMAP_LEVELS - 1) / vmax))
    return np.clip(scaled, 0, CMAP_LEVELS - 1).astype(np.uint8)


def upscale(cells: np.ndarray, scale: int) -> np.ndarray:
    """Repeat each cell of a 2-D array into a scale x scale block of pixels."""
    rows, cols = cells.shape
    blocks = np.broadcast_to(cells[:, None, :, None], (rows, scale, cols, scale))
    return blocks.reshape(rows * scale, cols * scale)


# ---- frames --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameData:
    """What one frame shows: one recorded epoch."""

    epoch: int
    rows: np.ndarray  # (n, L) attention rows over key positions, in [0, 1]
    attribution: np.ndarray | None  # (n, L) |attribution| / row max; None: not recorded
    header: tuple[str, ...]  # lines of text above the picture


@dataclass(frozen=True)
class Layout:
    """Where everything sits in a frame, in pixels."""

    samples: int  # n, probe rows shown
    positions: int  # L
    scale: int  # pixels per cell side
    panel: bool  # an attribution panel to the right of the attention
    header: int  # header height
    text_width: int  # widest header line
    label_width: int  # widest row label: sample numbers, the mask's name, AXIS_NAME
    bar_label_width: int  # widest colour-bar label

    @property
    def grid_left(self) -> int:
        return self.label_width + 2 * LABEL_PAD_PX

    @property
    def grid_width(self) -> int:
        return self.positions * self.scale

    @property
    def gap(self) -> int:
        return max(2, self.scale // 2)

    @property
    def separator(self) -> int:
        return max(1, self.scale // 8)

    @property
    def panel_left(self) -> int:
        return self.grid_left + self.grid_width + self.gap

    @property
    def content_right(self) -> int:
        return self.panel_left + self.grid_width if self.panel else self.grid_left + self.grid_width

    @property
    def bar_left(self) -> int:
        return self.content_right + max(self.gap, 2 * LABEL_PAD_PX)

    @property
    def width(self) -> int:
        bar = self.bar_left + BAR_WIDTH_PX + LABEL_PAD_PX + self.bar_label_width + HEADER_PAD_PX
        return max(bar, self.text_width + 2 * HEADER_PAD_PX)

    @property
    def attention_top(self) -> int:
        return self.header

    @property
    def mask_top(self) -> int:
        return self.header + self.samples * self.scale + self.separator

    @property
    def ticks_top(self) -> int:
        return self.mask_top + self.samples * self.scale

    @property
    def height(self) -> int:
        return self.ticks_top + TICK_PX + HEADER_LINE_PX + HEADER_PAD_PX

    @property
    def columns(self) -> list[int]:
        """The left edge of each grid: the attention's, and the attribution panel's."""
        return [self.grid_left, self.panel_left] if self.panel else [self.grid_left]


def label_step(cell_px: int, label_px: int) -> int:
    """Label every k-th cell, k in 1, 2, 5, 10, 20, 50, ..., so that labels never touch."""
    for magnitude in (1, 10, 100, 1000, 10_000, 100_000):
        for step in (magnitude, 2 * magnitude, 5 * magnitude):
            if step * cell_px >= label_px:
                return step
    return 1_000_000


class FrameRenderer:
    """Turns FrameData into palette-index frames; the parts that never change are drawn once."""

    def __init__(self, mask: np.ndarray, headers: Sequence[Sequence[str]], scale: int,
                 vmax: float, panel: bool, mask_name: str = "mask"):
        from PIL import ImageFont

        # the bitmap font: ten times faster to draw than FreeType, and two-tone, so palette-safe
        self.font = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()
        self.vmax = vmax
        lines = max(len(header) for header in headers)
        samples, positions = mask.shape
        self.bar_labels = [f"{vmax:.3g}", f"{vmax / 2:.3g}", "0"]  # top, middle, bottom
        self.layout = layout = Layout(
            samples=samples, positions=positions, scale=scale, panel=panel,
            header=lines * HEADER_LINE_PX + 2 * HEADER_PAD_PX,
            text_width=self._widest(line for header in headers for line in header),
            label_width=self._widest([str(samples - 1), mask_name, AXIS_NAME]),
            bar_label_width=self._widest(self.bar_labels),
        )
        template = np.full((layout.height, layout.width), BACKGROUND, np.uint8)
        mask_pixels = upscale(np.where(mask, CMAP_LEVELS - 1, 0).astype(np.uint8), scale)
        rule = slice(layout.mask_top - layout.separator, layout.mask_top)
        template[rule, layout.grid_left : layout.content_right] = SEPARATOR
        for left in layout.columns:
            template[layout.mask_top : layout.ticks_top, left : left + layout.grid_width] = (
                mask_pixels)
        self.template = self._draw_axes(template, mask_name)

    def _widest(self, texts) -> int:
        return max((int(np.ceil(self.font.getlength(text))) for text in texts), default=0)

    def _draw_axes(self, template: np.ndarray, mask_name: str) -> np.ndarray:
        """Sample numbers, the mask's name, position ticks and the colour bar, once."""
        from PIL import Image, ImageDraw

        layout, scale = self.layout, self.layout.scale
        text = Image.new("L", (layout.width, layout.height), 0)
        draw = ImageDraw.Draw(text)
        right = layout.grid_left - LABEL_PAD_PX

        def label(x_right: float, y_centre: float, words: str, centred: bool = False) -> None:
            width = self.font.getlength(words)
            x = x_right - width / 2 if centred else x_right - width
            top = max(layout.header, round(y_centre - HEADER_LINE_PX / 2))  # header: per frame
            draw.text((round(x), top), words, fill=255, font=self.font)

        for sample in range(0, layout.samples, label_step(scale, HEADER_LINE_PX)):
            label(right, layout.attention_top + (sample + 0.5) * scale, str(sample))
        label(right, layout.mask_top + layout.samples * scale / 2, mask_name)
        numbers_centre = layout.ticks_top + TICK_PX + HEADER_LINE_PX / 2 + 1
        label(right, numbers_centre, AXIS_NAME)
        step = label_step(scale, self._widest([str(layout.positions - 1)]) + LABEL_PAD_PX)
        for left in layout.columns:
            for position in range(0, layout.positions, step):
                centre = left + position * scale + scale // 2
                template[layout.ticks_top : layout.ticks_top + TICK_PX, centre] = SEPARATOR
                label(centre, numbers_centre, str(position), centred=True)
        # the colour bar beside the attention rows: vmax at the top, 0 at the bottom
        height = layout.samples * scale
        levels = np.rint(np.linspace(CMAP_LEVELS - 1, 0, height)).astype(np.uint8)
        top, bar = layout.attention_top, slice(layout.bar_left, layout.bar_left + BAR_WIDTH_PX)
        template[top : top + height, bar] = levels[:, None]
        bar_right = layout.bar_left + BAR_WIDTH_PX + LABEL_PAD_PX
        places = [top + HEADER_LINE_PX / 2, top + height / 2, top + height - HEADER_LINE_PX / 2]
        shown = [0, 1, 2] if height >= 3 * HEADER_LINE_PX else [0, 2] if (
            height >= 2 * HEADER_LINE_PX) else [0]
        for index in shown:
            words = self.bar_labels[index]
            label(bar_right + self.font.getlength(words), places[index], words)
        template[np.asarray(text) > 127] = TEXT
        return template

    def render(self, frame: FrameData) -> np.ndarray:
        """One (height, width) uint8 frame of palette indices."""
        layout = self.layout
        image = self.template.copy()
        image[: layout.header] = self._header(frame.header)
        rows = slice(layout.attention_top, layout.attention_top + layout.samples * layout.scale)
        grid = slice(layout.grid_left, layout.grid_left + layout.grid_width)
        image[rows, grid] = upscale(to_indices(frame.rows, self.vmax), layout.scale)
        if layout.panel:
            panel = slice(layout.panel_left, layout.content_right)
            if frame.attribution is None:
                image[rows, panel] = NOT_RECORDED
            else:
                image[rows, panel] = upscale(to_indices(frame.attribution, 1.0), layout.scale)
        return image

    def _header(self, lines: Sequence[str]) -> np.ndarray:
        from PIL import Image, ImageDraw

        strip = Image.new("L", (self.layout.width, self.layout.header), 0)
        draw = ImageDraw.Draw(strip)
        for number, line in enumerate(lines):
            draw.text((HEADER_PAD_PX, HEADER_PAD_PX + number * HEADER_LINE_PX), line,
                      fill=255, font=self.font)
        return np.where(np.asarray(strip) > 127, TEXT, BACKGROUND).astype(np.uint8)


def render_frames(frames: Sequence[FrameData], mask: np.ndarray, scale: int = 16,
                  vmax: float = 1.0, mask_name: str = "mask") -> list[np.ndarray]:
    """Palette-index frames for `frames`, with `mask` (n, L) drawn under the attention and
    labelled `mask_name`."""
    renderer = frame_renderer(frames, mask, scale, vmax, mask_name)
    return [renderer.render(frame) for frame in frames]


def frame_renderer(frames: Sequence[FrameData], mask: np.ndarray, scale: int = 16,
                   vmax: float = 1.0, mask_name: str = "mask") -> FrameRenderer:
    """The renderer (and so the layout) of `frames`."""
    if not frames:
        raise AttnvizError("no frames to render: the run has no recorded attention")
    panel = any(frame.attribution is not None for frame in frames)
    return FrameRenderer(mask, [frame.header for frame in frames], scale, vmax, panel, mask_name)


# ---- writing -------------------------------------------------------------------------------


def frame_durations_ms(count: int, fps: float) -> list[int]:
    """Each frame 1/fps, the last one held for HOLD_LAST_MS (or longer, at a slow fps)."""
    step = int(round(1000 / fps))
    return [step] * (count - 1) + [max(step, HOLD_LAST_MS)]


def _palette_image(frame: np.ndarray, palette: np.ndarray):
    from PIL import Image

    height, width = frame.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(frame).tobytes())
    image.putpalette(palette.tobytes())
    return image


def write_gif(path: Path, frames: Sequence[np.ndarray], palette: np.ndarray, fps: float) -> None:
    """An endlessly looping GIF whose only colour table is `palette`; replaces `path` whole.

    Pillow's `save(save_all=True)` remaps every frame onto the palette and diffs frames as
    images, which costs more than drawing them; the frames already share one palette, so
    each is LZW-encoded directly (Pillow's getheader/getdata), cropped to what changed, with
    the pixels that did not change made transparent: long runs of one index that LZW packs
    well, so a run whose attention settles costs little per frame.
    """
    from PIL import GifImagePlugin

    durations = frame_durations_ms(len(frames), fps)
    first = _palette_image(frames[0], palette)
    header, _ = GifImagePlugin.getheader(first, None, {"loop": 0})
    chunks = [*header, *GifImagePlugin.getdata(first, duration=durations[0], disposal=1)]
    for previous, frame, duration in zip(frames[:-1], frames[1:], durations[1:], strict=True):
        changed = frame != previous
        rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
        if rows.size == 0:  # an identical frame still counts, as one pixel redrawn
            rows, cols = np.array([0]), np.array([0])
        box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
        pixels = np.where(changed[box], frame[box], UNCHANGED).astype(np.uint8)
        chunks += GifImagePlugin.getdata(_palette_image(pixels, palette),
                                         offset=(box[1].start, box[0].start),
                                         duration=duration, disposal=1, transparency=UNCHANGED)
    chunks.append(b";")
    with atomic_path(path, suffix=".gif", make_folder=True) as tmp:
        tmp.write_bytes(b"".join(chunks))


def write_mp4(path: Path, frames: Sequence[np.ndarray], palette: np.ndarray, fps: float) -> None:
    """An H.264 MP4 through imageio's ffmpeg plugin; the last frame repeats to hold it."""
    require_ffmpeg()
    import imageio.v2 as imageio

    hold = max(1, int(round(HOLD_LAST_MS / 1000 * fps)))
    with atomic_path(path, suffix=".mp4", make_folder=True) as tmp:
        writer = imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                    macro_block_size=2)
        try:
            for number, frame in enumerate(frames):
                rgb = palette[_even(frame)]  # (h, w, 3); yuv420p needs even sides
                for _ in range(hold if number == len(frames) - 1 else 1):
                    writer.append_data(rgb)
        finally:
            writer.close()


def has_ffmpeg() -> bool:
    """Whether the optional extra attnviz[mp4] (imageio-ffmpeg) is installed."""
    return importlib.util.find_spec("imageio_ffmpeg") is not None


def require_ffmpeg() -> None:
    if not has_ffmpeg():
        raise AttnvizError(
            "writing .mp4 needs ffmpeg for imageio: pip install 'attnviz[mp4]', or write a .gif"
        )


def _even(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape
    return np.pad(frame, ((0, height % 2), (0, width % 2)), constant_values=BACKGROUND)


def write_pngs(directory: Path, frames: Sequence[np.ndarray], epochs: Sequence[int],
               palette: np.ndarray) -> list[Path]:
    """One palette PNG per frame, DIR/epoch_0007.png, each replaced whole."""
    paths = []
    for frame, epoch in zip(frames, epochs, strict=True):
        path = directory / f"epoch_{epoch:04d}.png"
        with atomic_path(path, suffix=".png", make_folder=True) as tmp:
            _palette_image(frame, palette).save(tmp, format="PNG")
        paths.append(path)
    return paths


# ---- from a run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AnimateOptions:
    """The `attnviz animate` options; see docs/animate.md."""

    output: Path | None = None  # .gif or .mp4; None: RUN/attention.gif
    fps: float = 10.0  # frames per second (the last frame holds HOLD_LAST_MS)
    mask: str | None = None  # ground truth drawn under the attention; None: the main mask
    cmap: str = "hot"  # a matplotlib colour map name
    every: int = 1  # keep every K-th recorded epoch (the last is always kept)
    samples: int | None = None  # show the first N probe samples; None: all
    scale: int = 16  # pixels per attention cell
    head: str | None = None  # self-attention: a head index or "mean" (None: "mean")
    query: str | None = None  # self-attention: a query index, "last" or "mean" (None: "last")
    vmax: str = "1"  # the value drawn in the top colour: a number, or "auto" (run maximum)
    frames_dir: Path | None = None  # also write one PNG per frame here
    layer: str | None = None  # a recorded layer (name or glob); None: the run's first


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


def animate(run_dir: Path, options: AnimateOptions) -> Animation:
    """Render the run's recorded attention, one frame per epoch, to a GIF or MP4."""
    started = time.perf_counter()
    _check_numbers(options)
    fixed_vmax = _parse_vmax(options.vmax)
    lut = colormap_lut(options.cmap)
    run = Run.open(run_dir)
    output = Path(options.output) if options.output else run.root / "attention.gif"
    _check_output(output, options.fps)
    frames, mask, mask_name = collect_frames(run, options)
    if options.frames_dir is not None:
        _prepare_frames_dir(Path(options.frames_dir))
    # 'auto': the largest attention value of the whole run, so frames share one scale
    vmax = fixed_vmax or max(float(frame.rows.max()) for frame in frames) or 1.0
    pictures = render_frames(frames, mask, options.scale, vmax, mask_name)
    palette = palette_for(lut)
    try:
        if output.suffix.lower() == ".mp4":
            write_mp4(output, pictures, palette, options.fps)
        else:
            write_gif(output, pictures, palette, options.fps)
        png_paths = []
        if options.frames_dir is not None:
            png_paths = write_pngs(Path(options.frames_dir), pictures,
                                   [frame.epoch for frame in frames], palette)
    except OSError as err:
        raise AttnvizError(f"cannot write {err.filename or output}: {err.strerror}") from None
    height, width = pictures[0].shape
    return Animation(
        path=output, frames=len(pictures), width=width, height=height,
        size_bytes=output.stat().st_size, epochs=[frame.epoch for frame in frames], vmax=vmax,
        attribution=any(frame.attribution is not None for frame in frames),
        png_paths=png_paths, seconds=time.perf_counter() - started,
    )


def collect_frames(
    run: Run, options: AnimateOptions
) -> tuple[list[FrameData], np.ndarray, str]:
    """The frames' data from a run, and the mask (n, L) shown under them with its name."""
    info = run.layer(options.layer)
    layer, keys = info["name"], info["shape"][-1]
    mask_name = options.mask or run.main_mask
    if mask_name is None:  # a run recorded without masks: an empty row
        mask, mask_name = np.zeros((run.header["probe"]["size"], keys), bool), "no mask"
    else:
        mask = run.mask(mask_name)
        if mask.shape[-1] != keys:
            raise AttnvizError(f"mask {mask_name} covers {mask.shape[-1]} positions and layer "
                               f"{layer} attends over {keys}: pick another --mask or --layer")
    epochs = keep_every(run, options.every)
    samples = resolve_samples(options.samples, mask.shape[0])
    head, query = _resolve_reduction(run, layer, options.head, options.query)
    losses = {record["epoch"]: record.get("loss") for record in run.history}
    attributed = set(run.attribution_epochs)
    total = run.epochs_planned
    frames = []
    for epoch, attention in run.iter_attention(epochs, layer):
        rows = attention_rows(attention, head=head, query=query)  # (n, L)
        loss = losses.get(epoch)
        header = [
            f"epoch {epoch}/{total}   loss " + ("-" if loss is None else f"{loss:.4g}"),
            f"mass on {mask_name} {mass(rows, mask):.3f}",
        ]
        if attributed:
            header.append("left: attention   right: |attribution| / its row maximum")
        attribution = None
        if epoch in attributed:
            attribution = _normalise_rows(np.abs(run.attribution(epoch))[:samples])
        frames.append(FrameData(epoch=epoch, rows=rows[:samples], attribution=attribution,
                                header=tuple(header)))
    return frames, mask[:samples], mask_name


def keep_every(run: Run, every: int) -> list[int]:
    """Every `every`-th recorded epoch of the run, and always the last."""
    recorded = sorted(run.attention_epochs)
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
    if options.scale < 1:
        raise AttnvizError(f"--scale {options.scale} must be 1 or more pixels per cell")


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


def _resolve_reduction(run: Run, layer: str, head: str | None, query: str | None) -> tuple:
    """Parse --head and --query into what score.attention_rows takes."""
    if run.layer(layer)["kind"] == "temporal":
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
