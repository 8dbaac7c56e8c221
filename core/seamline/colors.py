"""Class colours: what seamline paints a class that names no colour of its own.

Model cards, label tables and previews all need a colour per class. A class keeps the
colour its card or file gives it; a class without one gets :func:`class_color`, which is
black for the background (0) and then cycles through 20 colours chosen to be told apart
(Sasha Trubetskoy's list), so that a map and its legend agree everywhere they are drawn.
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_color"]

_PALETTE = np.array(
    [
        (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
        (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
        (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
        (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
    ],
    dtype=np.uint8,
)  # fmt: skip


def class_color(label: int) -> tuple[int, int, int]:
    """The colour seamline gives a class that names none: black for 0, then 20 distinct colours.

    Parameters
    ----------
    label : int
        The class id.

    Returns
    -------
    tuple of int
        ``(r, g, b)`` in 0..255.
    """
    if label == 0:
        return (0, 0, 0)
    r, g, b = (int(c) for c in _PALETTE[(int(label) - 1) % len(_PALETTE)])
    return (r, g, b)
