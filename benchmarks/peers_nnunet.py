"""nnU-Net v2 (3d_fullres) as a peer: raw-dataset export, time-budgeted training, inference.

* :func:`export_raw_dataset` writes nnU-Net's raw layout (``imagesTr/<case>_0000.nii.gz``,
  ``labelsTr/<case>.nii.gz``, ``dataset.json``) from AutoCTV volumes; it needs no nnU-Net.
* :func:`write_split` puts a given train/validation split as fold 0 into
  ``splits_final.json`` (nnU-Net then uses it instead of its own 5-fold split), so nnU-Net
  trains on the same cases as the other methods.
* ``python peers_nnunet.py train``: builds nnU-Net's own trainer for 3d_fullres fold 0 from
  the preprocessed plans (``nnUNetv2_plan_and_preprocess`` ran before) with one change, a
  wall-clock budget (:class:`~peers_budget.TimeBudget`, checked after every iteration), then
  saves ``checkpoint_final.pth`` as nnU-Net does at the end of a run. The trainer subclass
  lives here and is built directly, not looked up by name inside the nnU-Net package; inference
  builds the network with nnU-Net's standard trainer, which the subclass does not change.
* :func:`predict_case`: ``nnUNetPredictor`` on one CT file (nnU-Net's own preprocessing,
  Gaussian-weighted sliding window at step 0.5, resampling back to the CT's grid).

The nnU-Net environment variables (``nnUNet_raw``, ``nnUNet_preprocessed``,
``nnUNet_results``) must be set before nnU-Net is imported; ``peers.py`` sets them for the child
processes it starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers_budget import TimeBudget

from AutoCTVLib.volume import Volume

CONFIGURATION = "3d_fullres"
FOLD = 0
TRAINER_NAME = "nnUNetTrainerTimeBudget"


def dataset_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name of a dataset, ``DatasetXXX_Name``."""
    return f"Dataset{dataset_id:03d}_{name}"


def write_ct_nifti(ct: Volume, path: Path) -> None:
    """CT as int16 HU NIfTI on its own grid (values rounded and clipped to int16)."""
    import SimpleITK as sitk

    stored = np.clip(np.rint(ct.array), -32768, 32767).astype(np.int16)
    image = sitk.GetImageFromArray(stored)
    ct.geometry.apply_to(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), True)


def export_raw_dataset(
    raw_root: Path, dataset: str, cases: Iterable[tuple[str, Volume, Volume]]
) -> dict[str, Any]:
    """Write ``raw_root/dataset`` in nnU-Net v2's raw layout; returns the ``dataset.json``.

    ``cases`` gives ``(case_id, ct, ctv)``: the CT in HU and the CTV mask (0/1) on its grid,
    arrays (z, y, x). Labels: 0 background, 1 CTV; one channel, "CT" (nnU-Net's CT
    normalisation: clipping to the foreground's 0.5–99.5 percentiles, z-scoring).
    """
    from AutoCTVLib.io.image_files import write_labelmap

    folder = raw_root / dataset
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    count = 0
    for case_id, ct, ctv in cases:
        if not ctv.geometry.is_close(ct.geometry):
            raise ValueError(f"{case_id}: the CTV is not on the CT's grid")
        write_ct_nifti(ct, folder / "imagesTr" / f"{case_id}_0000.nii.gz")
        labels = (np.asarray(ctv.array) > 0).astype(np.uint8)
        write_labelmap(
            labels, ct.geometry, folder / "labelsTr" / f"{case_id}.nii.gz", overwrite=True
        )
        count += 1
    description = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "CTV": 1},
        "numTraining": count,
        "file_ending": ".nii.gz",
        "name": dataset,
        "description": "AutoCTV's synthetic female-pelvis phantoms (no patient data)",
    }
    (folder / "dataset.json").write_text(json.dumps(description, indent=2) + "\n")
    return description


def write_split(
    preprocessed_dataset: Path, train_ids: list[str], validation_ids: list[str]
) -> Path:
    """``splits_final.json`` with fold 0 = the given split (the other folds are not used)."""
    path = preprocessed_dataset / "splits_final.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    split = [{"train": sorted(train_ids), "val": sorted(validation_ids)}]
    path.write_text(json.dumps(split, indent=2) + "\n")
    return path


def _budget_trainer_class() -> type:
    """nnU-Net's standard trainer with a wall-clock budget (imports nnU-Net)."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    class nnUNetTrainerTimeBudget(nnUNetTrainer):
        """Stops after the iteration that spends the budget; validation iterations cut to 5."""

        budget: TimeBudget | None = None

        # nnU-Net records its constructor's arguments by name: keep its exact signature.
        def __init__(
            self,
            plans: dict,
            configuration: str,
            fold: int,
            dataset_json: dict,
            device: torch.device = torch.device("cuda"),  # noqa: B008 (nnU-Net's default)
        ) -> None:
            super().__init__(plans, configuration, fold, dataset_json, device)
            # 5 instead of 50 pseudo-Dice batches per epoch: on a CPU nnU-Net's 50 cost minutes.
            self.num_val_iterations_per_epoch = 5

        def run_training(self) -> None:
            if self.budget is None:
                raise RuntimeError("set the trainer's budget first")
            self.on_train_start()
            self.budget.start()
            spent = False
            for _ in range(self.current_epoch, self.num_epochs):
                self.on_epoch_start()
                self.on_train_epoch_start()
                outputs = []
                for _ in range(self.num_iterations_per_epoch):
                    outputs.append(self.train_step(next(self.dataloader_train)))
                    spent = self.budget.tick()
                    if spent:
                        break
                self.on_train_epoch_end(outputs)
                with torch.no_grad():
                    self.on_validation_epoch_start()
                    validation = [
                        self.validation_step(next(self.dataloader_val))
                        for _ in range(self.num_val_iterations_per_epoch)
                    ]
                    self.on_validation_epoch_end(validation)
                self.on_epoch_end()
                if spent:
                    break
            self.on_train_end()

    return nnUNetTrainerTimeBudget


def train(
    preprocessed_dataset: Path, budget_s: float, device: str, record_path: Path
) -> dict[str, Any]:
    """Train 3d_fullres fold 0 for ``budget_s`` wall seconds; writes and returns a record."""
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json

    plans = load_json(str(preprocessed_dataset / "nnUNetPlans.json"))
    plans["continue_training"] = False  # as nnU-Net's own entry point sets it for a new run
    dataset_json = load_json(str(preprocessed_dataset / "dataset.json"))
    if device.startswith("cuda"):
        # nnU-Net's entry point on a GPU: one CPU thread, cuDNN autotuning.
        torch.set_num_threads(1)
        torch.backends.cudnn.benchmark = True
    trainer_class = _budget_trainer_class()
    started = time.perf_counter()
    trainer = trainer_class(
        plans=plans,
        configuration=CONFIGURATION,
        fold=FOLD,
        dataset_json=dataset_json,
        device=torch.device(device),
    )
    trainer.budget = TimeBudget(budget_s)
    trainer.run_training()
    configuration = plans["configurations"][CONFIGURATION]
    record = {
        "method": "nnU-Net v2 3d_fullres",
        "device": device,
        "process_wall_s": time.perf_counter() - started,
        **trainer.budget.record(),
        "batch_size": configuration["batch_size"],
        "patch_size_zyx": configuration["patch_size"],
        "spacing_zyx_mm": configuration["spacing"],
        "output_folder": str(trainer.output_folder_base),
        "epochs_started": trainer.current_epoch,
    }
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def load_predictor(model_folder: Path, device: str, mirroring: bool, step: float = 0.5) -> Any:
    """An ``nnUNetPredictor`` with the fold-0 final checkpoint of a budgeted run.

    ``step``: the sliding window's step as a fraction of the patch (nnU-Net's default 0.5).
    """
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = json.loads((model_folder / "plans.json").read_text())
    dataset_json = json.loads((model_folder / "dataset.json").read_text())
    checkpoint = torch.load(
        model_folder / f"fold_{FOLD}" / "checkpoint_final.pth",
        map_location="cpu",
        weights_only=False,
    )
    plans_manager = PlansManager(plans)
    configuration = plans_manager.get_configuration(checkpoint["init_args"]["configuration"])
    network = nnUNetTrainer.build_network_architecture(
        plans_manager,
        configuration,
        determine_num_input_channels(plans_manager, configuration, dataset_json),
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads,
        enable_deep_supervision=False,
    )
    network.load_state_dict(checkpoint["network_weights"])
    predictor = nnUNetPredictor(
        tile_step_size=step,
        use_gaussian=True,
        use_mirroring=mirroring,
        perform_everything_on_device=device != "cpu",
        device=torch.device(device),
        allow_tqdm=False,
    )
    predictor.manual_initialization(
        network,
        plans_manager,
        configuration,
        [checkpoint["network_weights"]],
        dataset_json,
        checkpoint["trainer_name"],
        checkpoint.get("inference_allowed_mirroring_axes"),
    )
    return predictor


def predict_case(predictor: Any, ct_path: Path) -> np.ndarray:
    """The CTV label (uint8, (z, y, x), the CT file's own grid) of one CT file."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    images, properties = SimpleITKIO().read_images([str(ct_path)])
    segmentation = predictor.predict_single_npy_array(images, properties, None, None, False)
    return (np.asarray(segmentation) == 1).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    training = commands.add_parser("train", help="budgeted 3d_fullres fold-0 training")
    training.add_argument("--preprocessed", type=Path, required=True, help="preprocessed dataset")
    training.add_argument("--budget-s", type=float, required=True)
    training.add_argument("--device", default="cpu")
    training.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "train":
        print(json.dumps(train(args.preprocessed, args.budget_s, args.device, args.record)))


if __name__ == "__main__":
    main()
