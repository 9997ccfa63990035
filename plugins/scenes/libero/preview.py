"""``pxp scene preview SPEC --out DIR``: PNGs to look at before running anything."""
from __future__ import annotations

from pathlib import Path

import click

ORBITS = ((25.0, 0.0), (25.0, 90.0), (25.0, 180.0), (25.0, 270.0), (12.5, 45.0))


def _scene_config(spec_path: str, **overrides):
    import yaml

    from pxp.plugins.scenes.libero.config import LiberoSceneConfig

    data = yaml.safe_load(Path(spec_path).read_text()) or {}
    section = dict(data.get("scene") or {}) if isinstance(data, dict) else {}
    section.setdefault("type", "libero_bowl_plate")
    return LiberoSceneConfig(**{**section, **overrides})


def write_previews(cfg, out: Path) -> list[Path]:
    """Clean scene, distractor scene, circle overlay and orbit viewpoints of ``cfg``'s scene."""
    import imageio.v3 as iio

    from pxp.plugins.scenes.libero.scene import LiberoScene as make_scene

    out.mkdir(parents=True, exist_ok=True)
    written = []

    def save(name, img):
        path = out / f"{name}.png"
        iio.imwrite(path, img)
        written.append(path)

    for clutter in ("clean", "distractors"):
        with make_scene(cfg.model_copy(update={"clutter": clutter})) as scene:
            obs = scene.reset()
            save(f"{clutter}", obs["image"])
            if clutter == cfg.clutter:
                save("robot_hidden", scene.render(robot="hidden"))
                save("circle_overlay", scene.render(robot="circle"))
                for theta, phi in ORBITS:
                    scene.reset(view=(theta, phi))
                    save(f"orbit_theta{theta:g}_phi{phi:g}", scene.render())
    return written


@click.group("scene")
def scene_group():
    """Inspect the LIBERO bowl→plate scene."""


@scene_group.command("preview")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="directory for the PNGs")
def preview(spec, out):
    """Write PNGs of the clean scene, the distractor scene, the circle overlay and orbit viewpoints."""
    try:
        cfg = _scene_config(spec)
    except Exception as exc:  # a pydantic error names the bad field; show it without a traceback
        raise click.ClickException(f"bad scene section in {spec}: {exc}") from exc
    for path in write_previews(cfg, Path(out)):
        click.echo(str(path))
