"""Draw the extension icon (128×128 RGBA PNG): an axial pelvis sketch with a red CTV and a
yellow uncertainty rim. Run: .venv/bin/python scripts/make_icon.py"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

SIZE = 128


def main() -> None:
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(float) + 0.5
    rgba = np.zeros((SIZE, SIZE, 4), dtype=float)
    body = ((x - 64) / 58) ** 2 + ((y - 68) / 44) ** 2 <= 1
    rgba[body] = (70, 70, 78, 255)
    for cx in (30, 98):  # femoral heads / acetabula
        bone = ((x - cx) / 13) ** 2 + ((y - 74) / 13) ** 2 <= 1
        rgba[bone] = (235, 230, 215, 255)
    sacrum = ((x - 64) / 20) ** 2 + ((y - 100) / 9) ** 2 <= 1
    rgba[sacrum] = (235, 230, 215, 255)
    ctv_distance = ((x - 64) / 26) ** 2 + ((y - 70) / 18) ** 2
    rgba[(ctv_distance > 0.78) & (ctv_distance <= 1.18)] = (250, 205, 40, 255)
    rgba[ctv_distance <= 0.78] = (215, 40, 40, 255)
    image = sitk.GetImageFromArray(rgba.astype(np.uint8), isVector=True)
    out = Path(__file__).resolve().parents[1] / "AutoCTV/Resources/Icons/AutoCTV.png"
    sitk.WriteImage(image, str(out))
    print(out)


if __name__ == "__main__":
    main()
