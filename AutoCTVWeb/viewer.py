"""The viewer page on trame-slicer: Slicer's own slice and 3D views of a case in the browser.

One MRML scene (trame-slicer's ``SlicerApp``) per server; the views are Slicer's displayable
managers rendered on the server and streamed to the page (trame's remote-controlled areas).
The CT, the CTV segmentation and the uncertainty heat map come from the Slicer module's MRML
glue (:mod:`.viewer_scene`). Controls: case, layout, window presets, axial slice with step and
a play/pause auto-play every 250 ms, heat-map opacity, the review list (a click jumps there),
per-slice Dice of the current (edited) CTV against the model's, and paint / erase / scissors
with undo through trame-slicer's segment editor.

Layouts include "Side by side" (:mod:`.viewer_compare`); "New structure" / "Complete" run
sparse-slice completion (:mod:`.viewer_completion`: the completion network in a child process
or interpolation in a worker thread, never on the event loop) and store the result with the
case (:mod:`.structures`). A slice change moves only the axial views, and the slice views
keep no slice-plane models, so only the axial views re-render.

One viewer serves every connected page (one scene, one state; :mod:`.viewer_sharing` counts
the pages): opening another case never silently discards unsaved work, and the buttons that
write carry the case they were pressed for.

With an access token set, the websocket itself is checked on connect (:mod:`.viewer_gate`),
so every page connected here has the token and ``autoctv web`` gives the viewer no token of
its own (``CaseViewer``'s in-page token field and lock only apply when one is passed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from .auth import authorized
from .store import CaseStore
from .viewer_completion import WEB_COMPLETION_METHODS

logger = logging.getLogger(__name__)

AUTOPLAY_PERIOD_S = 0.25
VIEW_FPS = 60.0
#: JPEG quality of every streamed frame. trame-rca's default sends a quality-50 frame and then,
#: 5 frame periods later, renders the view again for a quality-90 frame; that second render
#: runs on the server's event loop and held back the first frame's delivery (and competed for
#: the CPU with the next slice change). One render per change at the still quality instead.
STILL_QUALITY = 90
LAYOUTS = ("Quad View", "Axial Only", "Axial Primary", "3D Only", "Side by side")


class CaseViewer:
    """The trame application: server, Slicer scene, views and the page's controls."""

    def __init__(self, server: Any, store: CaseStore, token: str, *, device: str = "auto") -> None:
        import slicer
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories
        from undo_stack import UndoStack

        self.server = server
        self.store = store
        self.token = token
        self.app = SlicerApp()
        slicer.mrmlScene = self.app.scene
        # The views stream at 60 frames/s whether or not the pointer is over them (trame-slicer's
        # default drops a view the pointer is not over to 10/s, and its scheduler only looks for
        # a new request once per frame period: up to 100 ms added to a slice change made with
        # the slider or the buttons).
        register_rca_factories(
            self.app.view_manager,
            server,
            target_fps=VIEW_FPS,
            blur_fps=VIEW_FPS,
            interactive_quality=STILL_QUALITY,
        )
        self.layout_manager = LayoutManager(self.app.scene, self.app.view_manager, server)
        self.layout_manager.register_layout_dict(LayoutManager.default_grid_configuration())
        from .viewer_compare import SIDE_BY_SIDE, side_by_side_layout

        self.layout_manager.register_layout(SIDE_BY_SIDE, side_by_side_layout())
        self.undo_stack = UndoStack(undo_limit=20)
        self.app.segmentation_editor.set_undo_stack(self.undo_stack)
        self.case: Any = None
        self.device = device  # of the completion child
        self._structure_number = 0  # of the structure being drawn for completion
        self._completion: Any = None  # the CompletionRun in progress
        self._completion_task: asyncio.Task[None] | None = None
        self._save_task: asyncio.Task[None] | None = None
        self._edited_since_save = False
        # server-side only: a client can change any state variable, so access never depends
        # on state.token_ok (which only drives the page)
        self._unlocked = not token
        self._current_label: Any = None  # the edited CTV, recomputed only after an edit
        self.app.segmentation_editor.segmentation_modified.connect(self._on_edit)
        self._play_task: asyncio.Task[None] | None = None
        state = server.state
        state.trame__title = "AutoCTV viewer"
        state.update(
            {
                "token_needed": bool(token),
                "token_ok": not token,
                "token_text": "",
                "cases": [],
                "case_id": None,
                "message": "",
                "layout_id": "Quad View",
                "k": 0,
                "k_max": 0,
                "playing": False,
                "heat_opacity": 0.5,
                "has_heat_map": False,
                "legend_gradient": "",
                "review": [],
                "dice_slice": None,
                "has_reference": False,
                "show_reference": True,
                "dice_reference": None,
                "dice_reference_all": None,
                "dice_all": None,
                "edit_tool": "none",
                "loaded": False,
                "compare_title": "",
                "structure_id": "",
                "completion_methods": list(WEB_COMPLETION_METHODS),
                "completion_method": WEB_COMPLETION_METHODS[0],
                "completing": False,
                "completion_progress": 0,
                "completion_stage": "",
                "structures": [],
                "edit_status": "Not editing",
                "confirm_discard": "",
                "pages_connected": 0,
            }
        )
        state.change("layout_id")(self._on_layout)
        state.change("k")(self._on_slice)
        state.change("heat_opacity")(self._on_opacity)
        state.change("edit_tool")(self._on_tool)
        state.change("show_reference")(self._on_show_reference)
        controller = server.controller
        controller.check_token = self.check_token
        controller.refresh_cases = self.refresh_cases
        controller.load_case = self.load_case
        controller.window_preset = self.window_preset
        controller.step = self.step
        controller.toggle_play = self.toggle_play
        controller.jump = self.jump
        controller.jump_to_ctv = self.jump_to_ctv
        controller.undo = self.undo
        controller.save_edits = self.save_edits
        controller.new_structure = self.new_structure
        controller.complete_structure = self.complete_structure
        controller.cancel_completion = self.cancel_completion
        server.trigger("structure_file")(self.structure_file)  # the page's downloads
        controller.on_client_connected.add(self._on_client_connected)
        from .viewer_sharing import count_connections

        count_connections(server, self._on_pages_connected)
        self._build_ui()
        self.layout_manager.set_layout("Quad View")
        self._no_multisampling_in_slice_views()
        from .viewer_scene import drop_slice_models

        drop_slice_models(self.app.app_logic)

    # -- access ----------------------------------------------------------------------------

    def check_token(self, text: str | None = None) -> None:
        """Accept the token typed in the page (or passed as ``?token=``)."""
        entered = (text if text is not None else self.server.state.token_text) or ""
        ok = authorized(f"Bearer {entered.strip()}", self.token)
        self._unlocked = ok
        self.server.state.token_ok = ok
        self.server.state.message = "" if ok else "wrong access token"
        if ok:
            self.refresh_cases()

    def _on_pages_connected(self, count: int) -> None:
        with self.server.state as state:
            state.pages_connected = count

    def _allowed(self) -> bool:
        return self._unlocked

    def _on_client_connected(self, **_: Any) -> None:
        """With a token, every new page must enter it again; it sees no case before."""
        if not self.token:
            return
        self._stop_play()
        self._unlocked = False
        self.case = None
        self._current_label = None
        self.app.scene.Clear(0)
        self.server.state.update(
            {"token_ok": False, "cases": [], "case_id": None, "loaded": False, "review": []}
        )

    # -- cases -----------------------------------------------------------------------------

    def refresh_cases(self) -> None:
        if not self._allowed():
            return
        self.server.state.cases = [
            {"title": f"{r.upload_name} ({r.id[:8]})", "value": r.id}
            for r in reversed(self.store.list())
            if r.status == "done"
        ]

    def load_case(self, case_id: str | None = None) -> None:
        from AutoCTVSlicerLib.heat_map import jump_to_slice, show_heat_map

        from .viewer_scene import drop_slice_models, load_case

        state = self.server.state
        case_id = case_id or state.case_id
        if not self._allowed() or not case_id:
            return
        record = self.store.get(case_id)
        if record is None or record.status != "done":
            state.message = "that case has no contour yet"
            return
        unsaved = self._unsaved_work()
        if unsaved and state.confirm_discard != case_id:
            # every page shares this viewer: never drop another page's work without a word
            state.confirm_discard = case_id
            state.message = (
                f"The open case has {unsaved}. Save it first (Save edited contour / Complete), "
                "or click the case again to open it and discard them."
            )
            return
        state.confirm_discard = ""
        self._stop_play()
        self._current_label = None
        # no case while the scene is cleared and the new one is set up: the editor's signals
        # (segmentation modified) must not reach the old case's removed nodes, nor the new
        # case with the old case's slice number
        self.case = None
        self.app.scene.Clear(0)
        case = load_case(
            self.app.scene, self.store.case_dir(case_id), record.input_path, record.series_uid
        )
        state.k_max = case.slices - 1
        state.k = case.slices // 2
        self.case = case
        self.app.display_manager.show_volume(self.case.ct_node)
        self.app.volume_rendering.get_vr_display_node(self.case.ct_node).SetVisibility(False)
        if self.case.heat_map_node is not None:
            show_heat_map(self.case.ct_node, self.case.heat_map_node, float(state.heat_opacity))
        self.app.segmentation_editor.set_active_segmentation(
            self.case.segmentation_node, self.case.ct_node
        )
        self.app.segmentation_editor.show_3d(True)
        self.window_preset("soft tissue")
        self.app.display_manager.reset_views()
        state.case_id = case_id
        state.loaded = True
        state.has_heat_map = self.case.heat_map_node is not None
        if self.case.heat_map_node is not None:
            from .viewer_scene import legend_gradient

            state.legend_gradient = legend_gradient(self.case.heat_map_node)
        state.review = self.case.review
        self._show_structures()
        state.has_reference = self.case.reference_zyx is not None
        state.dice_reference_all = None
        state.structure_id = ""
        if self.case.reference_zyx is not None:
            from .viewer_scene import volume_dice

            state.dice_reference_all = volume_dice(self.case.reference_zyx, self._label_now())
            self._on_show_reference(state.show_reference)
        state.message = ""
        self._edited_since_save = False  # loading set the segmentation: no edit yet
        jump_to_slice(self.case.ct_node, int(state.k))  # centre every view once
        self._apply_compare()
        drop_slice_models(self.app.app_logic)  # the scene clear made them again
        self._update_dice(int(state.k))

    # -- views -----------------------------------------------------------------------------

    def _on_layout(self, layout_id: str, **_: Any) -> None:
        from .viewer_scene import drop_slice_models

        if layout_id in LAYOUTS:
            self.layout_manager.set_layout(layout_id)
            self._no_multisampling_in_slice_views()
            self._apply_compare()
            drop_slice_models(self.app.app_logic)  # views made for this layout have them

    def _no_multisampling_in_slice_views(self) -> None:
        """Slice views show 2D images: no 8× multisampling (trame-slicer's default for every
        view), which on a CPU renderer made each slice-view frame several times dearer."""
        for view in self.app.view_manager.get_slice_views():
            window = view.render_window()
            if window.GetMultiSamples() != 0:
                window.SetMultiSamples(0)

    def _apply_compare(self) -> None:
        """Side by side: current CTV left, reference (or the model before edits) right."""
        from .viewer_compare import SIDE_BY_SIDE, apply_compare
        from .viewer_scene import move_axial_views

        state = self.server.state
        if self.case is None:
            state.compare_title = ""
            return
        side_by_side = state.layout_id == SIDE_BY_SIDE
        if side_by_side:  # the compare view is made on first use: give it the CT and the slice
            self.app.display_manager.show_volume_in_slice_background(self.case.ct_node)
            move_axial_views(self.case.ct_node, int(state.k))
        state.compare_title = apply_compare(self.case, side_by_side, bool(state.show_reference))

    def window_preset(self, name: str) -> None:
        from trame_slicer.core.volume_window_level import VolumeWindowLevel

        from .viewer_scene import WINDOW_PRESETS

        if self.case is None or name not in WINDOW_PRESETS:
            return
        window, level = WINDOW_PRESETS[name]
        VolumeWindowLevel.set_volume_node_window_level(self.case.ct_node, window, level)

    def _on_slice(self, k: Any, **_: Any) -> None:
        """A slice change moves (and so re-renders) only the axial view."""
        from .viewer_scene import drop_slice_models, move_axial_views

        if self.case is None:
            return
        k = int(min(max(int(k), 0), self.case.slices - 1))
        drop_slice_models(self.app.app_logic)  # a view made since (compare view) has one
        move_axial_views(self.case.ct_node, k)
        self._update_dice(k)

    def _on_edit(self, *_: Any) -> None:
        self._current_label = None
        self._edited_since_save = True
        if self.case is not None and not self.server.state.playing:
            self._update_dice(int(self.server.state.k))

    def _label_now(self) -> Any:
        from .viewer_scene import current_label

        if self._current_label is None:
            self._current_label = current_label(self.case)
        return self._current_label

    def _update_dice(self, k: int) -> None:
        from .viewer_scene import slice_dice

        k = min(max(int(k), 0), self.case.slices - 1)
        now = self._label_now()
        state = self.server.state
        state.dice_slice = slice_dice(self.case.label_zyx[k : k + 1], now[k : k + 1])[0]
        if self.case.reference_zyx is not None:
            reference = self.case.reference_zyx[k : k + 1]
            state.dice_reference = slice_dice(reference, now[k : k + 1])[0]

    def _on_show_reference(self, show_reference: bool, **_: Any) -> None:
        if self.case is not None and self.case.reference_node is not None:
            self._apply_compare()

    def step(self, delta: int) -> None:
        state = self.server.state
        if self.case is not None:
            state.k = int(min(max(int(state.k) + int(delta), 0), state.k_max))

    def jump_to_ctv(self) -> None:
        """Show the axial slice with the largest CTV area."""
        if self.case is not None:
            areas = self._label_now().reshape(self.case.slices, -1).sum(axis=1)
            self.jump(int(areas.argmax()))

    def jump(self, k: int) -> None:
        self._stop_play()
        self.server.state.k = int(k)

    def _on_opacity(self, heat_opacity: float, **_: Any) -> None:
        from AutoCTVSlicerLib.heat_map import set_heat_map_opacity

        if self.case is not None and self.case.heat_map_node is not None:
            set_heat_map_opacity(self.case.heat_map_node, float(heat_opacity))
            # a composite node's opacity asks no displayable manager for a render: without
            # this the slider changed the views only at the next slice change
            for view in self.app.view_manager.get_slice_views():
                view.schedule_render()

    # -- auto-play -------------------------------------------------------------------------

    def toggle_play(self) -> None:
        if self._play_task is not None:
            self._stop_play()
            return
        self.server.state.playing = True
        self._play_task = asyncio.ensure_future(self._play())

    def _stop_play(self) -> None:
        if self._play_task is not None:
            self._play_task.cancel()
            self._play_task = None
        self.server.state.playing = False

    async def _play(self) -> None:
        """Advance one axial slice every 250 ms (wrapping at the end) until paused."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + AUTOPLAY_PERIOD_S
        while True:
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            next_tick += AUTOPLAY_PERIOD_S
            state = self.server.state
            with state:
                state.k = 0 if int(state.k) >= int(state.k_max) else int(state.k) + 1

    # -- editing ---------------------------------------------------------------------------

    def _on_tool(self, edit_tool: str, **_: Any) -> None:
        from trame_slicer.segmentation import (
            SegmentationEffectErase,
            SegmentationEffectPaint,
            SegmentationEffectScissors,
        )

        editor = self.app.segmentation_editor
        effects: dict[str, Callable[[], Any]] = {
            "paint": lambda: editor.set_active_effect_type(SegmentationEffectPaint),
            "erase": lambda: editor.set_active_effect_type(SegmentationEffectErase),
            "scissors": lambda: editor.set_active_effect_type(SegmentationEffectScissors),
        }
        if self.case is None or edit_tool not in effects:
            editor.deactivate_effect()
            self.server.state.edit_status = "Not editing"
            return
        effects[edit_tool]()
        segment = self.case.segmentation_node.GetSegmentation().GetSegment(
            editor.get_active_segment_id() or ""
        )
        target = segment.GetName() if segment is not None else "?"
        # the page shows this once the server has the effect on: only then do strokes count
        self.server.state.edit_status = f"Active: {edit_tool} on {target}"

    def undo(self) -> None:
        if self.undo_stack.can_undo():
            self.undo_stack.undo()
        if self.case is not None:
            self._update_dice(int(self.server.state.k))

    def new_structure(self) -> None:
        """Add an empty structure segment to paint on a few slices (then "Complete")."""
        from .viewer_completion import add_structure

        state = self.server.state
        if self.case is None or not self._allowed():
            return
        if self._completion is not None:
            state.message = "a completion is running; wait for it or cancel it first"
            return
        stored = self.store.next_structure_number(self.case.case_id)
        self._structure_number = max(stored, self._structure_number + 1)
        number = self._structure_number
        state.structure_id = add_structure(self.app.segmentation_editor, number)
        state.edit_tool = "paint"
        self._on_tool("paint")  # on the new segment, even if paint was on already
        state.message = f"Structure {number}: paint it on a few axial slices, then Complete."

    def complete_structure(self, case_id: str | None = None) -> None:
        """Complete the structure being drawn by the chosen method, off the event loop."""
        from AutoCTVLib.errors import AutoCTVError

        from .viewer_completion import CompletionRun, drawn_labelmap

        state = self.server.state
        if not self._same_case(case_id):
            return
        if self.case is None or not self._allowed() or not state.structure_id:
            state.message = "add a structure with New structure and draw it first"
            return
        if self._completion is not None:
            state.message = "a completion is already running"
            return
        method = str(state.completion_method)
        if method not in WEB_COMPLETION_METHODS:
            state.message = f"unknown completion method {method!r}"
            return
        state.edit_tool = "none"
        drawn = drawn_labelmap(self.case, state.structure_id)
        try:
            run = CompletionRun(
                self.case.ct_volume,
                drawn,
                method,
                device=self.device,
                on_progress=self._completion_progress,
            )
        except (AutoCTVError, ValueError) as error:
            state.message = f"completion failed: {error}"
            return
        self._completion = run
        state.completing = True
        state.completion_progress = 0
        state.completion_stage = f"{method}: starting"
        state.message = f"Completing Structure {self._structure_number} ({method})…"
        self._completion_task = asyncio.ensure_future(
            self._finish_completion(
                run, self.case, state.structure_id, self._structure_number, drawn
            )
        )

    def _completion_progress(self, fraction: float, message: str) -> None:
        state = self.server.state
        with state:
            state.completion_progress = round(100 * float(fraction))
            state.completion_stage = message

    def cancel_completion(self) -> None:
        if self._completion is not None:
            self._completion.cancel()
            self.server.state.completion_stage = "cancelling…"

    async def _finish_completion(
        self, run: Any, case: Any, segment_id: str, number: int, drawn: Any
    ) -> None:
        """Await the completion, show it (if its case is still open) and store it."""
        from AutoCTVLib.errors import AutoCTVError

        from .viewer_completion import show_completed

        state = self.server.state
        try:
            completed = await run.run()
            if completed is None:
                message = f"Completion of Structure {number} cancelled; nothing was stored."
            else:
                shown = case is self.case and show_completed(case, segment_id, completed.mask_zyx)
                kinds = await self._store_structure(case, number, completed, drawn)
                where = "" if shown else " (another case is open now: not shown)"
                message = (
                    f"Structure {number} completed from {completed.drawn_slices} drawn slices "
                    f"({completed.method}, {completed.seconds:.1f} s){where}; "
                    f"saved with the case: {', '.join(kinds)}."
                )
        except AutoCTVError as error:
            message = f"completion failed: {' '.join(str(error).split())}"
        except Exception:  # never leave the page in the "completing" state
            logger.exception("completion of structure %s failed", number)
            message = "completion failed: internal error; see the server's log"
        finally:
            self._completion = None
        with state:
            state.completing = False
            state.completion_stage = ""
            state.message = message
            if case is self.case:
                state.structure_id = ""
                ctv = case.segmentation_node.GetSegmentation().GetNthSegmentID(0)
                self.app.segmentation_editor.set_active_segment_id(ctv)  # paint the CTV again
                self._structure_list()

    async def _store_structure(self, case: Any, number: int, completed: Any, drawn: Any) -> list:
        """Write the structure's files under the case and record it in the history."""
        from .store import StructureRecord, now_s
        from .structures import write_structure_outputs
        from .viewer_completion import STRUCTURE_COLOR_RGB

        record = self.store.get(case.case_id)
        if record is None:
            raise RuntimeError("the case was deleted meanwhile")
        loop = asyncio.get_running_loop()
        name = f"Structure {number}"
        kinds = await loop.run_in_executor(
            None,
            lambda: write_structure_outputs(
                self.store.case_dir(record.id),
                record.input_path,
                record.series_uid,
                number,
                name,
                completed.mask_zyx,
                drawn,
                method=completed.method,
                color_rgb=STRUCTURE_COLOR_RGB,
            ),
        )
        voxels = int(np.count_nonzero(completed.mask_zyx))
        self.store.add_structure(
            StructureRecord(
                case_id=record.id,
                number=number,
                name=name,
                method=completed.method,
                drawn=completed.drawn,
                drawn_slices=completed.drawn_slices,
                voxels=voxels,
                volume_ml=round(voxels * case.ct_volume.geometry.voxel_volume_ml, 3),
                seconds=round(completed.seconds, 2),
                model=completed.model,
                files=",".join(kinds),
                created_at=now_s(),
            )
        )
        return kinds

    def _show_structures(self) -> None:
        """Show the open case's stored structures as segments, and list them in the page."""
        from .viewer_completion import show_stored_structures

        records = self.store.structures(self.case.case_id)
        show_stored_structures(self.case, self.store.case_dir(self.case.case_id), records)
        self._structure_number = 0
        self._structure_list()

    def _structure_list(self) -> None:
        if self.case is None:
            self.server.state.structures = []
            return
        self.server.state.structures = [
            {
                "number": r.number,
                "label": f"{r.name}: {r.method}, {r.volume_ml:.1f} mL, from {r.drawn}",
                "downloads": [kind for kind in r.files.split(",") if kind],
            }
            for r in self.store.structures(self.case.case_id)
        ]

    def structure_file(self, number: int, kind: str) -> bytes:
        """The bytes of a stored structure's file of the open case (the page's download)."""
        from .structures import STRUCTURE_DOWNLOADS, structure_dir

        if self.case is None or not self._allowed() or kind not in STRUCTURE_DOWNLOADS:
            return b""
        record = self.store.structure(self.case.case_id, int(number))
        if record is None or kind not in record.files.split(","):
            return b""
        folder = structure_dir(self.store.case_dir(self.case.case_id), int(number))
        return (folder / STRUCTURE_DOWNLOADS[kind][0]).read_bytes()

    def save_edits(self, case_id: str | None = None) -> None:
        """Write the current CTV as the case's edited contour (downloads then give it).

        ``case_id`` is the case the page showed when the button was pressed: if another page
        has opened another case since, nothing is written. The files are written in a worker
        thread (RTSTRUCT and SEG of a large CT take seconds): the page stays usable.
        """
        from .viewer_scene import current_label

        state = self.server.state
        if self.case is None or not self._allowed() or not self._same_case(case_id):
            return
        record = self.store.get(self.case.case_id)
        if record is None:
            state.message = "this case was deleted"
            return
        label = current_label(self.case)
        state.message = "Saving the edited contour…"
        self._save_task = asyncio.ensure_future(self._write_edits(self.case, record, label))

    async def _write_edits(self, case: Any, record: Any, label: Any) -> None:
        from .edited import write_edited_outputs

        loop = asyncio.get_running_loop()
        try:
            kinds = await loop.run_in_executor(
                None,
                lambda: write_edited_outputs(
                    self.store.case_dir(record.id),
                    record.input_path,
                    record.series_uid,
                    label,
                    model_name=record.model_name,
                    model_version=record.model_version,
                ),
            )
        except Exception:
            logger.exception("saving the edited contour of %s failed", record.id)
            message = "saving failed: internal error; see the server's log"
        else:
            case.saved_zyx = label
            if case is self.case:
                self._edited_since_save = False
            message = f"Edited contour saved ({', '.join(kinds)}); downloads now give it."
        with self.server.state as state:
            state.message = message

    def _same_case(self, case_id: str | None) -> bool:
        """False (with a message) when the page pressed a button for a case no longer open."""
        if case_id is None or self.case is None or case_id == self.case.case_id:
            return True
        self.server.state.message = (
            "another page sharing this viewer opened another case meanwhile; nothing was done"
        )
        return False

    def _unsaved_work(self) -> str:
        """What would be lost by opening another case ("" if nothing)."""
        if self.case is None:
            return ""
        if self.server.state.structure_id and self._completion is None:
            return "a structure being drawn (not completed)"
        if self._edited_since_save and self.case.saved_zyx is not None:
            if not np.array_equal(self._label_now(), self.case.saved_zyx):
                return "edits of the CTV that were not saved"
        return ""

    # -- page ------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        from trame.ui.vuetify3 import SinglePageWithDrawerLayout
        from trame.widgets import html
        from trame.widgets import vuetify3 as v

        with SinglePageWithDrawerLayout(self.server, theme="dark") as layout:
            layout.title.set_text("AutoCTV viewer")
            with layout.toolbar:
                v.VSpacer()
                html.A("Cases and uploads", href="/cases", classes="mx-4", id="cases-link")
            with layout.drawer as drawer:
                drawer.width = 320
                with v.VContainer(classes="pa-2"):
                    with html.Div(v_if="token_needed && !token_ok"):
                        v.VTextField(
                            v_model=("token_text",),
                            label="Access token",
                            type="password",
                            id="token-field",
                        )
                        v.VBtn("Enter", click=self.check_token, id="token-button")
                    html.Div("{{ message }}", id="viewer-message", classes="text-warning")
                    html.Div(
                        "{{ pages_connected }} pages share this viewer: a case opened, a "
                        "slice shown or an edit made in one shows in all.",
                        v_if="pages_connected > 1",
                        id="shared-viewer",
                        classes="text-caption text-info",
                    )
                    with html.Div(v_if="token_ok"):
                        with v.VRow(dense=True, classes="align-center ma-0"):
                            html.Div("Finished cases (click to open)")
                            v.VSpacer()
                            v.VBtn(
                                icon="mdi-refresh",
                                size="x-small",
                                click=self.refresh_cases,
                                id="refresh-cases",
                            )
                        with v.VList(density="compact", id="case-list", max_height="160px"):
                            v.VListItem(
                                v_for="item in cases",
                                key="item.value",
                                title=("item.title",),
                                click=(self.load_case, "[item.value]"),
                                active=("item.value === case_id",),
                                id=("'case-' + item.value",),
                            )
                        with v.VBtnToggle(v_model=("layout_id",), density="compact"):
                            for number, name in enumerate(LAYOUTS):
                                v.VBtn(name, value=name, size="x-small", id=f"layout-{number}")
                        with html.Div(classes="my-2"):
                            for name in ("soft tissue", "pelvis bone", "lung", "wide"):
                                v.VBtn(
                                    name,
                                    size="x-small",
                                    classes="ma-1",
                                    click=(self.window_preset, f"['{name}']"),
                                )
                        html.Div(
                            "{{ compare_title }}",
                            v_if="compare_title",
                            id="compare-title",
                            classes="text-caption",
                        )
                        html.Div("Axial slice {{ k }} / {{ k_max }}", id="slice-label")
                        v.VSlider(
                            v_model=("k",),
                            min=0,
                            max=("k_max",),
                            step=1,
                            density="compact",
                            hide_details=True,
                            id="slice-slider",
                        )
                        with v.VRow(dense=True):
                            v.VBtn("−1", size="small", click=(self.step, "[-1]"), id="prev")
                            v.VBtn(
                                "{{ playing ? 'Pause' : 'Play' }}",
                                size="small",
                                click=self.toggle_play,
                                id="play-button",
                            )
                            v.VBtn("+1", size="small", click=(self.step, "[1]"), id="next")
                            v.VBtn("CTV", size="small", click=self.jump_to_ctv, id="ctv-slice")
                        html.Div(
                            "Dice on this slice, edited vs model: "
                            "{{ dice_slice === null ? '–' : dice_slice }}",
                            id="dice-label",
                            classes="my-2",
                        )
                        with html.Div(v_if="has_reference", classes="mb-2"):
                            v.VCheckbox(
                                v_model=("show_reference",),
                                label="Show the reference CTV (green), overlaid",
                                id="show-reference",
                                density="compact",
                                hide_details=True,
                            )
                            html.Div(
                                "Dice on this slice, CTV vs reference: "
                                "{{ dice_reference === null ? '–' : dice_reference }}",
                                id="dice-reference",
                            )
                            html.Div(
                                "Dice over the volume: "
                                "{{ dice_reference_all === null ? '–' : dice_reference_all }}",
                                id="dice-reference-all",
                            )
                        with html.Div(v_if="has_heat_map"):
                            html.Div("Uncertainty (entropy, bits)")
                            html.Div(
                                id="heat-legend",
                                style=(
                                    "{ background: legend_gradient, height: '12px', "
                                    "borderRadius: '2px' }",
                                ),
                            )
                            with html.Div(
                                classes="d-flex justify-space-between text-caption",
                            ):
                                html.Span("0 (transparent below 0.1)")
                                html.Span("0.5")
                                html.Span("1 bit")
                            html.Div(
                                "Heat map opacity {{ heat_opacity }}",
                                classes="mt-1",
                                id="heat-opacity-label",
                            )
                            with html.Div(id="heat-opacity"):
                                v.VSlider(
                                    v_model=("heat_opacity",),
                                    min=0,
                                    max=1,
                                    step=0.05,
                                    density="compact",
                                    hide_details=True,
                                )
                            html.Div("Slices to review")
                            with v.VList(density="compact", id="review-list"):
                                v.VListItem(
                                    v_for="item in review",
                                    key="item.k",
                                    title=("item.label",),
                                    click=(self.jump, "[item.k]"),
                                    id=("'review-' + item.k",),
                                    classes="review-entry",
                                )
                        html.Div("Edit the CTV", classes="mt-2")
                        with v.VBtnToggle(v_model=("edit_tool",), density="compact"):
                            v.VBtn("none", value="none")
                            v.VBtn("paint", value="paint", id="paint-button")
                            v.VBtn("erase", value="erase")
                            v.VBtn("scissors", value="scissors")
                        v.VBtn("Undo", size="small", click=self.undo, id="undo-button")
                        html.Div("{{ edit_status }}", id="edit-status", classes="text-caption")
                        html.Div("Sparse-slice completion", classes="mt-2")
                        with v.VBtnToggle(
                            v_model=("completion_method",),
                            density="compact",
                            mandatory=True,
                            id="completion-method",
                        ):
                            for method in WEB_COMPLETION_METHODS:
                                v.VBtn(
                                    method,
                                    value=method,
                                    size="x-small",
                                    id=f"method-{method}",
                                )
                        with html.Div(classes="my-1"):
                            v.VBtn(
                                "New structure",
                                size="small",
                                click=self.new_structure,
                                id="new-structure",
                                disabled=("completing",),
                            )
                            v.VBtn(
                                "Complete",
                                size="small",
                                click=(self.complete_structure, "[case_id]"),
                                id="complete-structure",
                                disabled=("!structure_id || completing",),
                                classes="ml-2",
                            )
                            v.VBtn(
                                "Cancel",
                                size="small",
                                click=self.cancel_completion,
                                id="cancel-completion",
                                v_if="completing",
                                classes="ml-2",
                            )
                        with html.Div(v_if="completing", id="completion-progress"):
                            v.VProgressLinear(
                                model_value=("completion_progress",), height=6, color="info"
                            )
                            html.Div("{{ completion_stage }}", classes="text-caption")
                        with v.VList(density="compact", id="structure-list"):
                            with v.VListItem(
                                v_for="item in structures",
                                key="item.number",
                                id=("'structure-' + item.number",),
                            ):
                                html.Div("{{ item.label }}", classes="text-caption")
                                v.VBtn(
                                    "{{ kind }}",
                                    v_for="kind in item.downloads",
                                    key="kind",
                                    size="x-small",
                                    variant="text",
                                    classes="structure-download",
                                    id=("'structure-' + item.number + '-' + kind",),
                                    click=(
                                        "utils.download("
                                        "'structure' + item.number + '-' + kind + "
                                        "(kind === 'rtstruct' ? '.dcm' : "
                                        "kind === 'segnrrd' ? '.seg.nrrd' : '.nii.gz'), "
                                        "trigger('structure_file', [item.number, kind]), "
                                        "'application/octet-stream')"
                                    ),
                                )
                        v.VBtn(
                            "Save edited contour",
                            size="small",
                            click=(self.save_edits, "[case_id]"),
                            id="save-edits",
                            classes="ml-2",
                        )
            with layout.content:
                with html.Div(style="height: calc(100vh - 64px); width: 100%;"):
                    self.layout_manager.initialize_layout_grid(layout)
