#!/usr/bin/env python
"""Run every known class of bad input through the ``autoctv`` command and write the table of
what it answers (docs/bad_inputs.md): the message and the exit code, as printed.

Each class is one :class:`BadInput`: a name and a ``build(folder)`` function that makes the bad
input from a tiny synthetic phantom inside ``folder`` and returns the command-line arguments
after ``autoctv``. The command runs in a fresh process (``python -m AutoCTVLib.cli.main``), so
the table shows exactly what a user sees on stderr, anything printed by C++ libraries included.
Paths inside messages are shown relative to the case folder (``DIR/...``).

To add a class: write a builder, append a ``BadInput`` to :data:`CASES`, and run::

    .venv/bin/python scripts/bad_inputs.py            # rewrites docs/bad_inputs.md (~1 min)
    .venv/bin/python scripts/bad_inputs.py --only nan  # runs the matching classes, prints them

``Testing/test_bad_inputs_table.py`` checks that a few rows of the committed table still match
what the command prints (and, with ``-m slow``, all of them).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
TABLE_PATH = REPOSITORY / "docs" / "bad_inputs.md"
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

import SimpleITK as sitk  # noqa: E402

from AutoCTVLib.volume import Volume  # noqa: E402

PREDICT = ["--device", "cpu", "--progress", "none"]


@dataclass(frozen=True)
class BadInput:
    """One class of bad input: ``build(folder)`` makes it and returns the ``autoctv`` arguments.

    ``accepted`` marks a valid input the reader has to repair: it must be contoured (exit 0)
    with a warning; the table shows its warning lines instead of an error.
    """

    name: str
    build: Callable[[Path], list[str]]
    accepted: bool = False


@dataclass(frozen=True)
class Answer:
    """What the command answered: exit code and its stderr (paths shown as ``DIR/...``)."""

    exit_code: int
    message: str


# --- tiny inputs -----------------------------------------------------------------------------


def phantom_ct() -> Volume:
    """A 40×40×12 phantom CT at 10 mm (generated in well under a second)."""
    from AutoCTVLib.phantom import PhantomConfig, generate_phantom

    config = PhantomConfig(seed=11, size_xyz=(40, 40, 12), spacing_xyz_mm=(10.0, 10.0, 10.0))
    return generate_phantom(config).ct


def phantom_ctv() -> Volume:
    from AutoCTVLib.phantom import PhantomConfig, generate_phantom

    config = PhantomConfig(seed=11, size_xyz=(40, 40, 12), spacing_xyz_mm=(10.0, 10.0, 10.0))
    return generate_phantom(config).ctv


def image(path: Path, volume: Volume, dtype: type = np.float32, compress: bool = True) -> Path:
    picture = sitk.GetImageFromArray(np.asarray(volume.array).astype(dtype))
    picture.CopyInformation(volume.to_sitk())
    sitk.WriteImage(picture, str(path), compress)
    return path


def raw_image(path: Path, array: np.ndarray, is_vector: bool = False) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=is_vector), str(path))
    return path


def series(folder: Path, slices: int | None = None, **options: object) -> Path:
    """The phantom CT as a DICOM series in ``folder`` (the first ``slices`` slices)."""
    from AutoCTVLib.io.dicom_ct_write import write_ct_series

    ct = phantom_ct()
    if slices is not None:
        from AutoCTVLib.volume import Geometry

        geometry = ct.geometry
        cut = Geometry(
            (slices, *geometry.shape_zyx[1:]),
            geometry.spacing_xyz_mm,
            geometry.origin_xyz_mm,
            geometry.direction,
        )
        ct = Volume(np.asarray(ct.array)[:slices], cut)
    folder.parent.mkdir(parents=True, exist_ok=True)
    write_ct_series(ct, folder, **options)  # type: ignore[arg-type]
    return folder


def edit_series(folder: Path, edit: Callable[[int, object], bool | None]) -> Path:
    """``edit(k, dataset)`` on every slice file in slice order; True deletes the file."""
    import pydicom

    files = [(path, pydicom.dcmread(path)) for path in sorted(folder.iterdir())]
    files.sort(key=lambda item: float(item[1].ImagePositionPatient[2]))
    for k, (path, dataset) in enumerate(files):
        if edit(k, dataset):
            path.unlink()
        else:
            dataset.save_as(path)
    return folder


def cut_file(path: Path, share: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])
    return path


def predict(*arguments: object) -> list[str]:
    return ["predict", *(str(a) for a in arguments), *PREDICT]


# --- the classes -----------------------------------------------------------------------------


def missing_input(d: Path) -> list[str]:
    return predict(d / "no_such_ct.nii.gz", "-o", d / "out")


def empty_file(d: Path) -> list[str]:
    (d / "ct.nii.gz").write_bytes(b"")
    return predict(d / "ct.nii.gz", "-o", d / "out")


def unsupported_type(d: Path) -> list[str]:
    (d / "ct.png").write_bytes(b"\x89PNG\r\n")
    return predict(d / "ct.png", "-o", d / "out")


def not_an_image(d: Path) -> list[str]:
    (d / "ct.nii.gz").write_text("these are notes, not an image")
    return predict(d / "ct.nii.gz", "-o", d / "out")


def truncated_nifti(d: Path) -> list[str]:
    return predict(cut_file(image(d / "ct.nii.gz", phantom_ct()), 0.3), "-o", d / "out")


def truncated_metaimage(d: Path) -> list[str]:
    return predict(cut_file(image(d / "ct.mha", phantom_ct()), 0.5), "-o", d / "out")


def damaged_gzip(d: Path) -> list[str]:
    path = image(d / "ct.nii.gz", phantom_ct())
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))
    return predict(path, "-o", d / "out")


def with_non_finite(value: float) -> Volume:
    ct = phantom_ct()
    array = np.array(ct.array, dtype=np.float32)
    array[6, 20, 20] = value
    return ct.with_array(array)


def nan_nifti(d: Path) -> list[str]:
    return predict(image(d / "ct.nii.gz", with_non_finite(np.nan)), "-o", d / "out")


def infinity_nrrd(d: Path) -> list[str]:
    return predict(image(d / "ct.nrrd", with_non_finite(np.inf)), "-o", d / "out")


def labelmap_as_ct(d: Path) -> list[str]:
    return predict(image(d / "ctv.nii.gz", phantom_ctv(), np.uint8), "-o", d / "out")


def probability_map_as_ct(d: Path) -> list[str]:
    ctv = phantom_ctv()
    probability = ctv.with_array(np.asarray(ctv.array, dtype=np.float32) * 0.7 + 0.1)
    return predict(image(d / "probability.nii.gz", probability), "-o", d / "out")


def image_2d(d: Path) -> list[str]:
    return predict(raw_image(d / "slice.nrrd", np.zeros((40, 40), np.int16)), "-o", d / "out")


def image_4d(d: Path) -> list[str]:
    frames = [sitk.GetImageFromArray(np.zeros((4, 8, 8), np.float32)) for _ in range(2)]
    sitk.WriteImage(sitk.JoinSeries(frames), str(d / "dynamic.nii.gz"))
    return predict(d / "dynamic.nii.gz", "-o", d / "out")


def colour_image(d: Path) -> list[str]:
    rgb = raw_image(d / "rgb.mha", np.zeros((4, 8, 8, 3), np.uint8), is_vector=True)
    return predict(rgb, "-o", d / "out")


def two_slice_file(d: Path) -> list[str]:
    ct = raw_image(d / "ct.nii.gz", np.full((2, 8, 8), -1000.0, np.float32))
    return predict(ct, "-o", d / "out")


def no_dicom_files(d: Path) -> list[str]:
    (d / "folder").mkdir()
    (d / "folder" / "notes.txt").write_text("no images here")
    return predict(d / "folder", "-o", d / "out")


def two_series(d: Path) -> list[str]:
    series(d / "both" / "plan", series_description="plan CT", uid_seed="plan")  # fixed UIDs
    series(d / "both" / "rescan", slices=6, series_description="rescan", uid_seed="rescan")
    return predict(d / "both", "-o", d / "out")


def unknown_series_uid(d: Path) -> list[str]:
    return predict(series(d / "ct"), "--series-uid", "1.2.3.4", "-o", d / "out")


def series_uid_for_a_file(d: Path) -> list[str]:
    ct = image(d / "ct.nii.gz", phantom_ct())
    return predict(ct, "--series-uid", "1.2.3.4", "-o", d / "out")


def too_few_dicom_slices(d: Path) -> list[str]:
    return predict(series(d / "ct", slices=2), "-o", d / "out")


def missing_slice(d: Path) -> list[str]:
    return predict(edit_series(series(d / "ct"), lambda k, ds: k == 5), "-o", d / "out")


def uneven_spacing(d: Path) -> list[str]:
    def shift(k: int, ds: object) -> None:
        if k == 5:
            position = ds.ImagePositionPatient  # type: ignore[attr-defined]
            position[2] = float(position[2]) + 3.0

    return predict(edit_series(series(d / "ct"), shift), "-o", d / "out")


def duplicate_position(d: Path) -> list[str]:
    first: list[float] = []

    def duplicate(k: int, ds: object) -> None:
        position = ds.ImagePositionPatient  # type: ignore[attr-defined]
        if k == 0:
            first.append(float(position[2]))
        if k == 1:
            position[2] = first[0]

    return predict(edit_series(series(d / "ct"), duplicate), "-o", d / "out")


def mixed_orientation(d: Path) -> list[str]:
    def rotate(k: int, ds: object) -> None:
        if k == 3:
            c, s = np.cos(np.radians(5)), np.sin(np.radians(5))
            ds.ImageOrientationPatient = [c, s, 0, -s, c, 0]  # type: ignore[attr-defined]

    return predict(edit_series(series(d / "ct"), rotate), "-o", d / "out")


def mr_series(d: Path) -> list[str]:
    from pydicom.uid import MRImageStorage

    def to_mr(k: int, ds: object) -> None:
        ds.SOPClassUID = MRImageStorage  # type: ignore[attr-defined]
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage  # type: ignore[attr-defined]
        ds.Modality = "MR"  # type: ignore[attr-defined]

    return predict(edit_series(series(d / "mr"), to_mr), "-o", d / "out")


def rtstruct_only(d: Path) -> list[str]:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTStructureSetStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = RTStructureSetStorage
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.SeriesInstanceUID = generate_uid()
    dataset.Modality = "RTSTRUCT"
    (d / "rs").mkdir()
    dataset.save_as(d / "rs" / "rs.dcm", enforce_file_format=True)
    return predict(d / "rs", "-o", d / "out")


def undecodable_pixels(d: Path) -> list[str]:
    def damage(k: int, ds: object) -> None:
        if k == 4:
            ds.PixelData = b"\0" * 6  # type: ignore[attr-defined]

    return predict(edit_series(series(d / "ct"), damage), "-o", d / "out")


def localizers_only(d: Path) -> list[str]:
    def scout(k: int, ds: object) -> None:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]  # type: ignore[attr-defined]

    return predict(edit_series(series(d / "scout"), scout), "-o", d / "out")


def shifted_images(d: Path) -> list[str]:
    def shift(k: int, ds: object) -> None:
        if k in (4, 9):
            position = ds.ImagePositionPatient  # type: ignore[attr-defined]
            position[0] = float(position[0]) + 25.0

    return predict(edit_series(series(d / "ct"), shift), "-o", d / "out")


def multiframe_without_frames(d: Path) -> list[str]:
    from pydicom.uid import LegacyConvertedEnhancedCTImageStorage as LEGACY

    def to_multiframe(k: int, ds: object) -> bool:
        if k:
            return True
        ds.SOPClassUID = LEGACY  # type: ignore[attr-defined]
        ds.file_meta.MediaStorageSOPClassUID = LEGACY  # type: ignore[attr-defined]
        ds.NumberOfFrames = 0  # type: ignore[attr-defined]
        ds.PixelData = b""  # type: ignore[attr-defined]
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            delattr(ds, keyword)
        return False

    return predict(edit_series(series(d / "ct"), to_multiframe), "-o", d / "out")


def strip_preamble(folder: Path) -> Path:
    """Drop the 128-byte preamble and ``DICM``: each file starts with its meta group."""
    for path in folder.iterdir():
        path.write_bytes(path.read_bytes()[132:])
    return folder


def mr_without_preamble(d: Path) -> list[str]:
    mr_series(d)
    return predict(strip_preamble(d / "mr"), "-o", d / "out")


def cut_jpeg2000(d: Path) -> list[str]:
    from pydicom.encaps import encapsulate, generate_frames
    from pydicom.uid import JPEG2000Lossless

    def compress(k: int, ds: object) -> None:
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")  # type: ignore[attr-defined]
        if k == 4:
            (frame,) = generate_frames(ds.PixelData, number_of_frames=1)  # type: ignore[attr-defined]
            ds.PixelData = encapsulate([frame[: len(frame) // 3]])  # type: ignore[attr-defined]

    return predict(edit_series(series(d / "ct"), compress), "-o", d / "out")


def blank_uid_series(d: Path) -> list[str]:
    def blank(k: int, ds: object) -> None:
        for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
            setattr(ds, keyword, "")

    folder = edit_series(series(d / "ct"), blank)
    return predict(folder, "--format", "nifti,rtstruct", "-o", d / "out")


def tilted_series(d: Path) -> list[str]:
    step_mm, tan_tilt = 10.0, float(np.tan(np.radians(10.0)))

    def tilt(k: int, ds: object) -> None:
        position = ds.ImagePositionPatient  # type: ignore[attr-defined]
        position[1] = float(position[1]) + k * step_mm * tan_tilt
        ds.GantryDetectorTilt = 10.0  # type: ignore[attr-defined]

    return predict(edit_series(series(d / "ct"), tilt), "-o", d / "out")


def one_uncertainty_sample(d: Path) -> list[str]:
    return predict(image(d / "ct.nii.gz", phantom_ct()), "--uncertainty", "1", "-o", d / "out")


def unknown_format(d: Path) -> list[str]:
    ct = image(d / "ct.nii.gz", phantom_ct())
    return predict(ct, "--format", "nifti,pdf", "-o", d / "out")


def dicom_export_from_nifti(d: Path) -> list[str]:
    ct = image(d / "ct.nii.gz", phantom_ct())
    return predict(ct, "--format", "rtstruct", "-o", d / "out")


def unknown_device(d: Path) -> list[str]:
    ct = image(d / "ct.nii.gz", phantom_ct())
    return ["predict", str(ct), "-o", str(d / "out"), "--device", "tpu", "--progress", "none"]


def missing_output_parent(d: Path) -> list[str]:
    return predict(image(d / "ct.nii.gz", phantom_ct()), "-o", d / "no" / "such" / "out")


def output_is_a_file(d: Path) -> list[str]:
    (d / "out").write_text("a file")
    return predict(image(d / "ct.nii.gz", phantom_ct()), "-o", d / "out")


def existing_outputs(d: Path) -> list[str]:
    (d / "out").mkdir()
    (d / "out" / "ctv.nii.gz").write_bytes(b"an earlier result")
    return predict(image(d / "ct.nii.gz", phantom_ct()), "-o", d / "out")


def missing_model(d: Path) -> list[str]:
    ct = image(d / "ct.nii.gz", phantom_ct())
    return predict(ct, "--model", d / "model.safetensors", "-o", d / "out")


def batch_with_a_bad_case(d: Path) -> list[str]:
    (d / "cases").mkdir()
    image(d / "cases" / "ctv.nii.gz", phantom_ctv(), np.uint8)
    (d / "cases" / "empty.nii.gz").write_bytes(b"")
    return predict(d / "cases", "--batch", "-o", d / "out")


def complete_files(d: Path, labels: np.ndarray) -> list[str]:
    ct = phantom_ct()
    image(d / "ct.nii.gz", ct)
    image(d / "sparse.nii.gz", ct.with_array(labels), np.uint8)
    return ["complete", str(d / "ct.nii.gz"), str(d / "sparse.nii.gz"), "--method", "interpolate"]


def complete_two_labels(d: Path) -> list[str]:
    labels = np.zeros((12, 40, 40), np.uint8)
    labels[[3, 7], 15:25, 15:25] = 1
    labels[[4, 8], 5:9, 5:9] = 2
    return [*complete_files(d, labels), "-o", str(d / "out.nii.gz"), "--progress", "none"]


def complete_fully_drawn(d: Path) -> list[str]:
    from AutoCTVLib.phantom import PhantomConfig, generate_phantom

    config = PhantomConfig(seed=3, size_xyz=(64, 64, 24), spacing_xyz_mm=(5.0, 5.0, 5.0))
    phantom = generate_phantom(config)
    image(d / "ct.nii.gz", phantom.ct)
    image(d / "full.nii.gz", phantom.ctv, np.uint8)
    arguments = ["complete", str(d / "ct.nii.gz"), str(d / "full.nii.gz"), "-o"]
    return [*arguments, str(d / "out.nii.gz"), "--method", "interpolate", "--progress", "none"]


def complete_nothing_drawn(d: Path) -> list[str]:
    empty = np.zeros((12, 40, 40), np.uint8)
    return [*complete_files(d, empty), "-o", str(d / "out.nii.gz"), "--progress", "none"]


def complete_onto_existing(d: Path) -> list[str]:
    labels = np.zeros((12, 40, 40), np.uint8)
    labels[[3, 7], 15:25, 15:25] = 1
    (d / "out.nii.gz").write_bytes(b"an earlier result")
    return [*complete_files(d, labels), "-o", str(d / "out.nii.gz"), "--progress", "none"]


def complete_other_grid(d: Path) -> list[str]:
    arguments = complete_two_labels(d)
    raw_image(d / "sparse.nii.gz", np.ones((5, 9, 9), np.uint8))
    return arguments


def demo_size_form(d: Path) -> list[str]:
    return ["demo", "-o", str(d / "demo"), "--size", "64", "--progress", "none"]


CASES: list[BadInput] = [
    BadInput("input missing", missing_input),
    BadInput("empty file (0 bytes)", empty_file),
    BadInput("unsupported file type (.png)", unsupported_type),
    BadInput("text file named .nii.gz", not_an_image),
    BadInput("truncated .nii.gz (30 % of the bytes)", truncated_nifti),
    BadInput("truncated .mha (50 %)", truncated_metaimage),
    BadInput("damaged .nii.gz (zeroed bytes in the gzip stream)", damaged_gzip),
    BadInput("NaN voxel in a NIfTI CT", nan_nifti),
    BadInput("infinite voxel in an NRRD CT", infinity_nrrd),
    BadInput("labelmap given as the CT", labelmap_as_ct),
    BadInput("probability map given as the CT", probability_map_as_ct),
    BadInput("2D image", image_2d),
    BadInput("4D image (time series)", image_4d),
    BadInput("colour (RGB) image", colour_image),
    BadInput("image file with 2 slices", two_slice_file),
    BadInput("folder without DICOM files", no_dicom_files),
    BadInput("folder with two CT series", two_series),
    BadInput("--series-uid not in the folder", unknown_series_uid),
    BadInput("--series-uid with an image file", series_uid_for_a_file),
    BadInput("DICOM series with 2 slices", too_few_dicom_slices),
    BadInput("DICOM series with a missing slice", missing_slice),
    BadInput("DICOM series with uneven slice spacing", uneven_spacing),
    BadInput("two DICOM slices at one position", duplicate_position),
    BadInput("DICOM slices with different orientations", mixed_orientation),
    BadInput("MR series (wrong modality)", mr_series),
    BadInput("RTSTRUCT without its CT", rtstruct_only),
    BadInput("undecodable DICOM pixel data", undecodable_pixels),
    BadInput("only localizer (scout) images", localizers_only),
    BadInput("DICOM images shifted in a way no gantry tilt explains", shifted_images),
    BadInput("multi-frame CT with no frames", multiframe_without_frames),
    BadInput("DICOM MR files without the 128-byte preamble", mr_without_preamble),
    BadInput("JPEG 2000 pixel data cut short", cut_jpeg2000),
    BadInput("DICOM series with blank UIDs", blank_uid_series, accepted=True),
    BadInput("gantry-tilted DICOM series (10°)", tilted_series, accepted=True),
    BadInput("--uncertainty 1", one_uncertainty_sample),
    BadInput("unknown --format", unknown_format),
    BadInput("RTSTRUCT export from a NIfTI CT", dicom_export_from_nifti),
    BadInput("unknown --device", unknown_device),
    BadInput("output folder's parent missing", missing_output_parent),
    BadInput("output folder is a file", output_is_a_file),
    BadInput("outputs exist, no --overwrite", existing_outputs),
    BadInput("--model file missing", missing_model),
    BadInput("batch with bad cases (goes on, fails at the end)", batch_with_a_bad_case),
    BadInput("complete: several labels drawn", complete_two_labels),
    BadInput("complete: structure drawn in full", complete_fully_drawn),
    BadInput("complete: nothing drawn", complete_nothing_drawn),
    BadInput("complete: output exists, no --overwrite", complete_onto_existing),
    BadInput("complete: drawing on another grid", complete_other_grid),
    BadInput("demo --size in the wrong form", demo_size_form),
]


# --- running and the table -------------------------------------------------------------------


def run_case(case: BadInput, folder: Path, timeout_s: float = 300.0) -> Answer:
    """Build ``case`` in ``folder`` and run ``autoctv`` on it in a fresh process."""
    folder.mkdir(parents=True, exist_ok=True)
    arguments = case.build(folder)
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY), "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "AutoCTVLib.cli.main", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout_s,
        cwd=folder,
    )
    message = result.stderr.strip()
    if case.accepted:  # only its warnings: the rest is the usual log of a prediction
        lines = message.splitlines()
        message = "\n".join(line for line in lines if line.startswith("warning: "))
    for path in (str(folder.resolve()), str(folder)):
        message = message.replace(path, "DIR")
    return Answer(result.returncode, message)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def render_table(rows: list[tuple[BadInput, Answer]]) -> str:
    """The Markdown page: a short preface and one table row per class."""
    lines = [
        "# Bad inputs: what `autoctv` answers",
        "",
        "Generated by `scripts/bad_inputs.py` (do not edit by hand): each class of bad input is",
        "built from a tiny synthetic phantom and run through the command in a fresh process; the",
        "message is what the command printed on stderr (paths inside the case folder shown as",
        "`DIR/...`). Every error is one line; exit code 2 is a user error (nothing written).",
        f"Rows marked **{ACCEPTED}** are valid inputs the reader repairs: they are contoured",
        "(exit 0) and the message column shows the warning lines printed with the outputs.",
        "`Testing/test_bad_inputs_table.py` re-runs a few rows on every test run and all rows",
        "with `-m slow`.",
        "",
        "| # | input | result | exit | message |",
        "|---|---|---|---|---|",
    ]
    for number, (case, answer) in enumerate(rows, start=1):
        result = f"**{ACCEPTED}**" if case.accepted else REFUSED
        lines.append(
            f"| {number} | {_cell(case.name)} | {result} | {answer.exit_code} | "
            f"{_cell(answer.message)} |"
        )
    return "\n".join(lines) + "\n"


_ROW = re.compile(r"^\| (\d+) \| (.*?) \| (\*\*accepted\*\*|refused) \| (\d+) \| (.*) \|$")
ACCEPTED, REFUSED = "accepted", "refused"


def read_table(path: Path = TABLE_PATH) -> dict[str, tuple[bool, Answer]]:
    """The committed table: class name → (marked accepted, recorded answer)."""
    recorded: dict[str, tuple[bool, Answer]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match:
            name = match.group(2).replace("\\|", "|")
            message = match.group(5).replace("\\|", "|").replace("<br>", "\n")
            accepted = match.group(3) == f"**{ACCEPTED}**"
            recorded[name] = (accepted, Answer(int(match.group(4)), message))
    return recorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=TABLE_PATH, help="the Markdown table")
    parser.add_argument("--only", help="run the classes whose name contains this; print only")
    args = parser.parse_args(argv)
    chosen = [c for c in CASES if args.only is None or args.only.lower() in c.name.lower()]
    rows: list[tuple[BadInput, Answer]] = []
    with tempfile.TemporaryDirectory(prefix="autoctv-bad-inputs-") as root:
        for number, case in enumerate(chosen, start=1):
            answer = run_case(case, Path(root) / f"case{number:02d}")
            rows.append((case, answer))
            print(f"{number:2d}. {case.name}: exit {answer.exit_code}: {answer.message}")
    if args.only is None:
        args.out.write_text(render_table(rows), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
