"""Colours of a picture: intensities through a display window, labels in their class colours.

Map and volume previews (:mod:`seamline.map_preview`, :mod:`seamline.volume_preview`)
share three steps, kept here so that both look alike:

- :func:`display_range`: the intensities shown from black to white, a fixed ``(low,
  high)`` window (a CT window in HU) or percentiles of the pixels drawn (2-98 by default);
- :func:`label_rgba`: every label in its class colour (``meta["colors"]``, else
  :func:`seamline.colors.class_color`), the background (0) transparent;
- :func:`legend`: one entry per class shown, named by ``meta["class_names"]``, and the
  reference outlines when there are some.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .colors import class_color
from .errors import InputError

__all__ = ["display_range", "stretch", "label_rgba", "legend", "outline_style", "draw_outlines", "OUTLINE_COLOR"]

#: Reference outlines: white with a black edge, apart from every class colour and seen on any ground.
OUTLINE_COLOR = "white"
_OUTLINE_WIDTH = 1.2
_DEFAULT_PERCENTILES = (2.0, 98.0)
_LEGEND_ROWS = 16
_UNNAMED_MAX = 10


def display_range(pixels: np.ndarray, window: Any = None) -> tuple[float, float]:
    """The intensities drawn as black and as white.

    Parameters
    ----------
    pixels : numpy.ndarray
        The valid pixels that will be drawn (NaN is ignored).
    window : (float, float) or dict, optional
        ``(low, high)`` in the image's units; or a :mod:`seamline.normalize` spec of kind
        ``"window"`` (``{"kind": "window", "low": -160, "high": 240}``, a CT window) or
        ``"percentile"`` (``{"kind": "percentile", "low": 1, "high": 99}``, MR). By
        default the 2nd and 98th percentiles of *pixels*.

    Returns
    -------
    (float, float)

    Raises
    ------
    InputError
        If the window is not one of these, or its low end is not below its high end.

    Examples
    --------
    >>> display_range(np.arange(101.0))
    (2.0, 98.0)
    >>> display_range(np.arange(101.0), {"kind": "window", "low": -160, "high": 240})
    (-160.0, 240.0)
    """
    kind = "percentile"
    low, high = _DEFAULT_PERCENTILES
    if isinstance(window, Mapping):
        kind = window.get("kind", "window")
        if kind not in ("window", "percentile") or "low" not in window or "high" not in window:
            raise InputError(f"a display window is (low, high) or a window or percentile spec, got {dict(window)}")
        low, high = window["low"], window["high"]
    elif window is not None:
        kind = "window"
        low, high = window
    low, high = float(low), float(high)
    if not low < high:
        raise InputError(f"a display window needs low < high, got ({low}, {high})")
    if kind == "window":
        return low, high
    finite = pixels[np.isfinite(pixels)]
    if finite.size == 0:
        return 0.0, 1.0
    bounds = np.percentile(finite, [low, high])
    return float(bounds[0]), float(bounds[1])


def stretch(pixels: np.ndarray, low: float, high: float) -> np.ndarray:
    """The RGBA picture of *pixels*: ``[low, high]`` scaled to ``[0, 1]``, clipped; NaN transparent.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(bands, rows, cols)`` with three bands (red, green, blue) or one (grey).
    low, high : float
        The display range.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols, 4)``.

    Examples
    --------
    >>> stretch(np.array([[[0.0, 5.0, np.nan]]]), 0.0, 10.0).tolist()
    [[[0.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 1.0], [0.0, 0.0, 0.0, 0.0]]]
    """
    scaled = np.clip((pixels.astype(float) - low) / max(high - low, 1e-12), 0, 1)
    rgb = np.moveaxis(np.repeat(scaled, 3, axis=0) if scaled.shape[0] == 1 else scaled, 0, -1)
    missing = np.isnan(rgb).any(axis=-1, keepdims=True)
    return np.concatenate([np.nan_to_num(rgb), (~missing).astype(float)], axis=-1)


def _rgb(label: int, colors: Mapping[int, Sequence[int]] | None) -> tuple[float, float, float]:
    """The class colour of *label*, in 0..1."""
    red, green, blue = tuple((colors or {}).get(int(label)) or class_color(int(label)))[:3]
    return red / 255.0, green / 255.0, blue / 255.0


def label_rgba(values: np.ndarray, colors: Mapping[int, Sequence[int]] | None = None) -> np.ndarray:
    """RGBA in ``[0, 1]`` of every label: its class colour, the background (0) transparent.

    Parameters
    ----------
    values : numpy.ndarray
        Integer labels.
    colors : mapping of int to (r, g, b), optional
        Class colours in 0..255 (``meta["colors"]``); classes without one get
        :func:`seamline.colors.class_color`.

    Returns
    -------
    numpy.ndarray
        Shaped ``values.shape + (4,)``.

    Examples
    --------
    >>> label_rgba(np.array([0, 2]), {2: (255, 0, 0)}).tolist()
    [[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0]]
    """
    present, where = np.unique(values, return_inverse=True)
    table = np.array([(*_rgb(v, colors), float(v != 0)) for v in present])
    return table[where.reshape(values.shape)]


def outline_style() -> dict[str, Any]:
    """The matplotlib options that draw a reference outline: a black edge around a white line.

    Returns
    -------
    dict
        ``path_effects`` for a line or a collection.
    """
    import matplotlib.patheffects as effects

    return {"path_effects": [effects.Stroke(linewidth=2.5 * _OUTLINE_WIDTH, foreground="black"), effects.Normal()]}


def draw_outlines(ax: Any, values: np.ndarray, extent: Sequence[float]) -> None:
    """Outline every class of the label array *values* (drawn over *extent*), as reference outlines.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    values : numpy.ndarray
        2D integer labels; 0 is background and has no outline.
    extent : (left, right, bottom, top)
        Where the array lies on *ax*, as for ``imshow``.
    """
    for value in np.unique(values):
        if value != 0:
            mask = (values == value).astype(float)
            style = {"colors": OUTLINE_COLOR, "linewidths": _OUTLINE_WIDTH, "extent": extent, "origin": "upper"}
            ax.contour(mask, levels=[0.5], **style).set(**outline_style())


def legend(
    ax: Any,
    classes: Iterable[int],
    *,
    names: Mapping[int, str] | Sequence[str] | None,
    colors: Mapping[int, Sequence[int]] | None,
    alpha: float,
    outlines: str | None = None,
) -> Any:
    """Put a legend beside *ax*: one patch per class, and a line for the reference outlines.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The picture; the legend goes outside its right edge.
    classes : iterable of int
        The classes shown (0, the background, is left out; without names, more than ten
        are taken for numbered instances and left out too).
    names, colors : mapping, optional
        ``meta["class_names"]`` and ``meta["colors"]`` of the labels.
    alpha : float
        The opacity the classes are drawn with.
    outlines : str, optional
        The legend entry of the reference outlines, when drawn.

    Returns
    -------
    matplotlib.legend.Legend or None
        None when there is nothing to name.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if names is not None and not isinstance(names, Mapping):
        names = dict(enumerate(names))
    shown = sorted({int(c) for c in classes} - {0})
    if not names and len(shown) > _UNNAMED_MAX:
        shown = []  # numbered instances, not classes: a list of numbers would say nothing
    handles: list[Any] = [
        Patch(
            facecolor=_rgb(c, colors),
            alpha=alpha,
            edgecolor="none",
            label=(names or {}).get(c, f"class {c}"),
        )
        for c in shown
    ]
    if outlines:
        handles.append(Line2D([], [], color=OUTLINE_COLOR, linewidth=_OUTLINE_WIDTH, label=outlines, **outline_style()))
    if not handles:
        return None
    return ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0.0,
        frameon=False,
        fontsize="small",
        ncol=math.ceil(len(handles) / _LEGEND_ROWS),
    )
