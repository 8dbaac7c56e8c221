"""The training loop: AdamW, a warm-up + cosine/one-cycle schedule, checkpoints, resume.

:func:`train` reads a :class:`~seamline.training.config.TrainConfig`, opens the image and
its labels lazily, and then, epoch after epoch:

1. draws ``patches.per_epoch`` patches (:class:`~.sampling.PatchSampler`) from a
   generator seeded with ``(seed, epoch)``, augments them (:func:`~.augment.augment`)
   and takes AdamW steps, ``accumulate`` batches per step, in mixed precision on CUDA;
2. predicts the *whole* validation region through the engine, exactly as a user would
   (:meth:`seamline.bundle.Bundle.predict`), and scores it with
   :func:`seamline.metrics.evaluate`;
3. writes a checkpoint (bundle + optimizer tensors + JSON, no pickle) and the history
   (``history.csv``, ``history.json``), keeps the best bundle in ``out/model`` and stops
   early after ``patience`` epochs without improvement.

Because every epoch's randomness comes from ``(seed, epoch)`` and the checkpoint holds
the optimizer state, a run resumed after an interruption ends with the same weights as
one that was never interrupted.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import torch
from tqdm import tqdm

from .. import io as seamline_io
from ..atomic import atomic_output, check_writable
from ..bundle import Bundle, ModelCard, build_module, load_model, save_model
from ..devices import autocast, autocast_dtype, resolve_device
from ..errors import InputError
from ..image import Image, check_same_grid
from ..normalize import fit_normalization, normalize
from ..plugins import call_hook, registry
from .augment import augment
from .checkpoint import load_checkpoint, save_checkpoint
from .config import METRICS, SCHEDULES, TrainConfig, load_config
from .losses import make_loss
from .sampling import PatchSampler, TrainingPair, free_window, read_labels, split_region

__all__ = ["train", "TrainResult", "learning_rate"]

_LOWER_IS_BETTER = ("mean_hd95",)


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    bundle : Bundle
        The final model (the best on validation, or the last without validation).
    path : pathlib.Path
        Where that bundle was saved (``out/model``).
    history : list of dict
        One row per epoch: epoch, loss, lr, seconds and the validation figures.
    best_epoch : int or None
        The epoch of the saved bundle.
    best_metric : float or None
        Its validation metric.
    stopped_early : bool
        Whether early stopping ended the run.
    """

    bundle: Bundle
    path: Path
    history: list[dict[str, Any]]
    best_epoch: int | None
    best_metric: float | None
    stopped_early: bool


def learning_rate(step: int, total: int, *, lr: float, schedule: str, warmup: float) -> float:
    """The learning rate at optimizer step *step* of *total*.

    Parameters
    ----------
    step, total : int
        The step (from 0) and the number of steps of the run.
    lr : float
        The peak learning rate.
    schedule : {"cosine", "onecycle", "constant"}
        ``cosine``: linear warm-up, then cosine decay to 0; ``onecycle``: the same shape
        with a 30% warm-up and decay to lr/1000 (Smith's one-cycle); ``constant``: warm-up
        then flat.
    warmup : float
        Share of the steps spent warming up linearly from 0 (cosine, constant).

    Returns
    -------
    float
    """
    if schedule not in SCHEDULES:
        raise InputError(f"optimizer.schedule: unknown schedule {schedule!r}; one of {', '.join(SCHEDULES)}")
    warm = max(1, round(total * (0.3 if schedule == "onecycle" else warmup)))
    if step < warm:
        return lr * (step + 1) / warm
    if schedule == "constant":
        return lr
    progress = (step - warm) / max(1, total - warm)
    floor = lr / 1000 if schedule == "onecycle" else 0.0
    return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _open_labels(path: str, image: Image, cfg: TrainConfig) -> Image:
    """A label raster on the image's grid, or vector labels rasterized onto it (``like=``)."""
    try:
        labels = seamline_io.open(path)
    except InputError as plain:
        options = {"attribute": cfg.data.label_attribute, "crs": cfg.data.label_crs}
        try:
            return seamline_io.open(path, like=image, **{k: v for k, v in options.items() if v is not None})
        except TypeError:  # a reader that takes no like=: the first error says what is wrong
            raise plain from None
    try:
        check_same_grid(image, labels, ("image", "labels"))
    except InputError as exc:
        raise InputError(exc.message, path) from exc
    return labels


def _open_pair(image_path: str, labels_path: str, cfg: TrainConfig) -> tuple[Image, Image]:
    options = {"bands": cfg.data.bands} if cfg.data.bands else {}
    image = seamline_io.open(image_path, **options)
    if cfg.card.bands:
        if len(cfg.card.bands) != image.channels:
            raise InputError(
                f"card.bands names {len(cfg.card.bands)} bands {cfg.card.bands}, the image has {image.channels}",
                image_path,
            )
        image = image.replace(meta={**image.meta, "band_names": list(cfg.card.bands)})
    labels = _open_labels(labels_path, image, cfg)
    label_map = {int(k): int(v) for k, v in (cfg.data.label_map or {}).items()}
    labels = read_labels(labels, label_map=label_map, ignore_index=cfg.data.ignore_index)
    mask = image.valid_mask()
    if mask is not None:
        labels = labels.replace(data=da.where(mask[None], labels.data, cfg.data.ignore_index))
    return _on_model_grid(image, labels, cfg)


def _on_model_grid(image: Image, labels: Image, cfg: TrainConfig) -> tuple[Image, Image]:
    """Image and labels on the grid the model will see when predicting (``seamline_prepare_input``).

    A volume is reoriented to RAS and resampled to ``predict.target_spacing`` (labels by
    nearest neighbour), as :meth:`Bundle.predict` will do with the trained bundle.
    """
    card = _card(cfg, image, cfg.normalization)
    prepared = call_hook("seamline_prepare_input", image=image, card=card, kind="image")
    if prepared is None:
        return image, labels
    return prepared[0], call_hook("seamline_prepare_input", image=labels, card=card, kind="labels")[0]


def _regions(cfg: TrainConfig, image: Image) -> tuple[tuple, list, list]:
    """(training region, windows excluded from training, validation windows); checks that a patch fits."""
    full = tuple(slice(0, n) for n in image.spatial_shape)
    val = cfg.validation
    if val is None or val.image:
        regions: tuple[tuple, list, list] = (full, [], [])
    elif val.windows:
        windows = [tuple(slice(int(a), int(b)) for a, b in window) for window in val.windows]
        regions = (full, windows, windows)
    else:
        train_region, val_region = split_region(image.spatial_shape, val.split, fraction=val.fraction, side=val.side)
        regions = (train_region, [], [val_region])
    free_window(regions[0], regions[1], cfg.patches.size)
    return regions


def _card(cfg: TrainConfig, image: Image, normalization: dict) -> ModelCard:
    kwargs = dict(cfg.model.kwargs)
    kwargs.pop("encoder_weights", None)  # the start of training; the bundle holds the trained weights
    record = registry("models").get(cfg.model.architecture)
    if record is not None and record.spatial_dims is None:
        kwargs.setdefault("spatial_dims", image.ndim)
    names = image.meta.get("band_names")
    return ModelCard(
        architecture=cfg.model.architecture,
        in_channels=image.channels,
        classes=list(cfg.classes),
        kwargs=kwargs,
        bands=list(names) if names and len(set(names)) == len(names) else None,
        normalization=normalization,
        tile_size=cfg.predict.tile_size or cfg.patches.size,
        overlap=cfg.predict.overlap,
        spatial_dims=image.ndim,
        target_spacing=cfg.predict.target_spacing,
    )


def _metric(report: Any, name: str) -> float:
    """The figure *name* of an evaluation report (an object score without its ``object_``)."""
    value = report.summary.get(name, (report.objects or {}).get(name.removeprefix("object_")))
    if value is None:
        raise InputError(f"training.metric: the validation gave no {name!r}")
    return float(value)


def _validate(bundle: Bundle, windows: list[tuple[Image, Image]], cfg: TrainConfig, device: str) -> dict[str, float]:
    from ..metrics import evaluate

    scores: list[float] = []
    options = {"boundary_tolerance": None, **METRICS[cfg.training.metric]}
    for image, truth in windows:
        prediction = bundle.predict(
            image, output="labels", batch_size=cfg.predict.batch_size, device=device, progress=False
        )
        report = evaluate(
            prediction, truth, num_classes=len(bundle.card.classes), ignore_index=cfg.data.ignore_index, **options
        )
        scores.append(_metric(report, cfg.training.metric))
    # predicting may have put the weights in channels-last memory; training goes on in the layout it began in
    bundle.module.to(memory_format=torch.contiguous_format).train()
    return {f"val_{cfg.training.metric}": float(np.mean(scores))}


def _write_history(out: Path, history: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    fields = list(dict.fromkeys(key for row in history for key in row))
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(history)
    for name, text in (("history.csv", buffer.getvalue()), ("history.json", json.dumps(history, indent=1))):
        with atomic_output(out / name, overwrite=True) as tmp:
            Path(tmp).write_text(text)


def _improves(value: float | None, best: float | None, *, lower: bool) -> bool:
    """Whether an epoch's validation *value* beats the *best* so far.

    Without validation (None) every epoch does, and so does the first epoch. A NaN value
    (no class present, say) never beats anything, and anything beats a NaN best.
    """
    if value is None or best is None:
        return True
    if math.isnan(value):
        return False
    return math.isnan(best) or (value < best if lower else value > best)


def _check_resumable(checkpoint: Path) -> None:
    """Raise InputError when there is no checkpoint to resume from."""
    if not (checkpoint / "state.json").is_file():
        aside = sorted(checkpoint.parent.glob(f".{checkpoint.name}.*.old"))
        hint = f"; an earlier one was left at {aside[-1].name}: rename it to {checkpoint.name}" if aside else ""
        raise InputError(f"nothing to resume: no checkpoint{hint}", checkpoint)


def _steps_per_epoch(cfg: TrainConfig) -> int:
    """Optimizer steps per epoch: ``per_epoch`` patches in batches, ``accumulate`` batches a step."""
    return max(1, max(1, cfg.patches.per_epoch // cfg.training.batch_size) // cfg.training.accumulate)


def _epoch(
    module: torch.nn.Module,
    sampler: PatchSampler,
    loss_fn: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    cfg: TrainConfig,
    epoch: int,
    total_steps: int,
    device: torch.device,
) -> dict[str, float]:
    rng = np.random.default_rng([cfg.training.seed, epoch])
    generator = torch.Generator().manual_seed(cfg.training.seed * 100_003 + epoch)
    loop, opt = cfg.training, cfg.optimizer
    steps = _steps_per_epoch(cfg)
    module.train()
    losses = []
    bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{loop.epochs}", disable=not loop.progress, leave=False)
    for step in bar:
        global_step = epoch * steps + step
        lr = learning_rate(global_step, total_steps, lr=opt.lr, schedule=opt.schedule, warmup=opt.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        for _ in range(loop.accumulate):
            patches, truth = sampler.batch(rng, loop.batch_size)
            images, labels = augment(
                torch.from_numpy(patches), torch.from_numpy(truth), generator, **dataclasses.asdict(cfg.augment)
            )
            with autocast(device, loop.amp):
                logits = module(images.to(device))
            loss = loss_fn(logits.float(), labels.to(device)) / loop.accumulate
            scaler.scale(loss).backward()
            losses.append(float(loss.detach()) * loop.accumulate)
        scaler.step(optimizer)
        scaler.update()
        bar.set_postfix(loss=f"{np.mean(losses):.4f}")
    return {"loss": float(np.mean(losses)), "lr": lr}


def train(
    config: str | os.PathLike | dict | TrainConfig | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    **overrides: Any,
) -> TrainResult:
    """Train a model from a config and save it as a bundle.

    Parameters
    ----------
    config : path, dict, TrainConfig or None
        A YAML config file (see :data:`seamline.training.config.EXAMPLE`) or its content;
        None when a recipe and the overrides say everything.
    resume : bool
        Continue from ``out/checkpoint``, which must exist.
    overwrite : bool
        Start afresh even when ``out`` holds an earlier run.
    **overrides
        Config values to replace (``epochs=2``, ``out="run"``, ``training={...}``);
        ``recipe="glaciers-landsat"`` starts from a recipe.

    Returns
    -------
    TrainResult

    Raises
    ------
    InputError
        If the config is invalid, its data cannot be opened, or *resume* finds no
        usable checkpoint.
    OutputExistsError
        If ``out/model`` exists and neither *resume* nor *overwrite* is set.
    """
    cfg = load_config(config, **overrides)
    out = Path(cfg.out)
    checkpoint = out / "checkpoint"
    if resume:
        _check_resumable(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out / "model", overwrite=overwrite or resume)
    loop = cfg.training
    device = resolve_device(loop.device)

    image, labels = _open_pair(cfg.data.image, cfg.data.labels, cfg)
    train_region, exclude, val_regions = _regions(cfg, image)
    normalization = fit_normalization(image.window(*train_region), cfg.normalization)
    card = _card(cfg, image, normalization)
    model_input = normalize(image, normalization)
    pair = TrainingPair(model_input, labels, image.valid_mask(), train_region, exclude)
    sampler = PatchSampler(
        [pair],
        cfg.patches.size,
        classes=len(card.classes),
        foreground_fraction=cfg.patches.foreground_fraction,
        min_valid=cfg.patches.min_valid,
        ignore_index=cfg.data.ignore_index,
    )
    windows = [(image.window(*r), labels.window(*r)) for r in val_regions]
    if cfg.validation is not None and cfg.validation.image:
        windows = [_open_pair(cfg.validation.image, cfg.validation.labels or cfg.data.labels, cfg)]

    torch.manual_seed(loop.seed)
    module = build_module(card).to(device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay)
    half = device.type == "cuda" and autocast_dtype(device, loop.amp) == torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=half)
    loss_fn = make_loss(cfg.loss, ignore_index=cfg.data.ignore_index).to(device)
    steps = _steps_per_epoch(cfg)
    state: dict[str, Any] = {"epoch": -1, "history": [], "best_metric": None, "best_epoch": None, "stale": 0}
    if resume:
        saved, state = load_checkpoint(checkpoint, optimizer)
        try:
            module.load_state_dict(saved.module.state_dict())
        except RuntimeError:
            raise InputError("its model differs from the config's (start again with --overwrite)", checkpoint) from None

    key = f"val_{loop.metric}"
    lower = loop.metric in _LOWER_IS_BETTER
    stopped_early = False
    for epoch in range(state["epoch"] + 1, loop.epochs):
        started = time.perf_counter()
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update(_epoch(module, sampler, loss_fn, optimizer, scaler, cfg, epoch, steps * loop.epochs, device))
        bundle = Bundle(module, card)
        if windows:
            row.update(_validate(bundle, windows, cfg, loop.device))
        row["seconds"] = round(time.perf_counter() - started, 3)
        state["history"].append(row)
        value = row.get(key)
        if _improves(value, state["best_metric"], lower=lower):
            state.update(best_metric=value, best_epoch=epoch + 1, stale=0)
            card.training = {
                "epochs": epoch + 1,
                "seed": loop.seed,
                "metric": loop.metric,
                "best_metric": value,
                "images": [os.path.basename(cfg.data.image)],
                **({"recipe": cfg.recipe} if cfg.recipe else {}),
                "loss": cfg.loss if isinstance(cfg.loss, str) else dict(cfg.loss),
            }
            save_model(module, out / "model", card, overwrite=True)
        else:
            state["stale"] += 1
        state["epoch"] = epoch
        save_checkpoint(checkpoint, module, card, optimizer, state)
        _write_history(out, state["history"])
        if loop.patience is not None and state["stale"] >= loop.patience:
            stopped_early = True
            break
    return TrainResult(
        bundle=load_model(out / "model"),
        path=out / "model",
        history=state["history"],
        best_epoch=state["best_epoch"],
        best_metric=state["best_metric"],
        stopped_early=stopped_early,
    )
