"""mp4 videos of episodes with the stage badge overlaid (the scene's ``Outcomes.badges``: text and colour)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from pxp.core import io

@lru_cache(maxsize=4)
def _font(size: int):
    from PIL import ImageFont
    import matplotlib

    # DejaVu (shipped with matplotlib) has the ✔ ↑ ✘ glyphs; PIL's default bitmap font does not.
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    return ImageFont.truetype(str(path), size)


def overlay_stage(frame: np.ndarray, stage: str | None, caption: str = "", badges: dict | None = None) -> np.ndarray:
    """Draw the stage's badge (``badges[stage]`` = (text, RGB)) and an optional caption on a copy of a frame."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(img)
    size = max(10, img.height // 14)
    if stage in (badges or {}):
        text, colour = badges[stage]
        box = draw.textbbox((0, 0), text, font=_font(size))
        w, h = box[2] - box[0] + 2 * (pad := size // 3), box[3] - box[1] + 2 * pad
        draw.rectangle([4, 4, 4 + w, 4 + h], fill=colour)
        draw.text((4 + pad - box[0], 4 + pad - box[1]), text, fill=(255, 255, 255), font=_font(size))
    if caption:
        font = _font(max(7, size * 3 // 5))
        while len(caption) > 4 and draw.textlength(caption, font=font) > img.width - 12:
            caption = caption[:-2].rstrip() + "…"  # keep it on the frame rather than cut at the edge
        draw.text((6, img.height - font.size - 6), caption, fill=(255, 255, 255), font=font,
                  stroke_width=2, stroke_fill=(0, 0, 0))
    return np.asarray(img)


def write_video(path: Path | str, frames, *, stages=None, caption: str = "", fps: int = 20,
                badges: dict | None = None) -> Path:
    """Write frames (N, H, W, 3 uint8) as an H.264 mp4; ``stages`` is one label per frame or one for all,
    drawn with ``badges`` (the scene's ``Outcomes.badges``)."""
    import imageio.v3 as iio

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected frames of shape (N, H, W, 3), got {frames.shape}")
    if stages is None or isinstance(stages, str):
        stages = [stages] * len(frames)
    # H.264 with yuv420p needs even sizes; pad by one pixel where needed.
    ph, pw = frames.shape[1] % 2, frames.shape[2] % 2
    out = [np.pad(overlay_stage(f, s, caption, badges), ((0, ph), (0, pw), (0, 0))) for f, s in zip(frames, stages)]
    with io.atomic_path(path) as tmp:
        iio.imwrite(tmp, np.stack(out), fps=fps, codec="libx264", plugin="pyav" if _has_pyav() else "FFMPEG",
                    **({} if _has_pyav() else {"macro_block_size": 1}))
    return Path(path)


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True
