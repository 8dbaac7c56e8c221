"""Fixtures of the medical tests: nnU-Net model folders made with nnU-Net's own code."""

from __future__ import annotations

import pytest

from tests.medical import nnunet_folders as folders


@pytest.fixture(scope="module")
def folder_factory(tmp_path_factory):
    """Make (once per module) an nnU-Net folder by name, from plans and dataset options."""
    pytest.importorskip("nnunetv2")
    made = {}
    root = tmp_path_factory.mktemp("nnunet")

    def make(name, *, folds=(0,), trainer="nnUNetTrainer", regions=False, channel="CT", **plans_options):
        if name not in made:
            made[name] = folders.write_folder(
                root / "Dataset901_Organs" / f"{trainer}__nnUNetPlans__3d_fullres-{name}",
                plans_data=folders.plans(**plans_options),
                dataset_data=folders.dataset(regions=regions, channel=channel),
                folds=folds,
                trainer=trainer,
            )
        return made[name]

    return make
