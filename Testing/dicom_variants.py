"""Build the DICOM variants real archives hold from a plain phantom CT series (test helpers).

Every builder writes a new folder from a plain series written by
:func:`AutoCTVLib.io.dicom_ct_write.write_ct_series`: blank UIDs, no preamble, another transfer
syntax (encoded with GDCM, the same on pydicom 2.4 and 3), a gantry tilt, or one multi-frame
Enhanced / Legacy Converted Enhanced CT file (pydicom alone, or highdicom's converter). They run
under pydicom 2.4 and 3.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from scipy import ndimage

from AutoCTVLib.io.dicom_ct_write import write_ct_series
from AutoCTVLib.io.identity import SeriesIdentity
from AutoCTVLib.volume import Geometry, Volume

PYDICOM_MAJOR = int(pydicom.__version__.split(".")[0])
UID_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")


def save_keeping_meta(dataset: Dataset, path: Path) -> None:
    """Save ``dataset`` with its file meta exactly as it is (blank UIDs are not filled in)."""
    if PYDICOM_MAJOR >= 3:
        dataset.save_as(path, enforce_file_format=False)
    else:
        dataset.save_as(path, write_like_original=True)


def dicom_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def copy_series(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def edit_files(folder: Path, edit: Callable[[Dataset], None]) -> None:
    """Apply ``edit`` to every file's data set and save it back, file meta unchanged."""
    for path in dicom_files(folder):
        dataset = pydicom.dcmread(path)
        edit(dataset)
        save_keeping_meta(dataset, path)


def blank_uids(folder: Path, keywords: Sequence[str] = UID_KEYWORDS) -> Path:
    """Empty the named UIDs in every data set (the file meta keeps the SOP class/instance)."""

    def blank(dataset: Dataset) -> None:
        for keyword in keywords:
            setattr(dataset, keyword, "")

    edit_files(folder, blank)
    return folder


def strip_preamble(folder: Path) -> Path:
    """Drop the 128-byte preamble and ``DICM`` so each file starts with its meta group."""
    for path in dicom_files(folder):
        raw = path.read_bytes()
        assert raw[128:132] == b"DICM"
        path.write_bytes(raw[132:])
    return folder


def transcode(folder: Path, syntax: str, *, lossy: bool = False) -> Path:
    """Re-encode every file in place with GDCM into the transfer syntax named by GDCM's enum
    (``JPEG2000``, ``JPEG2000Lossless``, ``JPEGBaselineProcess1``, ``JPEGExtendedProcess2_4``,
    ``JPEGLosslessProcess14_1``, ``JPEGLSLossless``, ``JPEGLSNearLossless``, ``RLELossless``).
    ``lossy`` asks JPEG, JPEG-LS and JPEG 2000 for real (visible) loss."""
    import gdcm

    for path in dicom_files(folder):
        reader = gdcm.ImageReader()
        reader.SetFileName(str(path))
        assert reader.Read(), path
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
        codec = _lossy_codec(syntax) if lossy else None
        if codec is not None:
            change.SetUserCodec(codec)
        change.SetInput(reader.GetImage())
        assert change.Change(), f"GDCM cannot encode {syntax}"
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(path))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        assert writer.Write(), path
    return folder


def _lossy_codec(syntax: str) -> object | None:
    import gdcm

    if syntax.startswith("JPEG2000"):
        codec = gdcm.JPEG2000Codec()
        codec.SetRate(0, 8.0)  # 8:1 compression
        return codec
    if syntax.startswith("JPEGLS"):
        codec = gdcm.JPEGLSCodec()
        codec.SetLossless(False)
        codec.SetLossyError(3)
        return codec
    if syntax.startswith("JPEG"):
        codec = gdcm.JPEGCodec()
        codec.SetLossless(False)
        codec.SetQuality(90)
        return codec
    return None


def deflate(folder: Path) -> Path:
    """Rewrite every file as Deflated Explicit VR Little Endian."""

    def to_deflated(dataset: Dataset) -> None:
        dataset.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
        if PYDICOM_MAJOR < 3:
            dataset.is_little_endian, dataset.is_implicit_VR = True, False

    edit_files(folder, to_deflated)
    return folder


def requantise(
    folder: Path, bits: int, slope_hu: float = 1.0, intercept_hu: float = -1024.0
) -> Path:
    """Store every slice as unsigned ``bits``-bit values (8: JPEG baseline, 12: JPEG extended)
    with the given RescaleSlope and RescaleIntercept (HU = stored × slope + intercept)."""

    def quantise(dataset: Dataset) -> None:
        hu = dataset.pixel_array.astype(np.float64) * float(dataset.RescaleSlope) + float(
            dataset.RescaleIntercept
        )
        top = 2**bits - 1
        stored = np.clip(np.round((hu - intercept_hu) / slope_hu), 0, top)
        dtype = np.uint8 if bits <= 8 else np.uint16
        dataset.BitsAllocated, dataset.BitsStored = (8 if bits <= 8 else 16), bits
        dataset.HighBit = bits - 1
        dataset.PixelRepresentation = 0
        dataset.RescaleSlope, dataset.RescaleIntercept = slope_hu, intercept_hu
        dataset.PixelData = stored.astype(dtype).tobytes()
        for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue"):
            if keyword in dataset:
                delattr(dataset, keyword)

    edit_files(folder, quantise)
    return folder


def requantised_hounsfield(
    ct_hu: np.ndarray, bits: int, slope_hu: float = 1.0, intercept_hu: float = -1024.0
) -> np.ndarray:
    """What :func:`requantise` keeps of ``ct_hu`` (float32)."""
    stored = np.clip(np.round((ct_hu - intercept_hu) / slope_hu), 0, 2**bits - 1)
    return (stored * slope_hu + intercept_hu).astype(np.float32)


def write_tilted(
    volume: Volume,
    folder: Path,
    tan_tilt: float,
    uid_seed: str = "tilt",
    prerendered: np.ndarray | None = None,
) -> SeriesIdentity:
    """Write ``volume`` (an axial grid) as a gantry-tilted series: image k shifted along the
    column axis by ``k × step × tan_tilt`` mm and filled with the volume's values there
    (linear interpolation, −1024 HU outside), so the images sample the same anatomy at the
    tilted positions; or, when given, the ``prerendered`` images (:func:`tilted_phantom_ct`)."""
    geometry = volume.geometry
    step = geometry.spacing_xyz_mm[2]
    shift_mm = step * tan_tilt
    shift_rows = shift_mm / geometry.spacing_xyz_mm[1]
    sheared = np.empty_like(volume.array)
    for k in range(volume.array.shape[0]):
        if prerendered is not None:
            sheared[k] = prerendered[k]
            continue
        ndimage.shift(
            volume.array[k],
            shift=(-k * shift_rows, 0.0),
            output=sheared[k],
            order=1,
            mode="constant",
            cval=-1024.0,
            prefilter=False,
        )
    identity = write_ct_series(Volume(np.round(sheared), geometry), folder, uid_seed=uid_seed)
    column_axis = geometry.direction_matrix[:, 1]
    normal = geometry.direction_matrix[:, 2]
    origin = np.asarray(geometry.origin_xyz_mm)

    def tilt(dataset: Dataset) -> None:
        position = np.asarray([float(v) for v in dataset.ImagePositionPatient])
        k = round(float((position - origin) @ normal) / step)
        moved = position + k * shift_mm * column_axis
        dataset.ImagePositionPatient = [round(float(v), 6) for v in moved]
        # The sign dcm2niix derives from the same positions (it checks the tag against them).
        dataset.GantryDetectorTilt = round(-float(np.degrees(np.arctan(tan_tilt))), 4)

    edit_files(folder, tilt)
    return identity


def tilted_phantom_ct(config: object, tan_tilt: float) -> np.ndarray:
    """The phantom of ``config`` rendered image by image at a tilted gantry's positions (image k
    moved along the column axis by ``k × step × tan_tilt`` mm): what a tilted scan acquires,
    with no interpolation. Each image is rendered noise-free and gets its own Gaussian noise of
    the phantom's level (rendering one image at a time would repeat one noise pattern in every
    slice). Returns the images (z, y, x) in HU; ``write_tilted(..., prerendered)`` writes them.
    """
    from dataclasses import replace as replace_config

    from AutoCTVLib.phantom import generate_phantom

    plain = generate_phantom(config)  # type: ignore[arg-type]
    geometry = plain.ct.geometry
    noise_hu = float(plain.anatomy["noise_hu"])
    rng = np.random.default_rng(int(getattr(config, "seed", 0)))
    column_axis = geometry.direction_matrix[:, 1]
    normal = geometry.direction_matrix[:, 2]
    step = geometry.spacing_xyz_mm[2]
    images = []
    for k in range(geometry.shape_zyx[0]):
        origin = np.asarray(geometry.origin_xyz_mm) + k * step * (normal + tan_tilt * column_axis)
        one = Geometry(
            (1, *geometry.shape_zyx[1:]), geometry.spacing_xyz_mm, tuple(origin), geometry.direction
        )
        single = replace_config(config, grid=one, size_xyz=None, spacing_xyz_mm=None, noise_hu=0.0)
        image = generate_phantom(single).ct.array[0]
        images.append(np.round(image + rng.normal(0.0, noise_hu, image.shape)))
    return np.stack(images).astype(np.float32)


def write_multiframe(
    plain: Path, target: Path, *, enhanced: bool, converter: str = "pydicom"
) -> Path:
    """One Legacy Converted Enhanced CT file from the plain series, built by ``converter``
    (``"pydicom"``: :mod:`dicom_multiframe_builder`, on every stack; ``"highdicom"``: its legacy
    converter, a second, independent producer); with ``enhanced`` relabelled as Enhanced CT
    Image Storage (same functional groups)."""
    datasets = [pydicom.dcmread(path) for path in dicom_files(plain)]
    if converter == "pydicom":
        from dicom_multiframe_builder import legacy_converted_ct, save_multiframe

        built = legacy_converted_ct(datasets)
        if enhanced:
            built.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
            built.file_meta.MediaStorageSOPClassUID = built.SOPClassUID
        target.mkdir(parents=True)
        save_multiframe(built, target / "enhanced_ct.dcm")
        return target
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    image = LegacyConvertedEnhancedCTImage(
        legacy_datasets=datasets,
        series_instance_uid=pydicom.uid.generate_uid(),
        series_number=datasets[0].SeriesNumber,
        sop_instance_uid=pydicom.uid.generate_uid(),
        instance_number=1,
    )
    if enhanced:
        enhanced_class = "1.2.840.10008.5.1.4.1.1.2.1"
        image.SOPClassUID = enhanced_class
        image.file_meta.MediaStorageSOPClassUID = enhanced_class
    target.mkdir(parents=True)
    path = target / "enhanced_ct.dcm"
    if PYDICOM_MAJOR >= 3:
        image.save_as(path, enforce_file_format=True)
    else:
        image.save_as(path, write_like_original=False)
    return target


def resample_like(volume: Volume, geometry: Geometry, *, nearest: bool) -> np.ndarray:
    """``volume`` resampled onto ``geometry`` (z, y, x); outside → -1024 (or 0 for labels)."""
    import SimpleITK as sitk

    image = volume.to_sitk()
    reference = geometry.to_sitk_reference(sitk.sitkFloat32)
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    outside = 0.0 if nearest else -1024.0
    resampled = sitk.Resample(image, reference, sitk.Transform(), interpolator, outside)
    return sitk.GetArrayFromImage(resampled)


def scanner_style_anonymised(plain: Path, target: Path) -> Path:
    """The plain series as a Siemens scanner exports it after an anonymiser has run: Siemens
    equipment attributes and a private CSA block, JPEG 2000 lossless, and SOPClassUID,
    SOPInstanceUID, SeriesInstanceUID and StudyInstanceUID present but empty (the file meta
    still holds the SOP class and instance), patient name empty, dates removed."""
    folder = copy_series(plain, target)

    def siemens(dataset: Dataset) -> None:
        dataset.Manufacturer = "SIEMENS"
        dataset.ManufacturerModelName = "SOMATOM Definition Edge"
        dataset.SoftwareVersions = "syngo CT VA48A"
        dataset.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "CT_SOM5 SPI"]
        dataset.ConvolutionKernel = "Br40d"
        block = dataset.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
        block.add_new(0x10, "OB", b"SV10\x04\x03\x02\x01" + bytes(24))
        dataset.PatientName = ""
        dataset.PatientID = "ANON0001"
        for keyword in ("StudyDate", "SeriesDate", "ContentDate", "AcquisitionDate"):
            if keyword in dataset:
                delattr(dataset, keyword)

    edit_files(folder, siemens)
    transcode(folder, "JPEG2000Lossless")
    return blank_uids(folder)


def _copy_then(change: Callable[[Path], Path]) -> Callable[[Path, Path, Volume], Path]:
    def build(plain: Path, target: Path, ct: Volume) -> Path:
        return change(copy_series(plain, target))

    return build


def _tilted(degrees: float) -> Callable[[Path, Path, Volume], Path]:
    def build(plain: Path, target: Path, ct: Volume) -> Path:
        write_tilted(ct, target, float(np.tan(np.radians(degrees))))
        return target

    return build


def _multiframe(enhanced: bool) -> Callable[[Path, Path, Volume], Path]:
    def build(plain: Path, target: Path, ct: Volume) -> Path:
        return write_multiframe(plain, target, enhanced=enhanced)

    return build


#: name → builder(plain series folder, new folder, the CT the plain series holds) → folder.
VARIANTS: dict[str, Callable[[Path, Path, Volume], Path]] = {
    "blank UIDs": _copy_then(blank_uids),
    "no preamble": _copy_then(strip_preamble),
    "JPEG 2000 lossless": _copy_then(lambda folder: transcode(folder, "JPEG2000Lossless")),
    "JPEG 2000 lossy (8:1)": _copy_then(lambda folder: transcode(folder, "JPEG2000", lossy=True)),
    "scanner-style anonymised (Siemens, JPEG 2000, blank UIDs)": lambda plain, target, ct: (
        scanner_style_anonymised(plain, target)
    ),
    "gantry tilt 15°": _tilted(15.0),
    "Legacy Converted Enhanced CT": _multiframe(False),
    "Enhanced CT": _multiframe(True),
}


def dice_in_physical_space(label: Volume, reference: Volume) -> float:
    """Dice of two labelmaps, ``reference`` resampled (nearest) onto ``label``'s grid."""
    if label.geometry.is_close(reference.geometry):
        other = np.asarray(reference.array)
    else:
        other = resample_like(reference, label.geometry, nearest=True)
    mine, theirs = np.asarray(label.array) > 0, other > 0
    total = int(mine.sum()) + int(theirs.sum())
    return 1.0 if total == 0 else 2.0 * int((mine & theirs).sum()) / total


def dcm2niix_executable() -> str | None:
    """The dcm2niix program: the PyPI package's (a test dependency), else one on PATH."""
    try:
        import dcm2niix

        program = Path(str(dcm2niix.bin))
        if program.is_file():
            return str(program)
    except ImportError:
        pass
    return shutil.which("dcm2niix")
