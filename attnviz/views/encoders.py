"""Writing palette frames: a GIF (the palette as its only colour table, unchanged pixels
transparent), an MP4 through imageio-ffmpeg, or one PNG per frame."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from attnviz.errors import AttnvizError
from attnviz.store.files import atomic_path
from attnviz.views.colors import BACKGROUND, UNCHANGED

HOLD_LAST_MS = 2000  # the last frame stays this long before the loop starts again
GIF_MAX_FPS = 50  # GIF delays are in 1/100 s and viewers slow anything under 2/100 s
SUFFIXES = (".gif", ".mp4")


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


def write_pngs(directory: Path, frames: Sequence[np.ndarray], points: Sequence[int],
               palette: np.ndarray, axis: str = "epoch") -> list[Path]:
    """One palette PNG per frame, DIR/epoch_0007.png (by steps: step_00000650.png), each
    replaced whole."""
    paths = []
    for frame, point in zip(frames, points, strict=True):
        path = directory / (f"epoch_{point:04d}.png" if axis == "epoch"
                            else f"step_{point:08d}.png")
        with atomic_path(path, suffix=".png", make_folder=True) as tmp:
            _palette_image(frame, palette).save(tmp, format="PNG")
        paths.append(path)
    return paths
