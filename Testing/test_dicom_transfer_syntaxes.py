"""Every common transfer syntax reads back like the plain series, decoded by declared packages.

A tiny phantom series (64×64×24 at 5 mm) is re-encoded with GDCM into each syntax. Lossless
ones must give the plain series' exact Hounsfield units; lossy ones must stay close. JPEG
baseline holds only 8-bit samples, so that variant is first stored as 8 bits (8 HU a step) and
compared with that. The decoders the project declares (pylibjpeg with its libjpeg, openjpeg and
RLE plugins) must decode each syntax on their own, and SimpleITK (GDCM) must agree with us.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_variants import (
    PYDICOM_MAJOR,
    copy_series,
    deflate,
    dicom_files,
    requantise,
    requantised_hounsfield,
    transcode,
)

from AutoCTVLib.io.ct_reader import read_ct
from AutoCTVLib.io.dicom_ct_write import write_ct_series
from AutoCTVLib.phantom import PhantomConfig, generate_phantom

pytest.importorskip("gdcm", reason="python-gdcm (a test dependency) encodes the variants")


@dataclass(frozen=True)
class Syntax:
    gdcm_name: str  # GDCM's TransferSyntax enum name ("" for deflate, written by pydicom)
    uid: str
    lossy: bool = False
    bits: int = 16  # 8: stored as 8-bit first (JPEG baseline)
    mean_abs_hu: float = 0.0  # largest mean |difference| allowed (lossy)


SYNTAXES = [
    Syntax("JPEGBaselineProcess1", pydicom.uid.JPEGBaseline8Bit, True, 8, 25.0),
    Syntax("JPEGLosslessProcess14_1", pydicom.uid.JPEGLosslessSV1),
    Syntax("JPEGLSLossless", pydicom.uid.JPEGLSLossless),
    Syntax("JPEGLSNearLossless", pydicom.uid.JPEGLSNearLossless, True, 16, 3.0),
    Syntax("JPEG2000Lossless", pydicom.uid.JPEG2000Lossless),
    Syntax("JPEG2000", pydicom.uid.JPEG2000, True, 16, 25.0),
    Syntax("RLELossless", pydicom.uid.RLELossless),
    Syntax("", pydicom.uid.DeflatedExplicitVRLittleEndian),
]


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    phantom = generate_phantom(
        PhantomConfig(seed=3, size_xyz=(64, 64, 24), spacing_xyz_mm=(5.0, 5.0, 5.0), noise_hu=10)
    )
    folder = tmp_path_factory.mktemp("syntax") / "plain"
    write_ct_series(phantom.ct, folder, uid_seed="plain")
    return folder


def build(plain: Path, syntax: Syntax, target: Path) -> tuple[Path, np.ndarray]:
    """The variant folder and the HU it should hold (the plain series, requantised if 8-bit)."""
    expected = read_ct(plain).volume.array
    folder = copy_series(plain, target)
    if syntax.bits == 8:
        requantise(folder, 8, slope_hu=8.0)
        expected = requantised_hounsfield(expected, 8, slope_hu=8.0)
    if syntax.gdcm_name:
        transcode(folder, syntax.gdcm_name, lossy=syntax.lossy)
    else:
        deflate(folder)
    written = pydicom.dcmread(dicom_files(folder)[0], stop_before_pixels=True)
    assert written.file_meta.TransferSyntaxUID == syntax.uid
    return folder, expected


def assert_close(actual: np.ndarray, expected: np.ndarray, syntax: Syntax) -> None:
    if syntax.lossy:
        mean_abs = float(np.mean(np.abs(actual - expected)))
        assert 0 < mean_abs <= syntax.mean_abs_hu, mean_abs
        assert np.corrcoef(actual.ravel(), expected.ravel())[0, 1] > 0.99
    else:
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("syntax", SYNTAXES, ids=lambda s: s.uid.name.split(" (")[0])
def test_transfer_syntax_reads_like_the_plain_series(
    plain: Path, syntax: Syntax, tmp_path: Path
) -> None:
    folder, expected = build(plain, syntax, tmp_path / "variant")
    loaded = read_ct(folder)
    assert loaded.volume.geometry.is_close(read_ct(plain).volume.geometry, atol_mm=1e-4)
    assert_close(loaded.volume.array, expected, syntax)


def _decode_with_declared_packages(path: Path) -> np.ndarray:
    """Stored values of one file decoded only by pydicom's own code and pylibjpeg."""
    dataset = pydicom.dcmread(path)
    if PYDICOM_MAJOR >= 3:
        from pydicom.pixels import get_decoder

        syntax = dataset.file_meta.TransferSyntaxUID
        if not syntax.is_compressed:
            return dataset.pixel_array
        plugins = get_decoder(syntax).available_plugins
        plugin = "pydicom" if "pydicom" in plugins else "pylibjpeg"
        assert plugin in plugins, f"no declared decoder for {syntax.name}: {plugins}"
        return pydicom.pixels.pixel_array(dataset, decoding_plugin=plugin)
    from pydicom import config
    from pydicom.pixel_data_handlers import numpy_handler, pylibjpeg_handler, rle_handler

    saved = config.pixel_data_handlers
    config.pixel_data_handlers = [numpy_handler, rle_handler, pylibjpeg_handler]
    try:
        return dataset.pixel_array
    finally:
        config.pixel_data_handlers = saved


@pytest.mark.parametrize("syntax", SYNTAXES, ids=lambda s: s.uid.name.split(" (")[0])
def test_declared_decoders_alone_decode_each_syntax(
    plain: Path, syntax: Syntax, tmp_path: Path
) -> None:
    """pylibjpeg and its plugins (the project's dependencies) decode it without GDCM."""
    folder, _ = build(plain, syntax, tmp_path / "variant")
    path = dicom_files(folder)[0]
    decoded = _decode_with_declared_packages(path)
    reference = pydicom.dcmread(path).pixel_array  # any decoder pydicom picks (GDCM here)
    # Lossy JPEG leaves the inverse DCT's rounding to the decoder: ±1 stored value.
    tolerance = 1 if syntax.uid == pydicom.uid.JPEGBaseline8Bit else 0
    np.testing.assert_allclose(decoded.astype(int), reference.astype(int), rtol=0, atol=tolerance)


@pytest.mark.parametrize(
    "syntax", [s for s in SYNTAXES if s.gdcm_name], ids=lambda s: s.uid.name.split(" (")[0]
)
def test_simpleitk_gdcm_reads_each_variant_like_autoctv(
    plain: Path, syntax: Syntax, tmp_path: Path
) -> None:
    folder, _ = build(plain, syntax, tmp_path / "variant")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    ours = read_ct(folder).volume
    assert image.GetSize() == ours.geometry.size_xyz
    np.testing.assert_allclose(image.GetOrigin(), ours.geometry.origin_xyz_mm, atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), ours.geometry.spacing_xyz_mm, atol=1e-4)
    np.testing.assert_allclose(np.asarray(image.GetDirection()), ours.geometry.direction, atol=1e-6)
    # Both decoders agree voxel for voxel, lossy or not (same decoded bits).
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image).astype(np.float32), ours.array)
