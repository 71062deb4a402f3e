"""Speed of the browser app (``autoctv web``) on the CPU, measured in headless Chromium.

Input: a seeded phantom written as a DICOM series (default 512×512×100 voxels at 0.98×0.98×3
mm, the demo's size; ``--quick``: 160×160×48 at 3.1×3.1×6 mm), zipped as a user uploads it.

Measured (each as the user meets it):

* **start → answer**: from starting ``autoctv web`` (a fresh process, trame-slicer viewer
  included) until ``GET /api/health`` answers; ``--runs`` starts, median and worst.
* **page usable**: from ``page.goto("/")`` until the viewer's controls are on screen and
  answer (the case list's refresh button is visible and enabled); median of ``--runs`` loads.
* **slice change render**: in the axial-only layout with the case open, time from a click on
  "+1" / "−1" until the view's image element shows a new frame from the server; 50 changes,
  median and 90th percentile.
* **contouring, web vs CLI**: wall time from the upload's POST until the case is ``done``
  (validation, queue, child ``autoctv predict``, every output format) against
  ``autoctv predict`` on the unpacked series with the same formats in a fresh process;
  ``--runs`` each, medians, ratio.

With ``--screenshots DIR`` it also writes a PNG of each view of the open case (quad layout,
axial, coronal, sagittal, 3D) with the uncertainty heat map (MC-dropout, ``--mc`` samples).

Run:   .venv/bin/python benchmarks/web_app.py [--runs 3] [--screenshots docs/web]
Quick: .venv/bin/python benchmarks/web_app.py --quick
Writes benchmarks/results/web_app.{json,md} (``--quick``: web_app_quick.*).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "Testing"))

from browser_support import chromium_page  # noqa: E402
from common import machine_description, median, write_results  # noqa: E402
from web_support import WebServer, zip_folder  # noqa: E402

FORMATS = "nifti,seg.nrrd,rtstruct,dicom-seg"
SLICE_CHANGES = 50

_SLICE_CHANGE_JS = """async ([count, index]) => {
    const views = Array.from(document.querySelectorAll('.remote-controlled-area'));
    const view = views[index];
    const image = () => view.querySelector('img');
    const others = views.filter(other => other !== view);
    const sources = () => others.map(other => {
        const i = other.querySelector('img'); return i ? i.src : ''; });
    const othersBefore = sources();
    const buttons = [document.querySelector('#next'), document.querySelector('#prev')];
    const times = [];
    for (let i = 0; i < count; i++) {
        const before = image() ? image().src : '';
        const start = performance.now();
        buttons[i % 2].click();
        await new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error('no new frame in 5 s')), 5000);
            const check = () => {
                if (image() && image().src !== before) {
                    clearTimeout(timer); observer.disconnect(); resolve();
                }
            };
            const observer = new MutationObserver(check);
            observer.observe(view, {attributes: true, childList: true, subtree: true});
        });
        times.push(performance.now() - start);
        await new Promise(resolve => setTimeout(resolve, 150));
    }
    await new Promise(resolve => setTimeout(resolve, 1000));
    const othersAfter = sources();
    const otherFrames = othersAfter.filter((source, i) => source !== othersBefore[i]).length;
    return {times, otherFrames};
}"""


def make_input(work: Path, quick: bool) -> tuple[Path, Path]:
    """The phantom's DICOM series folder and its zip."""
    from AutoCTVLib.io.dicom_ct_write import write_ct_series
    from AutoCTVLib.phantom import PhantomConfig, generate_phantom

    if quick:
        config = PhantomConfig(seed=5, size_xyz=(160, 160, 48), spacing_xyz_mm=(3.1, 3.1, 6.0))
    else:
        config = PhantomConfig(seed=5)
    phantom = generate_phantom(config)
    write_ct_series(phantom.ct, work / "series", uid_seed="web-benchmark")
    return work / "series", zip_folder(work / "series", work / "pelvis_ct.zip", prefix="CT/")


def time_start(work: Path, runs: int) -> list[float]:
    times = []
    for run in range(runs):
        server = WebServer(work / f"start-{run}" / "data", arguments=["--device", "cpu"])
        times.append(server.wait_ready(timeout_s=120))
        server.stop()
    return times


def time_cli(series: Path, work: Path, runs: int) -> list[float]:
    times = []
    for run in range(runs):
        command = [sys.executable, "-m", "AutoCTVLib.cli.main", "predict", str(series)]
        command += ["-o", str(work / f"cli-{run}"), "--format", FORMATS, "--device", "cpu"]
        command += ["--progress", "none"]
        start = time.monotonic()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.monotonic() - start)
    return times


def time_web(server: WebServer, archive: Path, runs: int, mc: int = 0) -> tuple[list[float], str]:
    times, case_id = [], ""
    for _ in range(runs):
        start = time.monotonic()
        answer = server.upload(archive, {"uncertainty": str(mc)})
        assert answer.status == 201, answer.body
        case_id = answer.json()["id"]
        case = server.wait_status(case_id, ["done", "failed"], timeout_s=900)
        assert case["status"] == "done", case
        times.append(time.monotonic() - start)
    return times, case_id


def open_case(
    page: object, server: WebServer, case_id: str, layout: int, heat_map: bool = False
) -> None:
    """Open a case in the viewer and wait until it is shown (its review list, with a heat map)."""
    page.goto(server.base + "/")  # type: ignore[attr-defined]
    page.click(f"#layout-{layout}")  # type: ignore[attr-defined]
    page.click("#refresh-cases")  # type: ignore[attr-defined]
    page.click(f"#case-{case_id}")  # type: ignore[attr-defined]
    page.locator(f"#case-{case_id}.v-list-item--active").wait_for(timeout=180_000)  # type: ignore[attr-defined]
    if heat_map:
        page.locator("#review-list .v-list-item").first.wait_for(timeout=180_000)  # type: ignore[attr-defined]
    page.wait_for_function(  # type: ignore[attr-defined]
        "document.querySelector('#slice-label').textContent.includes(' / ')"
        " && !document.querySelector('#slice-label').textContent.includes(' / 0')"
    )
    time.sleep(3)


def time_page_load(page: object, server: WebServer, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.monotonic()
        page.goto(server.base + "/")  # type: ignore[attr-defined]
        page.locator("#refresh-cases").wait_for(state="visible")  # type: ignore[attr-defined]
        page.wait_for_function(  # type: ignore[attr-defined]
            "!document.querySelector('#refresh-cases').disabled"
        )
        times.append(time.monotonic() - start)
    return times


def screenshots(page: object, server: WebServer, case_id: str, folder: Path) -> list[str]:
    """PNGs of the quad layout and of each single view (the 1400×900 page)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    open_case(page, server, case_id, layout=0, heat_map=True)
    page.screenshot(path=str(folder / "web_quad.png"))  # type: ignore[attr-defined]
    written.append("web_quad.png")
    views = page.locator(".remote-controlled-area")  # type: ignore[attr-defined]
    # quad layout order: coronal, sagittal (left column), 3D, axial (right column)
    for index, name in enumerate(("coronal", "sagittal", "3d", "axial")):
        views.nth(index).screenshot(path=str(folder / f"web_{name}.png"))
        written.append(f"web_{name}.png")
    for name in written:  # small files: 128-colour palette
        from PIL import Image

        path = folder / name
        Image.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)
    return written


def take_screenshots_only(work: Path, archive: Path, args: argparse.Namespace) -> int:
    server = WebServer(work / "server" / "data", arguments=["--device", "cpu"])
    server.wait_ready(timeout_s=120)
    try:
        _, case_id = time_web(server, archive, 1, mc=args.mc)
        with chromium_page(work / "profile", work / "downloads") as page:
            written = screenshots(page, server, case_id, args.screenshots or Path("docs/web"))
    finally:
        server.stop()
    print("wrote", ", ".join(written))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--mc", type=int, default=10, help="MC samples of the screenshot case")
    parser.add_argument("--screenshots", type=Path, help="write view PNGs into this folder")
    parser.add_argument(
        "--screenshots-only", action="store_true", help="only the PNGs (no timings, no results)"
    )
    args = parser.parse_args()
    stem = "web_app_quick" if args.quick else "web_app"
    with tempfile.TemporaryDirectory(prefix="autoctv-web-bench-") as temporary:
        work = Path(temporary)
        series, archive = make_input(work, args.quick)
        if args.screenshots_only:
            return take_screenshots_only(work, archive, args)
        start_s = time_start(work, args.runs)
        cli_s = time_cli(series, work, args.runs)
        server = WebServer(work / "server" / "data", arguments=["--device", "cpu"])
        server.wait_ready(timeout_s=120)
        try:
            web_s, case_id = time_web(server, archive, args.runs)
            with chromium_page(work / "profile", work / "downloads") as page:
                load_s = time_page_load(page, server, args.runs)
                open_case(page, server, case_id, layout=1)
                axial = page.evaluate(_SLICE_CHANGE_JS, [SLICE_CHANGES, 0])
                render_ms = axial["times"]
                # the default layout: the axial view is the 4th; the others must get no frame
                open_case(page, server, case_id, layout=0)
                quad = page.evaluate(_SLICE_CHANGE_JS, [SLICE_CHANGES, 3])
                quad_ms = quad["times"]
                written: list[str] = []
                if args.screenshots:
                    _, mc_case = time_web(server, archive, 1, mc=args.mc)
                    written = screenshots(page, server, mc_case, args.screenshots)
        finally:
            server.stop()
    ordered = sorted(render_ms)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    quad_p90 = sorted(quad_ms)[int(0.9 * (len(quad_ms) - 1))]
    ratio = median(web_s) / median(cli_s)
    rows = [
        [
            "`autoctv web` start → API answers",
            f"{median(start_s):.1f} s (worst {max(start_s):.1f})",
            "≤ 10 s",
        ],
        ["page usable after load", f"{median(load_s):.2f} s (worst {max(load_s):.2f})", "≤ 3 s"],
        [
            f"slice change render, median of {len(render_ms)}",
            f"{statistics.median(render_ms):.0f} ms (p90 {p90:.0f})",
            "≤ 150 ms",
        ],
        [
            f"same, quad layout (the default), median of {len(quad_ms)}",
            f"{statistics.median(quad_ms):.0f} ms (p90 {quad_p90:.0f}); "
            f"{quad['otherFrames']} of the 3 other views got a new frame",
            "≤ 150 ms",
        ],
        ["contouring through the web (upload → done)", f"{median(web_s):.1f} s", ""],
        ["`autoctv predict`, same CT and formats", f"{median(cli_s):.1f} s", ""],
        ["web / CLI", f"{ratio:.2f}×", "≤ 1.5×"],
    ]
    size = "160×160×48 at 3.1×3.1×6 mm" if args.quick else "512×512×100 at 0.98×0.98×3 mm"
    notes = [
        f"Input: phantom (seed 5) as a zipped DICOM series, {size}; bundled model, CPU, "
        f"formats {FORMATS}. {args.runs} runs of each timing except the {SLICE_CHANGES} slice "
        "changes. Browser: Debian's chromium, headless, driven by Playwright.",
        "Slice change: from the click until the axial view's image element holds a new frame "
        "streamed from the server (server render + encode + transfer + decode). In the quad "
        "layout the same is timed on its axial view, and the coronal, sagittal and 3D views' "
        "frames are compared before and 1 s after the 50 changes.",
    ]
    write_results(
        ROOT / "benchmarks" / "results" / stem,
        "AutoCTV web app speed",
        ["measure", "result", "target"],
        rows,
        {
            "start_to_answer_s": start_s,
            "page_usable_s": load_s,
            "slice_change_ms": render_ms,
            "slice_change_quad_ms": quad_ms,
            "slice_change_quad_other_views_with_new_frames": quad["otherFrames"],
            "web_contouring_s": web_s,
            "cli_contouring_s": cli_s,
            "web_over_cli": ratio,
            "input": size,
            "screenshots": written,
        },
        notes=notes,
        machine=machine_description(),
    )
    print((ROOT / "benchmarks" / "results" / f"{stem}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
