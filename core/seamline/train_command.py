"""``seamline train CONFIG.yaml``: train a model from a config file and save a bundle.

The config is checked before anything heavy starts (unknown keys, wrong types and
missing files are one-line errors naming the file and the key); torch is imported only
once the command runs.
"""

from __future__ import annotations

from typing import Any

import click

from .training.config import EXAMPLE

__all__ = ["command"]

_HELP = (
    "Train a segmentation model from CONFIG (YAML), or from a recipe, and save it as a bundle in OUT/model.\n\n"
    "With --recipe NAME no file is needed: the recipe (see `seamline recipes`) gives the model, "
    "normalization, patches and loss, and --image, --labels and --out the rest. A config may also "
    "start from a recipe (`recipe: NAME`); the config's values override the recipe's, and options "
    "override both. OUT also receives checkpoint/ (resume with --resume), history.csv and "
    "history.json. Paths in the config are relative to the config file; options are relative to the "
    "current directory. An example config:\n\n\b\n" + EXAMPLE
)


def _names(text: str | None) -> list[int | str] | None:
    """Comma-separated names (or 1-based band numbers)."""
    if not text:
        return None
    return [int(v) if v.strip().isdigit() else v.strip() for v in text.split(",")]


@click.command("train", help=_HELP)
@click.argument("config", type=click.Path(dir_okay=False), required=False)
@click.option("--recipe", help="Start from this recipe (seamline recipes).")
@click.option("--image", type=click.Path(), help="The training image (overrides data.image).")
@click.option("--labels", type=click.Path(), help="Its labels: a raster, or polygons (overrides data.labels).")
@click.option("--bands", help="Bands to read, by 1-based index or name, comma-separated (overrides data.bands).")
@click.option("--classes", help="Class names, background first, comma-separated (overrides classes).")
@click.option("--out", type=click.Path(file_okay=False), help="Output directory (overrides the config's out).")
@click.option("--epochs", type=int, help="Number of epochs (overrides training.epochs).")
@click.option("--device", help="auto, cpu, cuda, cuda:1, ... (overrides training.device).")
@click.option("--seed", type=int, help="Random seed (overrides training.seed).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint (an error when there is none).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier run in OUT.")
@click.option("--progress/--no-progress", default=None, help="Show progress bars (overrides training.progress).")
def command(
    config: str | None,
    image: str | None,
    labels: str | None,
    bands: str | None,
    classes: str | None,
    resume: bool,
    overwrite: bool,
    **options: Any,
) -> None:
    from .errors import InputError
    from .training import train

    if config is None and options.get("recipe") is None:
        raise InputError("give a CONFIG file or --recipe NAME (seamline recipes lists them)")
    data = {"image": image, "labels": labels, "bands": _names(bands)}
    overrides = {key: value for key, value in options.items() if value is not None}
    if any(v is not None for v in data.values()):
        overrides["data"] = {k: v for k, v in data.items() if v is not None}
    if classes:
        overrides["classes"] = [name.strip() for name in classes.split(",")]
    result = train(config, resume=resume, overwrite=overwrite, **overrides)
    last = result.history[-1] if result.history else {}
    figures = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if isinstance(v, float))
    click.echo(f"trained {len(result.history)} epochs ({figures})")
    if result.best_metric is not None:
        click.echo(f"best epoch {result.best_epoch}: {result.best_metric:.4f}")
    click.echo(f"model bundle: {result.path}")
