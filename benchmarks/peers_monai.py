"""MONAI as a peer: UNet with MONAI's standard transforms, sliding-window inference.

Data: a list of ``{"image": ct.nii.gz, "label": ctv.nii.gz}`` dicts (the nnU-Net raw export's
files, so the very same images). The pipeline follows MONAI's 3D segmentation tutorials, with
the grid and window AutoCTV's segmenter uses (so both see the same voxels):

* ``LoadImaged`` → ``EnsureChannelFirstd`` → ``Orientationd("RAS")`` →
  ``Spacingd(2, 2, 3 mm)`` (bilinear CT, nearest label) →
  ``ScaleIntensityRanged(-300…600 HU → 0…1, clipped)`` → ``CropForegroundd`` (the body:
  voxels above −300 HU), cached (``CacheDataset``);
* training: ``RandCropByPosNegLabeld`` (96 × 96 × 64 voxels along x, y, z = 192 mm cubes, as
  AutoCTV's patches; 2 per case, positive : negative 1 : 1), ``RandFlipd`` (left-right),
  ``RandAffined`` (≤ 5° rotation, ±10 % zoom, p 0.3), ``RandScaleIntensityd`` /
  ``RandShiftIntensityd`` (±10 %, ±0.05);
* ``UNet`` as MONAI's 3D segmentation tutorials build it (channels 16–256, strides 2, two
  residual units per level, batch norm; about the size of AutoCTV's 16–128 network; a DynUNet
  of 32–320 filters, nnU-Net's size, took 67 s for its first step in a dry run on the shared
  2-core CPU),
  ``DiceCELoss`` (softmax, 2 classes), Adam lr 1e-3, 2 patches per step (AutoCTV's batch);
* inference: the same pre-transforms, ``sliding_window_inference`` (ROI 96 × 96 × 64, 2 windows
  per batch, overlap 0.25, Gaussian weights), softmax, ``Invertd`` back onto the CT's own grid,
  argmax.

``python peers_monai.py train`` trains for a wall-clock budget (:class:`peers_budget.TimeBudget`)
and saves the weights. ``--precision bf16`` trains with the network's forward pass under bf16
autocast and the loss in float32, as AutoCTV's bf16 configurations do; the default is float32,
as MONAI's tutorials train. Inference is float32 either way (as AutoCTV's plain prediction).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers_budget import TimeBudget

SPACING_XYZ_MM = (2.0, 2.0, 3.0)
HU_WINDOW = (-300.0, 600.0)
ROI_XYZ = (96, 96, 64)
LR = 1e-3
PRECISIONS = ("float32", "bf16")
#: The peer benchmark's MONAI methods and the precision each trains in.
MONAI_PRECISION = {"monai": "float32", "monai_bf16": "bf16"}


def _autocast(device: str, precision: str) -> Any:
    """bf16 autocast on ``device`` for ``precision == "bf16"``, else a no-op context."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


def network() -> Any:
    """MONAI's UNet as its 3D segmentation tutorials build it (1 input, 2 output classes)."""
    from monai.networks.layers import Norm
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        channels=(16, 32, 64, 128, 256),
        strides=(2, 2, 2, 2),
        num_res_units=2,
        norm=Norm.BATCH,
    )


def pre_transforms(with_label: bool) -> Any:
    """Deterministic transforms: load, channel first, RAS, 2×2×3 mm, window, body crop."""
    from monai.transforms import (
        Compose,
        CropForegroundd,
        EnsureChannelFirstd,
        LoadImaged,
        Orientationd,
        ScaleIntensityRanged,
        Spacingd,
    )

    keys = ["image", "label"] if with_label else ["image"]
    modes = ("bilinear", "nearest") if with_label else ("bilinear",)
    return Compose(
        [
            LoadImaged(keys=keys),
            EnsureChannelFirstd(keys=keys),
            Orientationd(keys=keys, axcodes="RAS"),
            Spacingd(keys=keys, pixdim=SPACING_XYZ_MM, mode=modes),
            ScaleIntensityRanged(
                keys=["image"],
                a_min=HU_WINDOW[0],
                a_max=HU_WINDOW[1],
                b_min=0.0,
                b_max=1.0,
                clip=True,
            ),
            CropForegroundd(keys=keys, source_key="image", allow_smaller=True),
        ]
    )


def train_transforms() -> Any:
    """Random patch sampling and augmentation after the cached pre-transforms."""
    from monai.transforms import (
        Compose,
        RandAffined,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    keys = ["image", "label"]
    return Compose(
        [
            RandCropByPosNegLabeld(
                keys=keys,
                label_key="label",
                spatial_size=ROI_XYZ,
                pos=1,
                neg=1,
                num_samples=2,
                image_key="image",
                image_threshold=0.0,
            ),
            RandFlipd(keys=keys, spatial_axis=0, prob=0.5),
            RandAffined(
                keys=keys,
                prob=0.3,
                rotate_range=(np.deg2rad(5.0),) * 3,
                scale_range=(0.1,) * 3,
                mode=("bilinear", "nearest"),
                padding_mode="border",
            ),
            RandScaleIntensityd(keys=["image"], factors=0.1, prob=0.5),
            RandShiftIntensityd(keys=["image"], offsets=0.05, prob=0.5),
        ]
    )


def train(
    data_list: Path,
    budget_s: float,
    device: str,
    out: Path,
    workers: int,
    precision: str = "float32",
) -> dict[str, Any]:
    """Train for ``budget_s`` wall seconds; writes ``out/model.pt`` and ``out/record.json``.

    ``precision``: ``"float32"`` or ``"bf16"`` (the forward pass under bf16 autocast).
    """
    import torch
    from monai.data import CacheDataset, DataLoader, Dataset, list_data_collate
    from monai.losses import DiceCELoss
    from monai.utils import set_determinism

    set_determinism(seed=0)
    started = time.perf_counter()
    files = json.loads(data_list.read_text())
    cached = CacheDataset(files, pre_transforms(True), cache_rate=1.0, num_workers=workers)
    cache_s = time.perf_counter() - started
    loader = DataLoader(
        Dataset(cached, train_transforms()),  # type: ignore[arg-type]
        batch_size=1,
        shuffle=True,
        num_workers=workers,
        collate_fn=list_data_collate,
        persistent_workers=workers > 0,
    )
    model = network().to(device)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    budget = TimeBudget(budget_s)
    budget.start()
    losses: list[float] = []
    spent = False
    model.train()
    while not spent:
        for batch in loader:
            image, label = batch["image"].to(device), batch["label"].to(device)
            optimizer.zero_grad()
            with _autocast(device, precision):
                logits = model(image)
            loss = loss_function(logits.float(), label)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.item()))
            spent = budget.tick()
            if spent:
                break
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "model.pt")
    record = {
        "method": "MONAI UNet",
        "device": device,
        "precision": precision,
        "cases": len(files),
        "cache_s": cache_s,
        "process_wall_s": time.perf_counter() - started,
        **budget.record(),
        "patches_per_step": 2,
        "loss_first_10_mean": float(np.mean(losses[:10])) if losses else None,
        "loss_last_10_mean": float(np.mean(losses[-10:])) if losses else None,
    }
    (out / "record.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def load_model(model_path: Path, device: str) -> Any:
    """The trained UNet in evaluation mode."""
    import torch

    model = network()
    model.load_state_dict(torch.load(model_path, map_location="cpu"))
    return model.to(device).eval()


def predict_case(model: Any, ct_path: Path, device: str) -> np.ndarray:
    """The CTV label (uint8, (z, y, x), the CT file's own grid) of one CT file (float32)."""
    import torch
    from monai.data import decollate_batch, list_data_collate
    from monai.inferers import sliding_window_inference
    from monai.transforms import Invertd

    pre = pre_transforms(False)
    sample = pre({"image": str(ct_path)})
    batch = list_data_collate([sample])
    with torch.no_grad():
        logits = sliding_window_inference(
            batch["image"].to(device), ROI_XYZ, 2, model, overlap=0.25, mode="gaussian"
        )
    batch["pred"] = torch.softmax(logits, dim=1).cpu()
    invert = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False)
    restored = invert(decollate_batch(batch)[0])["pred"]
    # MONAI's array is the NIfTI's (i, j, k) = (x, y, z); AutoCTV's volumes are (z, y, x).
    label = np.asarray(restored.argmax(dim=0)).astype(np.uint8)
    return np.ascontiguousarray(label.transpose(2, 1, 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    training = commands.add_parser("train", help="budgeted UNet training")
    training.add_argument("--data-list", type=Path, required=True, help="JSON list of dicts")
    training.add_argument("--budget-s", type=float, required=True)
    training.add_argument("--device", default="cpu")
    training.add_argument("--workers", type=int, default=2)
    training.add_argument("--out", type=Path, required=True)
    training.add_argument("--precision", choices=PRECISIONS, default="float32")
    args = parser.parse_args()
    if args.command == "train":
        record = train(
            args.data_list, args.budget_s, args.device, args.out, args.workers, args.precision
        )
        print(json.dumps(record))


if __name__ == "__main__":
    main()
