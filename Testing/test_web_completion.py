"""The viewer's sparse-slice completion off the event loop: learned (child process), interpolate.

:class:`AutoCTVWeb.viewer_completion.CompletionRun` is what "Complete" runs: the bundled
completion network in a child ``autoctv complete`` (the Slicer module's ``CommandJob``), or
interpolation in a worker thread. Checks: the drawn slices are kept and the gap between them is
filled; progress arrives; the event loop keeps running meanwhile; Cancel ends the child and
gives no result; a single drawn slice is refused with the library's message.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from web_support import needs_web

from AutoCTVLib.errors import AutoCTVError
from AutoCTVLib.metrics import dice
from AutoCTVLib.phantom import PhantomConfig, generate_phantom

pytestmark = needs_web


@pytest.fixture(scope="module")
def drawing():
    """A phantom CT, its CTV, and the CTV drawn on two axial slices four apart."""
    phantom = generate_phantom(PhantomConfig(seed=3, size_xyz=(64, 64, 24)))
    ctv = (phantom.ctv.array != 0).astype(np.uint8)
    filled = np.flatnonzero(ctv.reshape(ctv.shape[0], -1).any(axis=1))
    k0 = int(filled[len(filled) // 2 - 2])
    drawn = np.zeros_like(ctv)
    drawn[[k0, k0 + 4]] = ctv[[k0, k0 + 4]]
    return phantom.ct, ctv, drawn, k0


async def _run_with_ticker(run) -> tuple[object, float, float]:
    """Run the completion while a 20 ms ticker runs; (result, largest tick gap s, total s)."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    started = time.monotonic()
    task = asyncio.ensure_future(ticker())
    try:
        result = await run.run()
    finally:
        stop.set()
        await task
    return result, max(gaps, default=0.0), time.monotonic() - started


@pytest.mark.parametrize("method", ["learned", "interpolate"])
def test_completion_keeps_the_page_responsive(drawing, method: str):
    from AutoCTVWeb.viewer_completion import CompletionRun

    ct, ctv, drawn, k0 = drawing
    progress: list[float] = []
    run = CompletionRun(
        ct, drawn, method, device="cpu", on_progress=lambda f, _m: progress.append(f)
    )
    completed, largest_gap, total = asyncio.run(_run_with_ticker(run))
    assert completed is not None
    assert completed.method == method and completed.drawn_slices == 2
    assert completed.drawn.startswith("2 axial (z) slices")
    mask = completed.mask_zyx
    assert mask.shape == ctv.shape and mask.dtype == np.uint8
    for k in (k0, k0 + 4):
        assert np.array_equal(mask[k], drawn[k])  # drawn slices exactly as drawn
    between = slice(k0 + 1, k0 + 4)
    assert mask[between].sum() > 0
    assert dice(mask[between] != 0, ctv[between] != 0) > 0.6
    assert not mask[:k0].any() and not mask[k0 + 5 :].any()  # nothing beyond the drawing
    if method == "learned":
        assert "completion_phantom" in completed.model
        assert progress, "no progress line from the child"
    # the event loop kept running: no tick waited for the whole completion (an interpolation
    # may finish within a few ticks, so gaps up to 0.1 s are what the 20 ms ticker allows)
    assert largest_gap < max(0.5 * total, 0.1), (largest_gap, total)


def test_cancel_ends_the_child_without_a_result(drawing):
    from AutoCTVWeb.viewer_completion import CompletionRun

    ct, _ctv, drawn, _k0 = drawing
    run = CompletionRun(ct, drawn, "learned", device="cpu")

    async def cancel_soon():
        task = asyncio.ensure_future(run.run())
        while run._job is None or run._job.pid is None:
            await asyncio.sleep(0.05)
        run.cancel()
        return await asyncio.wait_for(task, 30)

    assert asyncio.run(cancel_soon()) is None
    assert run._job.cancelled
    assert run._job.work_dir is not None and not run._job.work_dir.exists()


def test_a_single_drawn_slice_is_refused(drawing):
    from AutoCTVWeb.viewer_completion import CompletionRun

    ct, _ctv, drawn, k0 = drawing
    single = np.zeros_like(drawn)
    single[k0] = drawn[k0]
    with pytest.raises(AutoCTVError):
        asyncio.run(CompletionRun(ct, single, "interpolate").run())
