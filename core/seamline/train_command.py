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
    "Train a segmentation model from CONFIG (YAML) and save it as a bundle in OUT/model.\n\n"
    "OUT also receives checkpoint/ (resume with --resume), history.csv and history.json. "
    "Paths in the config are relative to the config file; --out is relative to the current "
    "directory. An example config:\n\n\b\n" + EXAMPLE
)


@click.command("train", help=_HELP)
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Output directory (overrides the config's out).")
@click.option("--epochs", type=int, help="Number of epochs (overrides training.epochs).")
@click.option("--device", help="auto, cpu, cuda, cuda:1, ... (overrides training.device).")
@click.option("--seed", type=int, help="Random seed (overrides training.seed).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint (an error when there is none).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier run in OUT.")
@click.option("--progress/--no-progress", default=None, help="Show progress bars (overrides training.progress).")
def command(config: str, resume: bool, overwrite: bool, **options: Any) -> None:
    from .training import train

    overrides = {key: value for key, value in options.items() if value is not None}
    result = train(config, resume=resume, overwrite=overwrite, **overrides)
    last = result.history[-1] if result.history else {}
    figures = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if isinstance(v, float))
    click.echo(f"trained {len(result.history)} epochs ({figures})")
    if result.best_metric is not None:
        click.echo(f"best epoch {result.best_epoch}: {result.best_metric:.4f}")
    click.echo(f"model bundle: {result.path}")
