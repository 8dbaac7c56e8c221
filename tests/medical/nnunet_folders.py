"""nnU-Net model folders for the tests, made with nnU-Net's own code.

A small PlainConvUNet (3 stages, 8-16-32 features) was trained briefly on the shared
TotalSegmentator CT and MR volumes at 6 mm, for eight organs, so that its predictions are
decisive rather than near ties; its weights are ``data/nnunet_organs.safetensors`` (float16, with
the CT foreground statistics in the metadata). Run this module to train them again::

    PYTHONPATH=core:plugins python -m tests.medical.nnunet_folders

:func:`write_folder` writes a results folder as ``nnUNetv2_train`` leaves it: a plans.json
(checked by nnU-Net's ``PlansManager``), a dataset.json, and one
``fold_N/checkpoint_final.pth`` per fold saved by ``nnUNetTrainer.save_checkpoint`` itself
(fold N > 0 with the last layer's weights perturbed, so that averaging folds matters).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS = Path(__file__).parent / "data" / "nnunet_organs.safetensors"
CLASSES = ["background", "spleen", "kidney_right", "kidney_left", "liver", "stomach", "autochthon_left",
           "autochthon_right", "vertebrae"]  # fmt: skip
#: TotalSegmentator label ids (tasks "total" and "total_mr") of each class above.
TOTAL_IDS = {1: [1], 2: [2], 3: [3], 4: [5], 5: [6], 6: [86], 7: [87], 8: list(range(26, 51))}
TOTAL_MR_IDS = {1: [1], 2: [2], 3: [3], 4: [5], 5: [6], 6: [46], 7: [47], 8: [19]}
ARCHITECTURE = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "arch_kwargs": {
        "n_stages": 3,
        "features_per_stage": [8, 16, 32],
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3]] * 3,
        "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        "n_conv_per_stage": [2, 2, 2],
        "n_conv_per_stage_decoder": [2, 2],
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    },
    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
}


def ct_properties() -> dict[str, float]:
    """The CT foreground statistics the weights were trained with (CTNormalization's numbers)."""
    from safetensors import safe_open

    with safe_open(WEIGHTS, "pt") as f:
        return json.loads(f.metadata()["ct_properties"])


def plans(
    *,
    spacing: Sequence[float] = (6.0, 6.0, 6.0),
    patch: Sequence[int] = (16, 32, 32),
    transpose: Sequence[int] = (0, 1, 2),
    scheme: str = "CTNormalization",
    use_mask: bool = False,
    reader: str = "SimpleITKIO",
    resampling: dict[str, Any] | None = None,
    ct: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A plans.json for the trained network, in the format nnU-Net 2.8's planner writes."""
    data = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None, **(resampling or {})}
    return {
        "dataset_name": "Dataset901_Organs",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(spacing),
        "original_median_shape_after_transp": [30, 101, 122],
        "image_reader_writer": reader,
        "transpose_forward": list(transpose),
        "transpose_backward": [int(a) for a in np.argsort(transpose)],
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": list(patch),
                "median_image_size_in_voxels": [30, 101, 122],
                "spacing": list(spacing),
                "normalization_schemes": [scheme],
                "use_mask_for_norm": [use_mask],
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": data,
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {**data, "order": 1},
                "architecture": copy.deepcopy(ARCHITECTURE),
                "batch_dice": False,
            }
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {"max": 3000.0, "median": 60.0, "min": -1024.0, **(ct or ct_properties())}
        },
    }


def dataset(*, regions: bool = False, channel: str = "CT", decoys: int = 0) -> dict[str, Any]:
    """A dataset.json: the eight organs (and *decoys* more), or nine overlapping regions painted in an order."""
    if not regions:
        names = [*CLASSES, *(f"decoy_{i + 1}" for i in range(decoys))]
        labels: dict[str, Any] = {name: value for value, name in enumerate(names)}
        return {"channel_names": {"0": channel}, "labels": labels, "numTraining": 3, "file_ending": ".nii.gz"}
    labels = {"background": 0, "tissue": list(range(1, 9)), **{name: [v] for v, name in enumerate(CLASSES) if v}}
    order = [9, *range(1, 9)]
    return {
        "channel_names": {"0": channel},
        "labels": labels,
        "regions_class_order": order,
        "numTraining": 3,
        "file_ending": ".nii.gz",
    }


def _trained_state(decoys: int = 0) -> dict[str, Any]:
    """The trained weights; *decoys* more output classes, each an organ's logits minus 4 (never chosen)."""
    import torch
    from safetensors.torch import load_file

    state = {k: v.float() for k, v in load_file(WEIGHTS).items()}
    for key in [k for k in state if ".seg_layers." in k]:
        rows = state[key][[1 + i % 8 for i in range(decoys)]]
        if key.endswith("bias"):
            rows -= 4.0
        state[key] = torch.cat([state[key], rows])
    from safetensors import safe_open

    with safe_open(WEIGHTS, "pt") as f:
        aliases = json.loads(f.metadata()["aliases"])
    return {**state, **{alias: state[key] for alias, key in aliases.items()}}


def write_folder(
    path: Path,
    *,
    plans_data: dict[str, Any],
    dataset_data: dict[str, Any],
    folds: Sequence[int] = (0,),
    trainer: str = "nnUNetTrainer",
    configuration: str = "3d_fullres",
    decoys: int = 0,
) -> Path:
    """Write an nnU-Net results folder with nnU-Net's trainer saving each fold's checkpoint.

    Returns
    -------
    pathlib.Path
        ``path``, holding plans.json, dataset.json and ``fold_N/checkpoint_final.pth``.
    """
    import torch
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    PlansManager(copy.deepcopy(plans_data)).get_configuration(configuration)  # nnU-Net checks the plans
    path.mkdir(parents=True, exist_ok=True)
    (path / "plans.json").write_text(json.dumps(plans_data, indent=2))
    (path / "dataset.json").write_text(json.dumps(dataset_data, indent=2))
    cls = recursive_find_trainer_class_by_name(trainer)
    state = _trained_state(decoys)
    work = path.parent / f".{path.name}-nnunet"
    for key in ("nnUNet_results", "nnUNet_preprocessed", "nnUNet_raw"):
        os.environ.setdefault(key, str(work / key))
    for fold in folds:
        plans_copy = {**copy.deepcopy(plans_data), "continue_training": False}
        trainer_run = cls(plans_copy, configuration, fold, dataset_data, torch.device("cpu"))
        try:
            trainer_run.initialize()
        except FileNotFoundError:  # the preprocessed data it looks for last; the network is built by then
            pass
        trainer_run.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        weights = {k: v.clone() for k, v in state.items()}
        if fold:
            generator = torch.Generator().manual_seed(fold)
            for key in [k for k in weights if k.startswith("decoder.seg_layers.1.")]:
                weights[key] += 0.3 * torch.randn(weights[key].shape, generator=generator)
        trainer_run.network.load_state_dict(weights)
        trainer_run._best_ema = np.float64(0.5)  # as training leaves it: a NumPy scalar
        (path / f"fold_{fold}").mkdir(exist_ok=True)
        trainer_run.save_checkpoint(str(path / f"fold_{fold}" / "checkpoint_final.pth"))
    return path


def broken_copy(make: Callable[..., Path], tmp_path: Path, name: str, change: Callable[[Path], Any]) -> Path:
    """A copy of the good folder ``make("ct")`` with one thing changed by *change(folder)*."""
    import shutil

    copy = tmp_path / name
    shutil.copytree(make("ct"), copy)
    change(copy)
    return copy


def edit_json(name: str, edit: Callable[[Any], Any]) -> Callable[[Path], None]:
    """A change that edits the JSON file *name* of a folder in place."""

    def change(folder: Path) -> None:
        data = json.loads((folder / name).read_text())
        edit(data)
        (folder / name).write_text(json.dumps(data))

    return change


def rewrite_checkpoint(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    """A change that edits fold 0's checkpoint (unpickled in full: the tests wrote it)."""

    def change(folder: Path) -> None:
        import torch

        path = folder / "fold_0" / "checkpoint_final.pth"
        checkpoint = torch.load(path, weights_only=False)
        edit(checkpoint)
        torch.save(checkpoint, path)

    return change


def _volumes(root: Path) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(image, labels, kind) in nnU-Net's axis order, labels mapped to the eight classes."""
    import nibabel as nib

    pairs = [
        ("example_ct_sm.nii.gz", "example_seg.nii.gz", "ct", TOTAL_IDS),
        ("example_ct.nii.gz", "example_seg_fast_force_split.nii.gz", "ct", TOTAL_IDS),
        ("example_mr_sm.nii.gz", "example_seg_mr.nii.gz", "mr", TOTAL_MR_IDS),
    ]
    found = []
    for image, labels, kind, ids in pairs:
        x = np.asarray(nib.load(root / image).dataobj, dtype=np.float32).transpose(2, 1, 0)
        total = np.asarray(nib.load(root / labels).dataobj).astype(int).transpose(2, 1, 0)
        y = np.zeros(total.shape, np.int64)
        for value, members in ids.items():
            y[np.isin(total, members)] = value
        found.append((x, y, kind))
    return found


def _loss(logits: Any, labels: Any) -> Any:
    """Cross-entropy plus one minus the mean soft Dice of the organs present."""
    import torch

    probabilities = torch.softmax(logits, 1)
    onehot = torch.nn.functional.one_hot(labels, logits.shape[1]).movedim(-1, 1).float()
    axes = (0, *range(2, logits.ndim))
    dice = 2 * (probabilities * onehot).sum(axes) / (probabilities.sum(axes) + onehot.sum(axes) + 1e-5)
    present = onehot.sum(axes)[1:] > 0
    return torch.nn.functional.cross_entropy(logits, labels) + 1 - dice[1:][present].mean()


def train(root: Path, *, iterations: int = 800, seed: int = 0) -> None:
    """Train the network on the shared volumes at 6 mm and write :data:`WEIGHTS`."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from safetensors.torch import save_file
    from scipy import ndimage

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # small 3D convolutions: more threads mostly wait for each other
    rng = np.random.default_rng(seed)
    volumes = _volumes(root)
    ct = np.concatenate([x[y > 0] for x, y, kind in volumes if kind == "ct"]).astype(np.float64)
    properties = {
        "mean": float(ct.mean()),
        "std": float(ct.std()),
        "percentile_00_5": float(np.percentile(ct, 0.5)),
        "percentile_99_5": float(np.percentile(ct, 99.5)),
    }
    low, high = properties["percentile_00_5"], properties["percentile_99_5"]
    cases = []
    for x, y, kind in volumes:
        x = (
            (np.clip(x, low, high) - properties["mean"]) / properties["std"]
            if kind == "ct"
            else (x - x.mean()) / x.std()
        )
        cases.append((ndimage.zoom(x, 0.5, order=1).astype(np.float32), ndimage.zoom(y, 0.5, order=0)))
    manager = PlansManager(plans(ct=properties))
    network = nnUNetTrainer.build_network_architecture(
        manager, manager.get_configuration("3d_fullres"), 1, len(CLASSES), enable_deep_supervision=False
    )
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, iterations)
    patch = np.array([16, 32, 32])
    for step in range(iterations):
        xs, ys = [], []
        order = rng.permutation(3)
        for _ in range(4):
            x, y = cases[rng.integers(len(cases))]
            x, y = (
                np.pad(x, [(0, max(0, p - n)) for p, n in zip(patch, x.shape, strict=True)]),
                np.pad(y, [(0, max(0, p - n)) for p, n in zip(patch, y.shape, strict=True)]),
            )
            organs = np.argwhere(y > 0)
            centre = organs[rng.integers(len(organs))] if rng.random() < 0.5 else rng.integers(0, y.shape)
            corner = np.clip(centre - patch // 2, 0, np.array(y.shape) - patch)
            window = tuple(slice(c, c + p) for c, p in zip(corner, patch, strict=True))
            x, y = x[window].transpose(order), y[window].transpose(order)
            for axis in range(3):
                if rng.random() < 0.5:
                    x, y = np.flip(x, axis), np.flip(y, axis)
            xs.append(x * rng.uniform(0.9, 1.1) + rng.normal(0, 0.1))
            ys.append(y)
        logits = network(torch.from_numpy(np.stack(xs).astype(np.float32))[:, None])
        loss = _loss(logits, torch.from_numpy(np.stack(ys)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.3f}", flush=True)
    WEIGHTS.parent.mkdir(exist_ok=True)
    state, aliases, first = {}, {}, {}
    for key, value in network.state_dict().items():  # one copy of each tensor the network shares between modules
        if value.data_ptr() in first:
            aliases[key] = first[value.data_ptr()]
        else:
            first[value.data_ptr()], state[key] = key, value.detach().half()
    save_file(state, WEIGHTS, metadata={"ct_properties": json.dumps(properties), "aliases": json.dumps(aliases)})


if __name__ == "__main__":
    train(Path(os.environ.get("SEAMLINE_TEST_DATA", "../shared/data")) / "totalsegmentator_ct_mr")
