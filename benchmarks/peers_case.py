"""One inference case of the peer benchmark, in a fresh process (``benchmarks/peers.py`` runs it).

Loads one method's trained model, predicts the CTV of one CT file on that CT's own grid and
writes the label (uint8 NIfTI) plus a JSON record of the times: ``load_s`` (imports excluded,
model file → ready), ``predict_s`` (CT file → label array on the CT's grid in memory; reading
the CT and all of the method's own pre- and post-processing included). The parent measures the
process's wall time, CPU time and peak RSS with ``os.wait4``.

Methods: ``autoctv`` (``Predictor.from_file`` on the cascade's model file, default
post-processing), ``monai`` and ``monai_bf16`` (``peers_monai``; both predict in float32),
``nnunet`` (``peers_nnunet``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers_monai import MONAI_PRECISION

METHODS = ("autoctv", *MONAI_PRECISION, "nnunet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", choices=METHODS, required=True)
    parser.add_argument("--model", type=Path, required=True, help="model file or folder")
    parser.add_argument("--ct", type=Path, required=True, help="CT file (NIfTI)")
    parser.add_argument("--label", type=Path, required=True, help="label file to write")
    parser.add_argument("--record", type=Path, required=True, help="JSON times to write")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mirroring", action="store_true", help="nnU-Net's mirroring TTA")
    parser.add_argument("--nnunet-step", type=float, default=0.5, help="nnU-Net's tile step")
    args = parser.parse_args()

    import torch

    from AutoCTVLib.io.ct_reader import read_ct
    from AutoCTVLib.io.image_files import write_labelmap

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.method == "autoctv":
        from AutoCTVLib.predict import Predictor

        predictor = Predictor.from_file(args.model, device=args.device, threads=args.threads)
        loaded = time.perf_counter()
        ct = read_ct(args.ct).volume
        label = (predictor.predict(ct).label.array > 0).astype(np.uint8)
    elif args.method in MONAI_PRECISION:
        import peers_monai

        model = peers_monai.load_model(args.model, args.device)
        loaded = time.perf_counter()
        label = peers_monai.predict_case(model, args.ct, args.device)
    else:
        import peers_nnunet

        predictor = peers_nnunet.load_predictor(
            args.model, args.device, args.mirroring, args.nnunet_step
        )
        loaded = time.perf_counter()
        label = peers_nnunet.predict_case(predictor, args.ct)
    finished = time.perf_counter()
    geometry = read_ct(args.ct).volume.geometry
    if label.shape != geometry.shape_zyx:
        raise SystemExit(f"{args.method}: label shape {label.shape} != CT {geometry.shape_zyx}")
    write_labelmap(label, geometry, args.label, overwrite=True)
    record = {
        "method": args.method,
        "load_s": loaded - started,
        "predict_s": finished - loaded,
        "threads": args.threads,
        "device": args.device,
    }
    args.record.write_text(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
