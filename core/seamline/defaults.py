"""The defaults of tiled prediction, each set once.

A model card, a training config, the engine and the command line all fall back on these
when nothing more specific is given, so that one run means the same thing everywhere.
"""

from __future__ import annotations

__all__ = ["OVERLAP", "BLEND", "BATCH_SIZE", "TILE_SIZE"]

#: The fraction of a tile shared with each neighbour.
OVERLAP = 0.25
#: The weight window that blends overlapping tiles (equal to MONAI's ``mode="gaussian"``).
BLEND = "gaussian"
#: Tiles per model call.
BATCH_SIZE = 4
#: A model card's tile size when its training config names none (pixels per side).
TILE_SIZE = 256
