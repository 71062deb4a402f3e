"""The viewer page on trame-slicer: Slicer's own slice and 3D views of a case in the browser.

One MRML scene (trame-slicer's ``SlicerApp``) per server; the views are Slicer's displayable
managers rendered on the server and streamed to the page (trame's remote-controlled areas).
The CT, the CTV segmentation and the uncertainty heat map come from the Slicer module's MRML
glue (:mod:`.viewer_scene`). Controls: case, layout, window presets, axial slice with step and
a play/pause auto-play every 250 ms, heat-map opacity, the review list (a click jumps there),
per-slice Dice of the current (edited) CTV against the model's, and paint / erase / scissors
with undo through trame-slicer's segment editor.

Layouts include "Side by side" (:mod:`.viewer_compare`); "New structure" / "Complete" run
sparse-slice completion (:mod:`.viewer_completion`). A slice change moves only the axial
views, so only they re-render.

With an access token set, the websocket itself is checked on connect (:mod:`.viewer_gate`),
so every page connected here has the token and ``autoctv web`` gives the viewer no token of
its own (``CaseViewer``'s in-page token field and lock only apply when one is passed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .auth import authorized
from .store import CaseStore

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

    def __init__(self, server: Any, store: CaseStore, token: str) -> None:
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
        self._structures = 0  # structures added for sparse-slice completion
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
        controller.on_client_connected.add(self._on_client_connected)
        self._build_ui()
        self.layout_manager.set_layout("Quad View")
        self._no_multisampling_in_slice_views()

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

        from .viewer_scene import load_case

        state = self.server.state
        case_id = case_id or state.case_id
        if not self._allowed() or not case_id:
            return
        record = self.store.get(case_id)
        if record is None or record.status != "done":
            state.message = "that case has no contour yet"
            return
        self._stop_play()
        self._current_label = None
        self.app.scene.Clear(0)
        self.case = load_case(
            self.app.scene, self.store.case_dir(case_id), record.input_path, record.series_uid
        )
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
        state.has_reference = self.case.reference_zyx is not None
        state.dice_reference_all = None
        state.structure_id = ""
        if self.case.reference_zyx is not None:
            from .viewer_scene import volume_dice

            state.dice_reference_all = volume_dice(self.case.reference_zyx, self._label_now())
            self._on_show_reference(state.show_reference)
        state.k_max = self.case.slices - 1
        state.k = self.case.slices // 2
        state.message = ""
        jump_to_slice(self.case.ct_node, int(state.k))  # centre every view once
        self._apply_compare()
        self._update_dice(int(state.k))

    # -- views -----------------------------------------------------------------------------

    def _on_layout(self, layout_id: str, **_: Any) -> None:
        if layout_id in LAYOUTS:
            self.layout_manager.set_layout(layout_id)
            self._no_multisampling_in_slice_views()
            self._apply_compare()

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
        from .viewer_scene import move_axial_views

        if self.case is None:
            return
        k = int(min(max(int(k), 0), self.case.slices - 1))
        move_axial_views(self.case.ct_node, k)
        self._update_dice(k)

    def _on_edit(self, *_: Any) -> None:
        self._current_label = None
        if self.case is not None and not self.server.state.playing:
            self._update_dice(int(self.server.state.k))

    def _label_now(self) -> Any:
        from .viewer_scene import current_label

        if self._current_label is None:
            self._current_label = current_label(self.case)
        return self._current_label

    def _update_dice(self, k: int) -> None:
        from .viewer_scene import slice_dice

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
            return
        effects[edit_tool]()

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
        self._structures += 1
        state.structure_id = add_structure(self.app.segmentation_editor, self._structures)
        state.edit_tool = "paint"
        state.message = (
            f"Structure {self._structures}: paint it on a few axial slices, then Complete."
        )

    def complete_structure(self) -> None:
        """Complete the structure being drawn (interpolation between its drawn slices)."""
        from AutoCTVLib.errors import AutoCTVError

        from .viewer_completion import complete_structure

        state = self.server.state
        if self.case is None or not self._allowed() or not state.structure_id:
            state.message = "add a structure with New structure and draw it first"
            return
        state.edit_tool = "none"
        try:
            slices, seconds = complete_structure(self.case, state.structure_id)
        except AutoCTVError as error:
            state.message = f"completion failed: {error}"
            return
        state.message = (
            f"Structure completed from {slices} drawn slices (interpolate, {seconds:.1f} s)."
        )
        # further painting goes to the CTV again
        ctv = self.case.segmentation_node.GetSegmentation().GetNthSegmentID(0)
        self.app.segmentation_editor.set_active_segment_id(ctv)
        state.structure_id = ""

    def save_edits(self) -> None:
        """Write the current CTV as the case's edited contour (downloads then give it)."""
        from .edited import write_edited_outputs
        from .viewer_scene import current_label

        state = self.server.state
        if self.case is None or not self._allowed():
            return
        record = self.store.get(self.case.case_id)
        if record is None:
            state.message = "this case was deleted"
            return
        label = current_label(self.case)
        kinds = write_edited_outputs(
            self.store.case_dir(record.id),
            record.input_path,
            record.series_uid,
            label,
            model_name=record.model_name,
            model_version=record.model_version,
        )
        state.message = f"Edited contour saved ({', '.join(kinds)}); downloads now give it."

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
                            html.Div("Heat map opacity", classes="mt-1")
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
                                )
                        html.Div("Edit the CTV", classes="mt-2")
                        with v.VBtnToggle(v_model=("edit_tool",), density="compact"):
                            v.VBtn("none", value="none")
                            v.VBtn("paint", value="paint", id="paint-button")
                            v.VBtn("erase", value="erase")
                            v.VBtn("scissors", value="scissors")
                        v.VBtn("Undo", size="small", click=self.undo, id="undo-button")
                        html.Div("Sparse-slice completion", classes="mt-2")
                        v.VBtn(
                            "New structure",
                            size="small",
                            click=self.new_structure,
                            id="new-structure",
                        )
                        v.VBtn(
                            "Complete",
                            size="small",
                            click=self.complete_structure,
                            id="complete-structure",
                            disabled=("!structure_id",),
                            classes="ml-2",
                        )
                        v.VBtn(
                            "Save edited contour",
                            size="small",
                            click=self.save_edits,
                            id="save-edits",
                            classes="ml-2",
                        )
            with layout.content:
                with html.Div(style="height: calc(100vh - 64px); width: 100%;"):
                    self.layout_manager.initialize_layout_grid(layout)
