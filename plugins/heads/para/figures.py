"""PARA's prediction figure: each future step's probability map over the image.

The map is the softmax over the whole (height bin × pixel) volume, summed over height bins (each map
sums to 1), overlaid on the dimmed frame in 'inferno' colours, with its peak probability in the corner.
"""
from __future__ import annotations

import numpy as np

FLAT = 20.0  # heatmap colours saturate at the peak, or at FLAT x the uniform probability if that is higher
WHITE = (255, 255, 255)


def heatmaps(policy, image, state: dict, camera) -> np.ndarray:
    """(T, h, w) per-step probability maps over the heatmap grid of a volume head's policy.
    Other heads have no heatmap: TypeError."""
    import torch

    if getattr(policy.head, "output_kind", None) != "volume":
        raise TypeError(f"{type(policy.head).__name__} is a {getattr(policy.head, 'output_kind', '?')!r} head: "
                        "it predicts points, not heatmaps (use infer()/predict())")
    out, _ = policy.infer(image, state, camera)
    logits = out["logits"][0].float()  # (T, N, h, w)
    T, N, h, w = logits.shape
    prob = torch.softmax(logits.reshape(T, -1), dim=-1).reshape(T, N, h, w).sum(dim=1)
    return prob.cpu().numpy()


class ParaFigure:
    title = "PARA"
    legend = "heatmap: softmax over pixel x height bin, summed over bins"

    def predict(self, policy, frame: dict) -> dict:
        state = {k: frame[k] for k in ("eef_pos", "eef_pixel", "gripper")}
        _, dec = policy.infer(frame["image"], state, frame["camera"])
        return {"pixel": dec["pixel"][0], "heatmaps": heatmaps(policy, frame["image"], state, frame["camera"])}

    def panel(self, base, row: dict, k: int, font, scale):
        from PIL import ImageDraw

        hm = np.asarray(row["heatmaps"][k], dtype=np.float64)
        p = _overlay(base, hm, base.size)
        d = ImageDraw.Draw(p)
        d.rectangle((0, 0, 92, 13), fill=(0, 0, 0))
        d.text((2, 1), f"peak {100 * hm.max():.1f}% ({hm.max() * hm.size:.0f}x unif.)", fill=WHITE, font=font)
        return p


def _overlay(base, hm: np.ndarray, size: tuple[int, int]):
    """The heatmap in the 'inferno' colours over a dimmed image."""
    from PIL import Image

    # Normalised to the peak, but never below FLAT x the uniform level: a flat (untrained or lost)
    # map stays faint instead of being stretched into a full-intensity haze.
    v = hm / max(float(hm.max()), FLAT / hm.size, 1e-12)
    v_img = Image.fromarray((v * 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    a = np.asarray(v_img, dtype=np.float64)[..., None] / 255.0
    colours = _lut()[np.asarray(v_img)]
    img = np.asarray(base, dtype=np.float64) * 0.6  # dimmed, so low probability reads dark
    alpha = np.clip(a ** 0.6 * 0.9, 0, 1)
    out = img * (1 - alpha) + colours * alpha
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


_LUT = None


def _lut() -> np.ndarray:
    """256 × 3 'inferno' colours (matplotlib's, read without pyplot)."""
    global _LUT
    if _LUT is None:
        try:
            from matplotlib import colormaps

            _LUT = (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.float64)
        except Exception:  # no matplotlib: black → red → yellow → white
            x = np.linspace(0, 1, 256)[:, None]
            _LUT = np.clip(np.concatenate([3 * x, 3 * x - 1, 3 * x - 2], axis=1), 0, 1) * 255
    return _LUT
