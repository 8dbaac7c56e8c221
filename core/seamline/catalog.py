"""``seamline recipes`` and ``seamline models``: what the installed plugins offer by name.

A recipe (:class:`~seamline.plugins.Recipe`) is a named starting point for training; a
shipped bundle (:class:`~seamline.plugins.ShippedBundle`) is a trained model to predict
with. Both are registered by plugins, and both are used by name: ``seamline train
--recipe NAME`` and ``--model NAME``. Listing them reads JSON cards only, never weights.
"""

from __future__ import annotations

import json

import click

from .plugins import owners, registry

__all__ = ["recipes_command", "models_command"]


@click.command("recipes")
@click.option("--json", "as_json", is_flag=True, help="Print each recipe's whole config as JSON.")
def recipes_command(as_json: bool) -> None:
    """List the training recipes of the installed plugins (seamline train --recipe NAME)."""
    recipes, plugin = registry("recipes"), owners("recipes")
    if as_json:
        rows = [{"name": r.name, "plugin": plugin[r.name], "description": r.description, "config": r.config}
                for r in recipes.values()]  # fmt: skip
        click.echo(json.dumps(rows, indent=2))
        return
    width = max((len(name) for name in recipes), default=0)
    for name, recipe in recipes.items():
        click.echo(f"{name:<{width}}  {recipe.description} [{plugin[name]}]")


def _summary(path: str) -> dict:
    """Bands, classes, tile and training of a shipped bundle, from its card alone."""
    from .bundle import read_card

    card = read_card(path)
    training = card.training or {}
    return {
        "architecture": card.architecture,
        "bands": card.bands or card.in_channels,
        "classes": list(card.class_names.values()),
        "tile_size": card.tile_size,
        "training": {k: training[k] for k in ("images", "epochs", "loss") if k in training},
    }


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_command(as_json: bool) -> None:
    """List the model bundles the installed plugins ship (use one with --model NAME)."""
    bundles, plugin = registry("bundles"), owners("bundles")
    rows = [{"name": name, "plugin": plugin[name], "description": b.description, **_summary(b.path())}
            for name, b in bundles.items()]  # fmt: skip
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']}: {row['description']} [{row['plugin']}]")
        bands = ", ".join(row["bands"]) if isinstance(row["bands"], list) else f"{row['bands']} bands"
        click.echo(f"  {row['architecture']}; bands: {bands}; classes: {', '.join(row['classes'])}")
        trained = ", ".join(f"{k} {v}" for k, v in row["training"].items())
        click.echo(f"  tile {row['tile_size']}; training: {trained or 'not recorded'}")
