"""Models from other tools: what their sources leave unsaid, and how the user says it.

A model folder or checkpoint made by another tool says part of what a seamline model
card holds: an smp folder knows how many classes it has but not their names, a bare
checkpoint knows neither its bands nor how its input was normalized. A model format
(:class:`~seamline.plugins.ModelFormat`) fills the card with what its source says,
puts placeholders elsewhere, and lists those fields in ``Bundle.missing``.

:func:`fill_card` puts in what the user gives instead: band names, class names, a
normalization (a spec, its JSON, ``"none"`` or the name of a recipe whose normalization
to take), tile size and overlap. :func:`load_foreign` is how :func:`seamline.load_model`
loads through a format: the options the format takes go to it, the card's to
:func:`fill_card`. ``seamline import-model`` refuses to write a bundle while a field is
still missing.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import InputError, ModelError

if TYPE_CHECKING:
    from .bundle import Bundle
    from .records import ModelFormat

__all__ = ["CARD_OPTIONS", "fill_card", "load_foreign", "named_normalization", "parse_model_options"]

#: Options of :func:`seamline.load_model` that set card fields rather than go to a format.
CARD_OPTIONS = ("bands", "classes", "normalization", "tile_size", "overlap")


def parse_model_options(
    pairs: Sequence[str], *, architecture: str | None = None, what: str = "model option"
) -> dict[str, Any]:
    """Options for :func:`seamline.load_model` from the command line's ``KEY=VALUE`` pairs.

    ``seamline predict --input-option`` reads a reader's options the same way.

    Parameters
    ----------
    pairs : sequence of str
        ``"in_channels=4"``, ``"encoder_name=resnet34"``, ``'classes=["bg", "field"]'``:
        each value is read as JSON when it is JSON, else kept as text.
    architecture : str, optional
        Added as the ``architecture`` option.
    what : str
        What the options are, for messages.

    Returns
    -------
    dict

    Raises
    ------
    InputError
        If a pair has no ``=`` or a key is given twice.
    """
    options: dict[str, Any] = {} if architecture is None else {"architecture": architecture}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        key = key.strip()
        if not equals or not key.isidentifier():
            raise InputError(f"a {what} is KEY=VALUE, got {pair!r}")
        if key in options:
            raise InputError(f"{what} {key!r} given twice")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options


def named_normalization(spec: Mapping[str, Any] | str) -> dict[str, Any]:
    """A normalization spec from a mapping, its JSON text, ``"none"`` or a recipe's name.

    Parameters
    ----------
    spec : mapping or str
        A :mod:`seamline.normalize` spec; or text: JSON of one, ``"none"``, or the name of
        a registered recipe (``seamline plugins --all``) whose normalization to take.

    Returns
    -------
    dict

    Raises
    ------
    InputError
        If the text is neither JSON, ``"none"`` nor a recipe with a normalization, or the
        spec is not valid.
    """
    from .normalize import _checked

    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("{"):
            try:
                spec = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"normalization is not valid JSON: {exc}") from exc
        elif text == "none":
            spec = {"kind": "none"}
        else:
            from .plugins import registry

            named = {
                n: r.config["normalization"] for n, r in registry("recipes").items() if "normalization" in r.config
            }
            if text not in named:
                choices = ", ".join(["none", *named])
                raise InputError(f"unknown normalization {text!r}: give a JSON spec or one of {choices}")
            spec = named[text]
    if not isinstance(spec, Mapping):
        raise InputError(f"a normalization is a JSON object such as {{'kind': 'zscore'}}, got {spec!r}")
    return _checked(spec)


def _class_names(card: Any, classes: int | Sequence[Any]) -> list[Any] | None:
    """The class records *classes* names, or None for a count (which is only checked)."""
    count = len(card.classes)
    if isinstance(classes, int) and not isinstance(classes, bool):
        if classes not in (count, card.kwargs.get("classes", count)):
            raise InputError(f"classes={classes}, but the model has {count} classes")
        return None
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise InputError(f"classes takes a count or a list of names, got {classes!r}")
    if len(classes) != count:
        raise InputError(f"{len(classes)} class names for a model with {count} classes (0..{count - 1})")
    return [{"id": i, "name": c} if isinstance(c, str) else c for i, c in enumerate(classes)]


def fill_card(bundle: Bundle, **fields: Any) -> Bundle:
    """Set card fields the user gives, checked against the model, and drop them from ``missing``.

    Parameters
    ----------
    bundle : Bundle
        A model loaded through a model format; changed in place.
    **fields
        Any of :data:`CARD_OPTIONS`: ``bands`` (names, one per input channel), ``classes``
        (names, one per class; or their count, which is only checked), ``normalization``
        (see :func:`named_normalization`), ``tile_size``, ``overlap``. None leaves a field.

    Returns
    -------
    Bundle
        *bundle*.

    Raises
    ------
    InputError
        If a field is unknown or does not fit the model (band or class counts).
    """
    unknown = sorted(set(fields) - set(CARD_OPTIONS))
    if unknown:
        raise InputError(f"not card fields: {', '.join(unknown)}; they are {', '.join(CARD_OPTIONS)}")
    given = {name: value for name, value in fields.items() if value is not None}
    card = bundle.card
    if "bands" in given:
        bands = given["bands"]
        bands = [b.strip() for b in bands.split(",")] if isinstance(bands, str) else [str(b) for b in bands]
        if len(bands) != card.in_channels:
            raise InputError(f"{len(bands)} band names for a model that takes {card.in_channels} bands")
        given["bands"] = bands
    if "classes" in given:
        names = _class_names(card, given.pop("classes"))
        if names is not None:
            given["classes"] = names
    if "normalization" in given:
        given["normalization"] = named_normalization(given["normalization"])
    try:
        bundle.card = dataclasses.replace(card, **given)
    except ModelError as exc:
        raise InputError(exc.message) from exc
    bundle.missing = tuple(name for name in bundle.missing if name not in given)
    return bundle


def load_foreign(found: ModelFormat, path: str | os.PathLike, options: Mapping[str, Any]) -> Bundle:
    """Load *path* through the model format *found*, with the options of :func:`seamline.load_model`.

    Parameters
    ----------
    found : ModelFormat
        The format that recognised *path*.
    path : str or os.PathLike
        The model folder or file.
    options : mapping
        The format's own options, and card fields (:data:`CARD_OPTIONS`) that the format
        does not take by name, which :func:`fill_card` sets afterwards.

    Returns
    -------
    Bundle

    Raises
    ------
    ModelError
        If the format does not take an option (its options are listed).
    InputError
        If a card field does not fit the model.
    """
    parameters = inspect.signature(found.load).parameters
    named = {name for name, p in parameters.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    named.discard(next(iter(parameters), ""))  # the path
    own = {key: value for key, value in options.items() if key not in CARD_OPTIONS or key in named}
    card_fields = {key: value for key, value in options.items() if key not in own}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    unknown = sorted(set(own) - named)
    if unknown and not takes_any:
        takes = ", ".join(sorted(named | set(CARD_OPTIONS)))
        raise ModelError(f"a {found.name} model takes no option {', '.join(unknown)}; it takes {takes}", path)
    bundle = found.load(os.fspath(path), **own)
    return fill_card(bundle, **card_fields) if card_fields else bundle
