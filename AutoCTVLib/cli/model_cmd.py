"""``autoctv model info FILE``: show a model card and check the weights against it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from AutoCTVLib.errors import ModelFileError

ORDER = 60


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "model",
        help="inspect model files (weights + model card)",
        description="Inspect AutoCTV model files: <name>.safetensors plus <name>.json.",
    )
    actions = parser.add_subparsers(dest="model_action", metavar="ACTION")
    info = actions.add_parser(
        "info",
        help="print a model card and verify the weights' checksum",
        description=(
            "Print the model card (name, version, architecture, parameters, preprocessing, "
            "labels, metrics, disclaimer) and check that the weights file matches it. "
            "Exit status 1 when the weights do not match."
        ),
    )
    info.add_argument(
        "file", type=Path, help="the .json card, the .safetensors weights or their stem"
    )
    info.add_argument("--json", action="store_true", help="print the card as JSON")
    info.set_defaults(handler=run_info)

    def show_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(handler=show_help)


def _weights_check(path: Path, card: Any) -> tuple[bool, str]:
    from AutoCTVLib.models.model_file import verify_weights

    try:
        verify_weights(path, card)
    except ModelFileError as error:
        return False, str(error)
    return True, "weights SHA-256 matches the card"


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def run_info(args: argparse.Namespace) -> int:
    from AutoCTVLib.models.model_file import read_card
    from AutoCTVLib.nn.config import NetworkConfig
    from AutoCTVLib.nn.summary import describe_config

    card = read_card(args.file)
    ok, message = _weights_check(args.file, card)
    if args.json:
        data = card.to_dict()
        data["weights_check"] = {"ok": ok, "message": message}
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0 if ok else 1
    try:
        if card.is_cascade:
            locator, segmenter = card.stages
            first = describe_config(NetworkConfig.from_dict(locator["architecture"]))
            architecture = (
                f"cascade: locator {first}"
                f" at {locator['preprocessing']['spacing_xyz_mm']} mm; segmenter "
                f"{describe_config(NetworkConfig.from_dict(segmenter['architecture']))} at "
                f"{segmenter['preprocessing']['spacing_xyz_mm']} mm on "
                f"{', '.join(segmenter['input_channels'])}, crop margin "
                f"{segmenter['crop']['margin_mm']:g} mm"
            )
        else:
            architecture = describe_config(NetworkConfig.from_dict(card.architecture))
    except (ValueError, TypeError) as error:
        architecture = f"INVALID ({error})"
    lines = [
        f"Model        {card.name} {card.version}  (card format {card.format_version})",
        f"Created      {card.created_utc or 'unknown'}",
        f"Architecture {architecture}",
        f"Parameters   {card.parameter_count:,}",
        f"Inputs       {', '.join(card.input_channels)} ({card.intensity_scaling})",
        "Preprocessing",
    ]
    lines += [f"  {key:<22} {_format_value(value)}" for key, value in card.preprocessing.items()]
    lines.append("Labels")
    for label in sorted(card.labels, key=lambda item: item.channel):
        lines.append(
            f"  [{label.channel}] {label.name}  RGB {label.color_rgb}  "
            f"type {label.type.scheme} {label.type.value} '{label.type.meaning}', "
            f"category {label.category.scheme} {label.category.value} '{label.category.meaning}'"
        )
    lines.append("Metrics" + ("" if card.metrics else "      none recorded"))
    lines += [f"  {key:<22} {_format_value(value)}" for key, value in card.metrics.items()]
    if card.inference:
        lines.append("Inference")
        lines += [f"  {key:<22} {_format_value(value)}" for key, value in card.inference.items()]
    lines.append(f"Training     {_format_value(card.training_data) or 'not described'}")
    lines.append(f"Intended use {card.intended_use or 'not stated'}")
    lines.append(f"Disclaimer   {card.disclaimer or 'none'}")
    lines.append(f"Weights      {card.weights_file or '?'}  sha256 {card.weights_sha256 or '?'}")
    lines.append(f"Check        {'OK' if ok else 'FAILED'}: {message}")
    print("\n".join(lines))
    return 0 if ok else 1
