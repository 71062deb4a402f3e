"""Model files: safetensors + JSON card round trip, and every refusal case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from AutoCTVLib.cli.main import main as cli
from AutoCTVLib.errors import ModelFileError, OutputError
from AutoCTVLib.models import (
    SYNTHETIC_DISCLAIMER,
    CodeTriplet,
    LabelInfo,
    ModelCard,
    ctv_label,
    load_model,
    model_paths,
    read_card,
    save_model,
)
from AutoCTVLib.models.card import CardError
from AutoCTVLib.nn import NetworkConfig, build_network, count_parameters, thesis_config

CONFIG = thesis_config(
    channels=(4, 8, 8), recurrent_steps=2, dropout_p=0.1, dropout_where="decoder"
)


def make_card(config: NetworkConfig = CONFIG, **changes) -> ModelCard:
    card = ModelCard(
        name="ctv-tiny",
        version="0.1.0",
        architecture=config.to_dict(),
        preprocessing={"spacing_xyz_mm": [2.0, 2.0, 3.0], "hu_window": [-1000.0, 1600.0]},
        labels=(ctv_label(),),
        training_data={"cases": 4, "source": "synthetic pelvic phantoms"},
        metrics={"dice_mean": 0.5},
        intended_use="tests",
        disclaimer=SYNTHETIC_DISCLAIMER,
    )
    return card.replace(**changes) if changes else card


def trained_like(config: NetworkConfig = CONFIG, seed: int = 0) -> torch.nn.Module:
    """A network whose BatchNorm statistics are not the defaults (one forward in train mode)."""
    network = build_network(config, seed=seed)
    with torch.no_grad():
        network(torch.rand(2, config.in_channels, 8, 8, 8))
    return network.eval()


@pytest.fixture
def saved(tmp_path: Path) -> tuple[torch.nn.Module, ModelCard, Path]:
    network = trained_like()
    card = save_model(network, make_card(), tmp_path / "ctv-tiny")
    return network, card, tmp_path / "ctv-tiny"


def test_round_trip_gives_identical_outputs(saved) -> None:
    network, card, stem = saved
    assert sorted(p.name for p in stem.parent.iterdir()) == [
        "ctv-tiny.json",
        "ctv-tiny.safetensors",
    ]
    x = torch.rand(1, 1, 7, 9, 6)
    for path in (stem.with_suffix(".json"), stem.with_suffix(".safetensors"), stem):
        loaded, loaded_card = load_model(path)
        assert not loaded.training
        assert all(p.device.type == "cpu" for p in loaded.parameters())
        with torch.no_grad():
            assert torch.equal(loaded(x), network(x))
        assert loaded_card == card
        assert loaded.config == CONFIG


def test_card_records_integrity_fields(saved) -> None:
    network, card, stem = saved
    data = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
    assert data["format_version"] == 1
    assert data["weights_file"] == "ctv-tiny.safetensors"
    assert len(data["weights_sha256"]) == 64
    assert data["parameter_count"] == count_parameters(network)
    assert data["tensors"]["network.head.weight"] == {"dtype": "float32", "shape": [1, 4, 1, 1, 1]}
    assert data["disclaimer"] == "trained on synthetic phantoms only — not for clinical use"
    assert data["labels"][0]["type"] == {
        "value": "228792002",
        "scheme": "SCT",
        "meaning": "Clinical Target Volume",
    }
    assert data["created_utc"].endswith("Z") and data["software"]["torch"] == torch.__version__
    assert read_card(stem) == card


def test_tampered_weights_are_refused(saved) -> None:
    _, _, stem = saved
    weights = stem.with_suffix(".safetensors")
    content = bytearray(weights.read_bytes())
    content[-5] ^= 0x01
    weights.write_bytes(bytes(content))
    with pytest.raises(ModelFileError, match="do not match their card"):
        load_model(stem)


def test_unknown_format_version_is_refused(saved) -> None:
    _, _, stem = saved
    card_path = stem.with_suffix(".json")
    data = json.loads(card_path.read_text(encoding="utf-8"))
    data["format_version"] = 7
    card_path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelFileError, match=r"format version 7 .*supported: 1"):
        load_model(stem)
    del data["format_version"]
    card_path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelFileError, match="no format_version"):
        load_model(stem)


def test_card_architecture_not_matching_the_weights_is_refused(saved) -> None:
    _, _, stem = saved
    card_path = stem.with_suffix(".json")
    data = json.loads(card_path.read_text(encoding="utf-8"))
    data["architecture"]["channels"] = [4, 8, 16]  # bridge wider than the stored weights
    data["architecture"]["se"] = False  # and no SE: its tensors become unexpected
    card_path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelFileError) as error:
        load_model(stem)
    message = str(error.value)
    assert "do not fit the architecture" in message
    assert "unexpected tensors: network.bridge.se.excitation.0.bias" in message
    assert "shape mismatches" in message and "network.bridge.conv1.conv.weight" in message


def test_missing_tensors_are_listed(tmp_path: Path) -> None:
    plain = NetworkConfig(channels=(4, 8))
    save_model(trained_like(plain), make_card(plain), tmp_path / "m")
    card_path = tmp_path / "m.json"
    data = json.loads(card_path.read_text(encoding="utf-8"))
    data["architecture"]["residual"] = True  # expects projection tensors that the file lacks
    card_path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelFileError, match=r"missing tensors: .*projection\.weight"):
        load_model(card_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(architecture={"channels": [4], "depth": 2}), "bad architecture"),
        (lambda d: d.pop("labels"), "lacks labels"),
        (lambda d: d.update(colour="red"), "unknown field"),
        (lambda d: d["preprocessing"].update(hu_window=[500, 100]), "hu_window"),
        (lambda d: d["labels"][0].update(color_rgb=[300, 0, 0]), "color_rgb"),
        (lambda d: d.update(weights_sha256=""), "records no weights_sha256"),
        (
            lambda d: d.update(labels=[d["labels"][0], dict(d["labels"][0], channel=1)]),
            "labels but",
        ),
    ],
)
def test_malformed_cards_are_refused(saved, edit, message: str) -> None:
    _, _, stem = saved
    card_path = stem.with_suffix(".json")
    data = json.loads(card_path.read_text(encoding="utf-8"))
    edit(data)
    card_path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelFileError, match=message):
        load_model(stem)


def test_missing_or_unreadable_files_are_refused(saved, tmp_path: Path) -> None:
    _, _, stem = saved
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "absent.json")
    stem.with_suffix(".safetensors").unlink()
    with pytest.raises(ModelFileError, match=r"weights .*not found"):
        load_model(stem)
    stem.with_suffix(".json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelFileError, match="not readable JSON"):
        load_model(stem)


def test_weights_that_are_not_safetensors_are_refused(saved) -> None:
    _, _, stem = saved
    weights = stem.with_suffix(".safetensors")
    weights.write_bytes(b"\x80\x04 pickled? no thanks")
    card_path = stem.with_suffix(".json")
    data = json.loads(card_path.read_text(encoding="utf-8"))
    import hashlib

    data["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    card_path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelFileError, match="not a safetensors file"):
        load_model(stem)


def test_save_refuses_a_card_that_does_not_describe_the_model(tmp_path: Path) -> None:
    network = trained_like()
    other = CONFIG.replace(se=False)
    with pytest.raises(ValueError, match="architecture differs"):
        save_model(network, make_card(other), tmp_path / "x")
    two_labels = (ctv_label(), ctv_label(channel=1))
    with pytest.raises(ValueError, match="2 labels for 1 output"):
        save_model(network, make_card(labels=two_labels), tmp_path / "x")
    with pytest.raises(ValueError, match="input channels"):
        save_model(network, make_card(input_channels=("ct", "mask")), tmp_path / "x")
    with pytest.raises(ValueError, match="NetworkConfig"):
        save_model(torch.nn.Linear(2, 2), make_card(), tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_save_does_not_overwrite_unless_allowed(saved) -> None:
    network, _, stem = saved
    before = stem.with_suffix(".json").read_bytes()
    with pytest.raises(OutputError, match="already exists"):
        save_model(network, make_card(version="0.2.0"), stem, overwrite=False)
    assert stem.with_suffix(".json").read_bytes() == before
    assert sorted(p.name for p in stem.parent.iterdir()) == [
        "ctv-tiny.json",
        "ctv-tiny.safetensors",
    ]


def test_card_validation() -> None:
    with pytest.raises(CardError, match="name"):
        make_card(name=" ")
    with pytest.raises(CardError, match="path separators"):
        make_card(name="a/b")
    with pytest.raises(CardError, match="spacing_xyz_mm"):
        make_card(preprocessing={"spacing_xyz_mm": [1, 0, 1], "hu_window": [0, 1]})
    with pytest.raises(CardError, match=r"channels must be 0\.\.0"):
        make_card(labels=(ctv_label(channel=1),))
    with pytest.raises(CardError, match="intensity_scaling"):
        make_card(intensity_scaling="zscore")
    with pytest.raises(CardError, match="meaning"):
        CodeTriplet("1", "SCT", "")
    with pytest.raises(CardError, match="color_rgb"):
        LabelInfo("CTV", (1, 2), ctv_label().category, ctv_label().type)
    assert ModelCard.from_dict(json.loads(json.dumps(make_card().to_dict()))) == make_card()


def test_model_paths() -> None:
    assert model_paths("a/b.json") == (Path("a/b.safetensors"), Path("a/b.json"))
    assert model_paths("a/b.safetensors") == (Path("a/b.safetensors"), Path("a/b.json"))
    assert model_paths("a/b.v1") == (Path("a/b.v1.safetensors"), Path("a/b.v1.json"))


def test_cli_model_info(saved, capsys: pytest.CaptureFixture[str]) -> None:
    network, _, stem = saved
    assert cli(["model", "info", str(stem.with_suffix(".json"))]) == 0
    out = capsys.readouterr().out
    for text in (
        "ctv-tiny 0.1.0",
        "residual",
        "SE (ratio 4)",
        "recurrent refinement K=2",
        f"{count_parameters(network):,}",
        "spacing_xyz_mm",
        "CTV",
        "228792002",
        "dice_mean",
        "not for clinical use",
        "OK",
    ):
        assert text in out
    assert cli(["model", "info", "--json", str(stem)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "ctv-tiny" and data["weights_check"]["ok"] is True
    content = bytearray(stem.with_suffix(".safetensors").read_bytes())
    content[-1] ^= 0xFF
    stem.with_suffix(".safetensors").write_bytes(bytes(content))
    assert cli(["model", "info", str(stem)]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_cli_model_info_missing_file_is_one_line(tmp_path: Path, capsys) -> None:
    assert cli(["model", "info", str(tmp_path / "none.json")]) == ModelFileError.exit_code
    err = capsys.readouterr().err
    assert err.startswith("autoctv: error: model card") and err.count("\n") == 1
