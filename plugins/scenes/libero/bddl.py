"""BDDL task files for the bowl→plate scene.

``distractors`` is LIBERO-Spatial task 0 as shipped. ``clean`` is an edited copy with the distractor
objects (second bowl, cookies, ramekin), the furniture (cabinet, stove), their init entries and regions
removed; the goal is unchanged, so LIBERO's own success check still works (and ``env.step`` takes
≈ 8.7 ms instead of 13 ms).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

TASK = "libero_spatial/pick_up_the_black_bowl_between_the_plate_and_the_ramekin_and_place_it_on_the_plate.bddl"

CLEAN_BDDL = """\
(define (problem LIBERO_Tabletop_Manipulation)
  (:domain robosuite)
  (:language Pick the akita black bowl between the plate and the ramekin and place it on the plate)
    (:regions
      (plate_region
          (:target main_table)
          (:ranges (
              (0.05 0.19 0.07 0.21)
            )
          )
      )
      (between_plate_ramekin_region
          (:target main_table)
          (:ranges (
              (-0.06 0.19 -0.04 0.21)
            )
          )
      )
    )

  (:fixtures
    main_table - table
  )

  (:objects
    akita_black_bowl_1 - akita_black_bowl
    plate_1 - plate
  )

  (:obj_of_interest
    akita_black_bowl_1
    plate_1
  )

  (:init
    (On akita_black_bowl_1 main_table_between_plate_ramekin_region)
    (On plate_1 main_table_plate_region)
  )

  (:goal
    (And (On akita_black_bowl_1 plate_1))
  )

)
"""


def task_bddl(clutter: str, cache_dir: Path) -> Path:
    """Path of the BDDL file for ``clutter`` ("clean" | "distractors")."""
    from libero.libero import get_libero_path

    if clutter == "distractors":
        return Path(get_libero_path("bddl_files")) / TASK
    if clutter != "clean":
        raise ValueError(f"unknown clutter {clutter!r}: expected 'clean' or 'distractors'")
    # Content-addressed name: concurrent processes write identical files, never a half-written one.
    path = Path(cache_dir) / f"bowl_plate_clean_{hashlib.sha1(CLEAN_BDDL.encode()).hexdigest()[:10]}.bddl"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(CLEAN_BDDL)
        tmp.replace(path)
    return path
