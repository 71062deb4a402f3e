"""``autoctv web``: the HTTP API against a real server process on 127.0.0.1 (tiny phantoms).

Upload → queue → child ``autoctv predict`` → downloads; refused uploads with the CLI's messages
and nothing left behind; size limit; cancel; delete; history across a kill -9; the token.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from predict_support import make_tiny_model, tiny_phantom
from web_support import WebServer, leftovers, needs_web, zip_folder

from AutoCTVLib.errors import InputError
from AutoCTVLib.io.ct_reader import read_ct
from AutoCTVLib.io.dicom_ct_write import write_ct_series
from AutoCTVLib.io.image_files import write_float_map, write_labelmap
from AutoCTVLib.io.rtstruct_read import rasterise_roi, read_rtstruct
from AutoCTVLib.metrics import dice
from AutoCTVWeb.edited import write_edited_outputs
from AutoCTVWeb.store import CaseStore, StructureRecord
from AutoCTVWeb.structures import write_structure_outputs

pytestmark = needs_web

SERVER_OPTIONS = ["--device", "cpu", "--threads", "1", "--max-upload-mb", "4"]
#: The API alone (faster start); the token test and the browser tests run the full server.
API_ONLY = [*SERVER_OPTIONS, "--no-viewer"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A zipped DICOM phantom, its NIfTI, a tiny model and the bad uploads."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("web_inputs")
    phantom = tiny_phantom()
    write_ct_series(phantom.ct, root / "series", uid_seed="web-a")
    files = {
        "root": root,
        "model": make_tiny_model(root / "model", phantom.ct),
        "zip": zip_folder(root / "series", root / "phantom_ct.zip", prefix="CT/"),
        "series": root / "series",
        "ctv": write_labelmap(phantom.ctv.array, phantom.ct.geometry, root / "ctv_ref.nii.gz"),
        "nifti": write_float_map(phantom.ct.array, phantom.ct.geometry, root / "ct.nii.gz"),
    }
    text = root / "bad" / "notes.txt"
    text.parent.mkdir()
    text.write_text("not a CT at all\n")
    files["text"] = text
    whole = files["zip"].read_bytes()
    files["truncated"] = root / "bad" / "truncated.zip"
    files["truncated"].write_bytes(whole[: len(whole) // 2])
    traversal = root / "bad" / "traversal.zip"
    with zipfile.ZipFile(traversal, "w") as bundle:
        bundle.writestr("CT/ok.txt", "fine")
        bundle.writestr("../../escaped.txt", "outside")
    files["traversal"] = traversal
    absolute = root / "bad" / "absolute.zip"
    with zipfile.ZipFile(absolute, "w") as bundle:
        bundle.writestr("/tmp/autoctv-absolute.txt", "outside")
    files["absolute"] = absolute
    image_2d = sitk.GetImageFromArray(np.zeros((32, 32), np.int16))
    files["2d"] = root / "bad" / "slice.nii.gz"
    sitk.WriteImage(image_2d, str(files["2d"]))
    two = root / "two"
    two.mkdir()
    write_ct_series(phantom.ct, two / "a", uid_seed="web-two-a")
    write_ct_series(phantom.ct, two / "b", uid_seed="web-two-b", series_number=2)
    files["two_dir"] = two
    files["two"] = zip_folder(two, root / "bad" / "two_series.zip")
    files["big"] = root / "bad" / "big.nii.gz"
    files["big"].write_bytes(np.random.default_rng(0).bytes(5 * 1024**2))
    return files


@pytest.fixture(scope="module")
def server(inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("web_server") / "data"
    running = WebServer(data, arguments=[*API_ONLY, "--model", str(inputs["model"])])
    running.wait_ready()
    yield running
    running.stop()


def read_rtstruct_bytes(answer: Any) -> Any:
    """An RTSTRUCT download read with the library's reader (through a temporary file)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rtstruct.dcm"
        path.write_bytes(answer.body)
        return read_rtstruct(path)


def cli_message(path: Path) -> str:
    """The message the CLI's reader gives for ``path`` (one line, as the CLI prints it)."""
    with pytest.raises(InputError) as caught:
        read_ct(path)
    return " ".join(str(caught.value).split())


def case_files(data: Path) -> list[str]:
    return sorted(str(p.relative_to(data)) for p in (data / "cases").rglob("*"))


def test_upload_contour_download_and_history(server: WebServer, inputs: dict[str, Path]):
    answer = server.upload(inputs["zip"], {"user": "dr-test"})
    assert answer.status == 201, answer.body
    case_id = answer.json()["id"]
    first = server.request("GET", f"/api/cases/{case_id}").json()
    assert first["status"] in ("queued", "running", "done")
    assert {"id", "status", "progress", "error"} <= set(first)
    case = server.wait_status(case_id, ["done", "failed", "cancelled"])
    assert case["status"] == "done", case
    assert case["progress"] == 1.0 and case["error"] == ""
    assert case["input_sha256"] == hashlib.sha256(inputs["zip"].read_bytes()).hexdigest()
    assert case["model_name"] == "ctv-tiny" and case["model_sha256"]
    assert case["submitted_by"] == "dr-test" and case["input_kind"] == "dicom"
    assert case["started_at"] >= case["created_at"] and case["finished_at"] >= case["started_at"]
    assert {"rtstruct", "segnrrd", "nifti", "report"} <= set(case["downloads"])
    listed = server.request("GET", "/api/cases").json()
    assert case_id in [item["id"] for item in listed]

    rtstruct = server.request("GET", f"/api/cases/{case_id}/rtstruct")
    assert rtstruct.status == 200 and rtstruct.body[128:132] == b"DICM"
    dataset = pydicom.dcmread(io.BytesIO(rtstruct.body))
    assert dataset.Modality == "RTSTRUCT"
    report = server.request("GET", f"/api/cases/{case_id}/report").json()
    assert report["model"]["name"] == "ctv-tiny"
    nifti = server.request("GET", f"/api/cases/{case_id}/nifti")
    assert nifti.status == 200 and nifti.body[:2] == b"\x1f\x8b"
    assert server.request("GET", f"/api/cases/{case_id}/segnrrd").body.startswith(b"NRRD")
    assert server.request("GET", f"/api/cases/{case_id}/nothing").status == 404

    # a saved edit: downloads give it, ?version=model still gives the model's contour
    case_dir = server.data_dir / "cases" / case_id
    loaded = read_ct(inputs["series"])
    edited = np.zeros(loaded.volume.array.shape, np.uint8)
    edited[8:16, 20:40, 20:40] = 1
    assert write_edited_outputs(case_dir, case["input_path"], "", edited) == [
        "nifti",
        "segnrrd",
        "rtstruct",
        "seg",
    ]
    assert server.request("GET", f"/api/cases/{case_id}").json()["edited"] is True
    # the edited contour as DICOM SEG: the edit's voxels, referencing the case's CT series
    seg_file = server.request("GET", f"/api/cases/{case_id}/seg")
    assert seg_file.status == 200 and seg_file.body[128:132] == b"DICM"
    seg = pydicom.dcmread(io.BytesIO(seg_file.body))
    assert seg.Modality == "SEG" and "edited" in seg.SeriesDescription
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == loaded.identity.series_instance_uid
    assert int(seg.NumberOfFrames) == 8  # slices 8..15 hold the edit
    frames = np.asarray(seg.pixel_array).reshape(8, *edited.shape[1:]) != 0
    assert frames.sum() == int((edited != 0).sum())
    model_seg = server.request("GET", f"/api/cases/{case_id}/seg?version=model")
    assert model_seg.status == 200 and model_seg.body != seg_file.body
    edited_rtstruct = read_rtstruct_bytes(server.request("GET", f"/api/cases/{case_id}/rtstruct"))
    mask = rasterise_roi(edited_rtstruct, "CTV", loaded.volume.geometry, loaded.identity)
    assert dice(mask, edited != 0) >= 0.95
    model = server.request("GET", f"/api/cases/{case_id}/rtstruct?version=model")
    assert model.body == rtstruct.body
    assert server.request("GET", f"/api/cases/{case_id}/rtstruct?version=x").status == 400
    assert server.request("GET", "/api/cases/" + "0" * 32).status == 404
    assert server.request("GET", "/api/cases/../../etc").status == 404


def test_completed_structures_are_listed_and_downloaded(server: WebServer, inputs: dict[str, Path]):
    """A structure completed in the viewer: files under the case, a history row, downloads."""
    case_id = server.upload(inputs["zip"]).json()["id"]
    case = server.wait_status(case_id, ["done", "failed", "cancelled"])
    assert case["status"] == "done" and case["structures"] == []
    assert server.request("GET", f"/api/cases/{case_id}/structures").json() == []
    case_dir = server.data_dir / "cases" / case_id
    loaded = read_ct(inputs["series"])
    drawn = np.zeros(loaded.volume.array.shape, np.uint8)
    drawn[[6, 12], 20:30, 24:36] = 1
    completed = drawn.copy()
    completed[6:13, 20:30, 24:36] = 1
    kinds = write_structure_outputs(
        case_dir,
        case["input_path"],
        case["series_uid"],
        1,
        "Structure 1",
        completed,
        drawn,
        method="interpolate",
        color_rgb=(0.3, 0.75, 1.0),
    )
    assert kinds == ["nifti", "segnrrd", "rtstruct", "drawn"]
    # the viewer records it in the server's SQLite history (WAL: a second connection is fine)
    store = CaseStore(server.data_dir)
    store.add_structure(
        StructureRecord(
            case_id=case_id,
            number=1,
            name="Structure 1",
            method="interpolate",
            drawn="2 axial (z) slices: 6, 12",
            drawn_slices=2,
            voxels=int(completed.sum()),
            volume_ml=1.0,
            seconds=0.5,
            model="",
            files=",".join(kinds),
            created_at=1.0,
        )
    )
    store.close()
    listed = server.request("GET", f"/api/cases/{case_id}/structures").json()
    assert [(s["number"], s["method"], s["downloads"]) for s in listed] == [
        (1, "interpolate", kinds)
    ]
    assert server.request("GET", f"/api/cases/{case_id}").json()["structures"] == listed
    base = f"/api/cases/{case_id}/structures/1"
    nifti = server.request("GET", base + "/nifti")
    assert nifti.status == 200 and "structure1" in nifti.headers["Content-Disposition"]
    path = inputs["root"] / "structure1.nii.gz"
    path.write_bytes(nifti.body)
    from AutoCTVLib.io.image_files import read_labelmap

    back = read_labelmap(path, reference=loaded.volume.geometry).array != 0
    assert np.array_equal(back, completed != 0)
    drawn_back = inputs["root"] / "drawn1.nii.gz"
    drawn_back.write_bytes(server.request("GET", base + "/drawn").body)
    assert np.array_equal(
        read_labelmap(drawn_back, reference=loaded.volume.geometry).array != 0, drawn != 0
    )
    assert server.request("GET", base + "/segnrrd").body.startswith(b"NRRD")
    structure_set = read_rtstruct_bytes(server.request("GET", base + "/rtstruct"))
    assert structure_set.roi_names == ["Structure 1"]
    mask = rasterise_roi(structure_set, "Structure 1", loaded.volume.geometry, loaded.identity)
    assert dice(mask, completed != 0) >= 0.9
    assert server.request("GET", base + "/other").status == 404
    assert server.request("GET", f"/api/cases/{case_id}/structures/2/nifti").status == 404
    assert server.request("GET", f"/api/cases/{case_id}/structures/x/nifti").status == 404
    # deleting the case deletes its structures' rows and files
    assert server.request("DELETE", f"/api/cases/{case_id}").status == 204
    assert not case_dir.exists()
    store = CaseStore(server.data_dir)
    try:
        assert store.structures(case_id) == []
    finally:
        store.close()


def test_nifti_upload_gets_dicom_outputs_too(server: WebServer, inputs: dict[str, Path]):
    answer = server.upload(inputs["nifti"])
    assert answer.status == 201, answer.body
    case = server.wait_status(answer.json()["id"], ["done", "failed", "cancelled"])
    assert case["status"] == "done", case
    assert case["input_kind"] == "nifti" and "rtstruct" in case["downloads"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("text", "cli"),
        ("2d", "cli"),
        ("truncated", "truncated.zip is not a readable zip archive"),
        ("traversal", "points outside its folder (../../escaped.txt); refused"),
        ("absolute", "absolute path (/tmp/autoctv-absolute.txt); refused"),
        ("two", "two_series.zip holds"),
    ],
)
def test_bad_uploads_give_the_cli_message_and_leave_nothing(
    server: WebServer, inputs: dict[str, Path], name: str, expected: str
):
    before_cases = server.request("GET", "/api/cases").json()
    before_files = case_files(server.data_dir)
    answer = server.upload(inputs[name])
    assert answer.status == 400, answer.body
    message = answer.json()["error"]
    if expected == "cli":
        assert message == cli_message(inputs[name])
    else:
        assert expected in message, message
    if name == "two":  # the CLI's own message, with the folder shown as the upload's name
        cli_text = cli_message(inputs["two_dir"]).replace(str(inputs["two_dir"]), "two_series.zip")
        assert message == cli_text
        assert "several CT series" in message or "series" in message
    assert "\n" not in message and str(server.data_dir) not in message
    assert server.request("GET", "/api/cases").json() == before_cases
    assert case_files(server.data_dir) == before_files
    assert leftovers(server.data_dir) == []
    assert not (server.data_dir.parent / "escaped.txt").exists()
    assert not Path("/tmp/autoctv-absolute.txt").exists()


def test_reference_contour_uploaded_with_the_ct(server: WebServer, inputs: dict[str, Path]):
    with_reference = server.upload_files({"file": inputs["zip"], "reference": inputs["ctv"]})
    assert with_reference.status == 201, with_reference.body
    case_id = with_reference.json()["id"]
    assert server.request("GET", f"/api/cases/{case_id}").json()["reference"] is True
    stored = server.data_dir / "cases" / case_id / "reference" / "ctv_reference.nii.gz"
    assert stored.is_file()
    server.request("DELETE", f"/api/cases/{case_id}")
    before = server.request("GET", "/api/cases").json()
    wrong_grid = server.upload_files({"file": inputs["zip"], "reference": inputs["2d"]})
    assert wrong_grid.status == 400
    assert wrong_grid.json()["error"].startswith("reference slice.nii.gz: ")
    assert server.request("GET", "/api/cases").json() == before
    assert leftovers(server.data_dir) == []


def test_two_series_upload_works_once_one_is_picked(server: WebServer, inputs: dict[str, Path]):
    uid = read_ct(inputs["two_dir"] / "b").identity.series_instance_uid
    answer = server.upload(inputs["two"], {"series_uid": uid})
    assert answer.status == 201, answer.body
    case = server.request("GET", f"/api/cases/{answer.json()['id']}").json()
    assert case["series_uid"] == uid
    server.request("DELETE", f"/api/cases/{case['id']}")


def test_uploads_over_the_limit_are_refused(server: WebServer, inputs: dict[str, Path]):
    answer = server.upload(inputs["big"])
    assert answer.status == 413, answer.body
    assert "larger than the limit of 4 MiB" in answer.json()["error"]
    assert leftovers(server.data_dir) == []


def test_queue_cancel_and_delete(server: WebServer, inputs: dict[str, Path]):
    ids = []
    for _ in range(3):
        answer = server.upload(inputs["nifti"], {"uncertainty": "4"})
        assert answer.status == 201, answer.body
        ids.append(answer.json()["id"])
    waiting = server.request("GET", f"/api/cases/{ids[2]}").json()
    assert waiting["status"] == "queued" and waiting["queue_position"] >= 2
    cancelled = server.request("POST", f"/api/cases/{ids[2]}/cancel").json()
    assert cancelled["status"] == "cancelled"
    server.wait_status(ids[0], ["running", "done"])
    deleted = server.request("DELETE", f"/api/cases/{ids[0]}")
    assert deleted.status == 204
    assert server.request("GET", f"/api/cases/{ids[0]}").status == 404
    assert not (server.data_dir / "cases" / ids[0]).exists()
    second = server.wait_status(ids[1], ["done", "failed", "cancelled"])
    assert second["status"] == "done", second
    assert server.request("GET", f"/api/cases/{ids[2]}").json()["status"] == "cancelled"
    assert server.request("GET", f"/api/cases/{ids[2]}/rtstruct").status == 409
    assert server.upload(inputs["nifti"], {"uncertainty": "x"}).status == 400


def test_history_and_files_survive_kill_9(inputs: dict[str, Path], tmp_path: Path):
    data = tmp_path / "data"
    options = [*API_ONLY, "--model", str(inputs["model"])]
    first = WebServer(data, arguments=options)
    first.wait_ready()
    done_id = first.upload(inputs["zip"]).json()["id"]
    first.wait_status(done_id, ["done"])
    running_id = first.upload(inputs["nifti"], {"uncertainty": "4"}).json()["id"]
    first.wait_status(running_id, ["running"])
    before = {case["id"]: case for case in first.request("GET", "/api/cases").json()}
    rtstruct = first.request("GET", f"/api/cases/{done_id}/rtstruct").body
    first.stop(kill=True)

    second = WebServer(data, arguments=options)
    try:
        second.wait_ready()
        after = {case["id"]: case for case in second.request("GET", "/api/cases").json()}
        assert set(after) == set(before)
        kept = ("input_sha256", "upload_name", "model_name", "created_at", "finished_at")
        assert all(after[done_id][key] == before[done_id][key] for key in kept)
        assert second.request("GET", f"/api/cases/{done_id}/rtstruct").body == rtstruct
        rerun = second.wait_status(running_id, ["done", "failed"])  # queued again at restart
        assert rerun["status"] == "done", rerun
    finally:
        second.stop()


def test_token_guards_every_api_request(inputs: dict[str, Path], tmp_path: Path):
    token = "correct-horse-battery-staple"
    running = WebServer(tmp_path / "data", arguments=SERVER_OPTIONS, token=token)
    try:
        running.wait_ready()
        answer = running.upload(inputs["text"], token="")
        assert answer.status == 401
        case_path = "/api/cases/" + "a" * 32
        for method, path in [
            ("GET", "/api/cases"),
            ("GET", case_path),
            ("GET", case_path + "/rtstruct"),
            ("DELETE", case_path),
            ("POST", case_path + "/cancel"),
            ("GET", case_path + "/structures"),
            ("GET", case_path + "/structures/1/nifti"),
            ("GET", "/api/health"),
        ]:
            for wrong in ("", "not-the-token-at-all"):
                assert running.request(method, path, token=wrong).status == 401, (method, path)
        assert running.request("GET", "/api/cases").status == 200
        page = running.request("GET", "/cases", token="")
        assert page.status == 200 and b"AutoCTV" in page.body  # the page asks for the token
    finally:
        running.stop()


def test_other_addresses_need_a_token(tmp_path: Path):
    refused = WebServer(tmp_path / "data", arguments=["--host", "0.0.0.0"])
    code = refused.process.wait(60)
    text = refused.log()
    refused.stop()
    assert code != 0
    assert text.strip().splitlines()[-1].startswith("autoctv: error: refusing to listen on 0.0.0.0")
