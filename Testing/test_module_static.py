"""Static checks of the Slicer module and the extension files (no Slicer application needed).

The Qt panel can only run inside Slicer; what can be checked here is checked by reading the
files: the module parses and defines Slicer's five classes, every widget the code uses exists in
the .ui file with a Qt/CTK/Slicer class, every parameter-bound widget fits its parameter's type,
every handler and logic method the panel calls exists, the CMake lists ship every script and
resource, and the extension description files agree with each other and with the catalog schema.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from mrml_support import SLICER_MODULE_DIR  # also puts AutoCTVSlicerLib on sys.path

REPO = SLICER_MODULE_DIR.parent
MODULE_FILE = SLICER_MODULE_DIR / "AutoCTV.py"
UI_FILE = SLICER_MODULE_DIR / "Resources" / "UI" / "AutoCTV.ui"
ICON_FILE = SLICER_MODULE_DIR / "Resources" / "Icons" / "AutoCTV.png"
MODULE_CMAKE = SLICER_MODULE_DIR / "CMakeLists.txt"
TOP_CMAKE = REPO / "CMakeLists.txt"

ALLOWED_WIDGET_PREFIXES = ("Q", "ctk", "qMRML", "qSlicer")
SLICER_CLASSES = {
    "AutoCTV": "ScriptedLoadableModule",
    "AutoCTVWidget": "ScriptedLoadableModuleWidget",
    "AutoCTVLogic": "ScriptedLoadableModuleLogic",
    "AutoCTVTest": "ScriptedLoadableModuleTest",
}
# Fields of slicer-extension-catalog-entry-schema-v1.0.2.json (Slicer/Schemas).
CATALOG_REQUIRED = {"$schema", "category", "scm_url"}
CATALOG_FIELDS = CATALOG_REQUIRED | {
    "scm_revision",
    "scm_type",
    "build_dependencies",
    "dicom_support_rule",
    "build_subdirectory",
    "enabled",
    "tier",
}
CATALOG_SCHEMA_URL = (
    "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
    "slicer-extension-catalog-entry-schema-v1.0.2.json#"
)


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"), filename=str(MODULE_FILE))


@pytest.fixture(scope="module")
def ui_root() -> ET.Element:
    return ET.parse(UI_FILE).getroot()


def _classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _base_names(cls: ast.ClassDef) -> list[str]:
    return [base.id if isinstance(base, ast.Name) else ast.unparse(base) for base in cls.bases]


def _methods(cls: ast.ClassDef) -> set[str]:
    return {
        node.name for node in cls.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }


def _attribute_chains(tree: ast.AST, prefix: tuple[str, ...]) -> set[str]:
    """Names ``X`` used as ``self.<prefix...>.X`` anywhere in ``tree``."""
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain, value = [], node.value
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id == "self" and tuple(reversed(chain)) == prefix:
            found.add(node.attr)
    return found


def _ui_widgets(root: ET.Element) -> dict[str, ET.Element]:
    return {w.get("name"): w for w in root.iter("widget")}


def _property(widget: ET.Element, name: str) -> ET.Element | None:
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            return prop
    return None


def _parameter_annotations(tree: ast.Module) -> dict[str, str]:
    cls = _classes(tree)["AutoCTVParameterNode"]
    return {
        node.target.id: ast.unparse(node.annotation)
        for node in cls.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


def _cmake_set(text: str, variable: str) -> list[str]:
    match = re.search(rf"set\(\s*{variable}\s+(.*?)\)", text, re.S)
    assert match, f"set({variable} ...) not found"
    return match.group(1).split()


def _cmake_globs(text: str) -> list[str]:
    """Every file pattern of every file(GLOB/GLOB_RECURSE ...) call, relative to the repo."""
    patterns = []
    for call in re.findall(r"file\(\s*GLOB(?:_RECURSE)?\s+\w+(.*?)\)", text, re.S):
        for token in call.split():
            if token.startswith("${AUTOCTV_SOURCE_ROOT}/"):
                patterns.append(token.removeprefix("${AUTOCTV_SOURCE_ROOT}/"))
    return patterns


def _files_under(folder: Path) -> list[str]:
    return sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


# --------------------------------------------------------------------------- the module


def test_module_parses_and_defines_slicers_five_classes(module_tree):
    classes = _classes(module_tree)
    for name, base in SLICER_CLASSES.items():
        assert name in classes, f"AutoCTV.py must define {name}"
        assert base in _base_names(classes[name])
    assert "AutoCTVParameterNode" in classes
    decorators = [ast.unparse(d) for d in classes["AutoCTVParameterNode"].decorator_list]
    assert "parameterNodeWrapper" in decorators
    assert "AutoCTVCoreLogic" in _base_names(classes["AutoCTVLogic"])
    assert {"setup", "cleanup", "enter", "exit"} <= _methods(classes["AutoCTVWidget"])
    assert {"setUp", "runTest"} <= _methods(classes["AutoCTVTest"])


def test_module_text_states_the_disclaimer_and_categories(module_tree):
    text = MODULE_FILE.read_text(encoding="utf-8")
    assert "synthetic" in text and "not for clinical use" in text
    assert '["Radiotherapy", "Segmentation"]' in text


def test_every_ui_name_used_exists_in_the_ui_file(module_tree, ui_root):
    used = _attribute_chains(module_tree, ("ui",))
    assert len(used) > 15  # the parse found the panel's widgets
    widgets = _ui_widgets(ui_root)
    missing = sorted(used - set(widgets))
    assert not missing, f"AutoCTV.py uses self.ui.{missing} that AutoCTV.ui does not define"


def test_every_ui_widget_is_a_qt_ctk_or_slicer_class(ui_root):
    classes = {w.get("class") for w in ui_root.iter("widget")}
    classes |= {layout.get("class") for layout in ui_root.iter("layout")}
    bad = sorted(c for c in classes if not c.startswith(ALLOWED_WIDGET_PREFIXES))
    assert not bad, f"widget classes outside Qt/CTK/Slicer: {bad}"
    declared = {c.findtext("class"): c.findtext("header") for c in ui_root.iter("customwidget")}
    for cls in classes:
        if not cls.startswith("Q"):
            assert declared.get(cls) == f"{cls}.h", f"{cls} must be declared as a custom widget"


def test_mrml_widgets_get_the_scene(ui_root):
    receivers = {
        c.findtext("receiver")
        for c in ui_root.iter("connection")
        if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    mrml = {w.get("name") for w in ui_root.iter("widget") if w.get("class").startswith("qMRML")}
    mrml.discard(ui_root.find("widget").get("name"))  # the top-level qMRMLWidget sends it
    assert mrml and mrml <= receivers


def test_parameter_bound_widgets_fit_their_parameters(module_tree, ui_root):
    annotations = _parameter_annotations(module_tree)
    bound = {}
    for widget in ui_root.iter("widget"):
        prop = _property(widget, "SlicerParameterName")
        if prop is not None:
            bound[prop.findtext("string")] = widget
    assert len(bound) >= 12
    expected_type = {
        "QCheckBox": "bool",
        "QSpinBox": "int",
        "ctkSliderWidget": "float",
        "QComboBox": "Choice(",
        "ctkPathLineEdit": "pathlib.Path",
    }
    for parameter, widget in bound.items():
        assert parameter in annotations, f"widget {widget.get('name')} binds unknown {parameter}"
        annotation = annotations[parameter]
        cls = widget.get("class")
        if cls == "qMRMLNodeComboBox":
            node_types = [s.text for s in _property(widget, "nodeTypes").iter("string")]
            assert node_types == [annotation], f"{parameter}: {node_types} vs {annotation}"
        else:
            assert expected_type[cls] in annotation, f"{parameter} ({annotation}) on a {cls}"


def test_panel_handlers_and_logic_calls_exist(module_tree):
    classes = _classes(module_tree)
    widget_methods = _methods(classes["AutoCTVWidget"])
    for node in ast.walk(classes["AutoCTVWidget"]):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "connect":
            handler = node.args[-1]
            if isinstance(handler, ast.Attribute) and ast.unparse(handler.value) == "self":
                assert handler.attr in widget_methods, f"missing handler {handler.attr}"
    from AutoCTVSlicerLib.logic import AutoCTVCoreLogic

    logic_methods = _methods(classes["AutoCTVLogic"]) | set(dir(AutoCTVCoreLogic))
    called = _attribute_chains(classes["AutoCTVWidget"], ("logic",))
    called |= _attribute_chains(classes["AutoCTVLogic"], ())  # self.<method> inside the logic
    called |= {  # logic.<method> in the self-test
        node.attr
        for node in ast.walk(classes["AutoCTVTest"])
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "logic"
    }
    missing = sorted(
        name
        for name in called
        if name not in logic_methods and name not in {"getParameterNode", "python", "python_paths"}
    )
    assert not missing, f"the panel calls logic methods that do not exist: {missing}"


def test_slicer_lib_imports_no_gui_and_loads_without_torch():
    for path in sorted((SLICER_MODULE_DIR / "AutoCTVSlicerLib").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in {"qt", "ctk", "PythonQt"}, f"{path.name} imports {name}"
                assert "ScriptedLoadableModule" not in name, f"{path.name} imports {name}"
    # The glue has no camelCase wrappers: every function and method is snake_case.
    for path in sorted((SLICER_MODULE_DIR / "AutoCTVSlicerLib").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef):
                assert node.name == node.name.lower(), f"{path.name}: {node.name}"


def test_panel_load_and_completion_segment_choice_need_no_torch():
    """With torch blocked (``sys.modules['torch'] = None``), a fresh interpreter loads the glue,
    describes the bundled model, checks the panel's settings and describes a drawn segment:
    what the panel does before PyTorch is installed."""
    code = """
import sys
sys.modules["torch"] = None
sys.path[:0] = sys.argv[1:]
import numpy as np
from mrml_support import new_scene
import AutoCTVSlicerLib.dependencies, AutoCTVSlicerLib.dicom_export, AutoCTVSlicerLib.self_test
from AutoCTVLib.options import COMPLETION_METHODS, DEVICE_CHOICES
from AutoCTVLib.volume import Geometry, Volume
from AutoCTVLib.models.bundled import ctv_model_summary
from AutoCTVSlicerLib.logic import AutoContourSettings, AutoCTVCoreLogic
from AutoCTVSlicerLib.segmentation_nodes import add_segmentation_node
from AutoCTVSlicerLib.volume_nodes import add_volume_node
scene = new_scene()
ct = Volume(np.zeros((6, 8, 8), np.float32), Geometry((6, 8, 8), (1.0, 1.0, 2.0), (0, 0, 0)))
ct_node = add_volume_node(ct, "CT", scene)
drawn = np.zeros((6, 8, 8), np.uint8)
drawn[[1, 4], 2:6, 2:6] = 1
node = add_segmentation_node(drawn, ct_node)
segment = node.GetSegmentation().GetNthSegmentID(0)
print(AutoCTVCoreLogic().drawn_slices(ct_node, node, segment))
print(ctv_model_summary(None).split(";")[0])
print([AutoContourSettings(device=d).device for d in DEVICE_CHOICES], COMPLETION_METHODS)
print(sys.modules["torch"])
"""
    completed = subprocess.run(
        [sys.executable, "-c", code, str(SLICER_MODULE_DIR), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0] == "2 axial (z) slices: 1, 4"
    assert lines[1].startswith("ctv_pelvis_cascade ")
    assert lines[2] == "['auto', 'cpu', 'cuda', 'mps'] ('learned', 'finetune', 'interpolate')"
    assert lines[3] == "None"  # still blocked: nothing imported it


def test_panel_options_come_from_the_library(module_tree):
    """Panel and logic agree by construction: no option tuple of their own in AutoCTV.py."""
    annotations = _parameter_annotations(module_tree)
    assert annotations["device"] == "Annotated[str, Choice(list(DEVICE_CHOICES))]"
    assert annotations["completionMethod"] == "Annotated[str, Choice(list(COMPLETION_METHODS))]"
    text = MODULE_FILE.read_text(encoding="utf-8")
    assert "from AutoCTVLib.options import" in text
    assert not re.search(r"^(DEVICE|COMPLETION)_\w+\s*=", text, re.M)
    # The heat-map selector offers AutoCTV heat maps only; the review list follows the keys.
    assert "uncertaintyVolumeSelector.addAttribute(" in text
    assert '"currentItemChanged(QListWidgetItem*,QListWidgetItem*)"' in text
    # Reload, exit and scene close end a running job and delete its temporary folder.
    classes = _classes(module_tree)
    widget = {f.name: f for f in classes["AutoCTVWidget"].body if isinstance(f, ast.FunctionDef)}
    for method in ("cleanup", "onSceneStartClose"):
        assert "self.logic.cleanup()" in ast.unparse(widget[method])


def test_segment_editor_undo_selects_the_editor_parameter_node_first(module_tree):
    """``qMRMLSegmentEditorWidget.setSegmentationNode`` does nothing without a segment editor
    node, which the Segment Editor drops on scene close and selects again only on enter: the
    logic selects it before it sets the segmentation and saves the undo state."""
    logic = _classes(module_tree)["AutoCTVLogic"]
    (method,) = [f for f in logic.body if getattr(f, "name", "") == "save_undo_state"]
    calls = [
        node.func.attr
        for node in ast.walk(method)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    ]
    order = [calls.index(name) for name in ("selectParameterNode", "setSegmentationNode")]
    assert order == sorted(order) and "saveStateForUndo" in calls
    source = ast.unparse(method)
    assert source.index("setSegmentationNode") < source.index("saveStateForUndo")


# --------------------------------------------------------------------------- CMake


def test_module_cmake_lists_every_script_and_resource():
    text = MODULE_CMAKE.read_text(encoding="utf-8")
    scripts = [
        s.replace("${MODULE_NAME}", "AutoCTV") for s in _cmake_set(text, "MODULE_PYTHON_SCRIPTS")
    ]
    resources = [
        r.replace("${MODULE_NAME}", "AutoCTV") for r in _cmake_set(text, "MODULE_PYTHON_RESOURCES")
    ]
    present = _files_under(SLICER_MODULE_DIR)
    present_scripts = [f for f in present if f.endswith(".py")]
    present_resources = [f for f in present if f.startswith("Resources/")]
    assert sorted(scripts) == present_scripts
    assert sorted(resources) == present_resources
    assert "WITH_GENERIC_TESTS" in text
    assert re.search(r"slicer_add_python_unittest\(\s*SCRIPT\s+\$\{MODULE_NAME\}\.py\s*\)", text)


def test_module_cmake_ships_the_library_and_the_bundled_models():
    text = MODULE_CMAKE.read_text(encoding="utf-8")
    patterns = _cmake_globs(text)
    assert "AutoCTVLib/*.py" in patterns
    assert "Resources/Models/*.safetensors" in patterns and "Resources/Models/*.json" in patterns
    assert re.search(r"GLOB_RECURSE\s+AUTOCTVLIB_PYTHON_SCRIPTS", text)  # sub-packages too
    library = [f"AutoCTVLib/{f}" for f in _files_under(REPO / "AutoCTVLib") if f.endswith(".py")]
    assert len(library) > 30
    for path in library:  # GLOB_RECURSE: the pattern's * also crosses folders
        assert fnmatch.fnmatch(path, "AutoCTVLib/*.py")
    assert '"AutoCTVLib/py.typed;${AUTOCTV_BUNDLED_MODEL_FILES}"' in text
    models = REPO / "Resources" / "Models"
    for path in sorted(models.glob("*")) if models.is_dir() else []:
        if path.name.startswith(".") or path.suffix == ".md":
            continue
        relative = f"Resources/Models/{path.name}"
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), f"{relative} is not shipped"
        if path.suffix == ".safetensors":
            assert path.with_suffix(".json").is_file(), f"{path.name} has no model card"


def test_top_level_cmake_describes_the_extension():
    text = TOP_CMAKE.read_text(encoding="utf-8")
    values = dict(re.findall(r'set\((EXTENSION_\w+)\s+"([^"]*)"\)', text))
    for key in (
        "EXTENSION_HOMEPAGE",
        "EXTENSION_CATEGORY",
        "EXTENSION_CONTRIBUTORS",
        "EXTENSION_DESCRIPTION",
        "EXTENSION_ICONURL",
        "EXTENSION_SCREENSHOTURLS",
        "EXTENSION_DEPENDS",
    ):
        assert values.get(key), f"{key} is missing or empty"
    assert values["EXTENSION_DEPENDS"] == "PyTorch"
    assert "not for clinical use" in values["EXTENSION_DESCRIPTION"]
    assert values["EXTENSION_ICONURL"].endswith("AutoCTV/Resources/Icons/AutoCTV.png")
    assert "add_subdirectory(AutoCTV)" in text
    assert "include(${Slicer_EXTENSION_CPACK})" in text


def test_icon_is_a_128_pixel_png():
    header = ICON_FILE.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (128, 128)


# --------------------------------------------------------------------------- descriptions


def _s4ext() -> dict[str, str]:
    fields = {}
    for line in (REPO / "AutoCTV.s4ext").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            fields[key] = value.strip()
    return fields


def test_s4ext_agrees_with_cmake():
    fields = _s4ext()
    cmake = dict(re.findall(r'set\((EXTENSION_\w+)\s+"([^"]*)"\)', TOP_CMAKE.read_text("utf-8")))
    for key in ("scm", "scmurl", "depends", "category", "iconurl", "homepage", "description"):
        assert fields.get(key), f"s4ext field {key} is missing"
    assert fields["scm"] == "git"
    assert fields["depends"] == cmake["EXTENSION_DEPENDS"]
    assert fields["category"] == cmake["EXTENSION_CATEGORY"]
    assert fields["iconurl"] == cmake["EXTENSION_ICONURL"]
    assert fields["homepage"] == cmake["EXTENSION_HOMEPAGE"]
    assert fields.get("status") == cmake.get("EXTENSION_STATUS")


def test_catalog_entry_follows_the_schema():
    entry = json.loads((REPO / "AutoCTV.json").read_text(encoding="utf-8"))
    assert entry["$schema"] == CATALOG_SCHEMA_URL
    assert CATALOG_REQUIRED <= set(entry)
    assert set(entry) <= CATALOG_FIELDS, f"fields outside the schema: {set(entry) - CATALOG_FIELDS}"
    assert entry["build_dependencies"] == ["PyTorch"]
    assert isinstance(entry["tier"], int) and 1 <= entry["tier"] <= 5
    assert entry.get("scm_type", "git") in ("git", "local")
    fields = _s4ext()
    assert entry["scm_url"] == fields["scmurl"]
    assert entry["category"] == fields["category"]


def test_licence_is_mit():
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "MIT License" in text and "Permission is hereby granted" in text


def test_screenshot_exists_and_every_description_points_to_it():
    cmake = dict(re.findall(r'set\((EXTENSION_\w+)\s+"([^"]*)"\)', TOP_CMAKE.read_text("utf-8")))
    url = cmake["EXTENSION_SCREENSHOTURLS"]
    assert _s4ext()["screenshoturls"] == url
    prefix = "https://raw.githubusercontent.com/autoctv/SlicerAutoCTV/main/"
    assert url.startswith(prefix)
    screenshot = REPO / url.removeprefix(prefix)
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 300_000
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"]({screenshot.relative_to(REPO).as_posix()})" in readme
    assert "not a screenshot of the Slicer application" in readme  # honestly captioned


def test_minimum_slicer_version_agrees_everywhere():
    text = MODULE_FILE.read_text(encoding="utf-8")
    minimum = re.search(r'^MINIMUM_SLICER = "([\d.]+)"', text, re.M).group(1)
    assert minimum == "5.8"
    phrase = f"Slicer {minimum} or newer"
    assert "MINIMUM_SLICER} or newer" in text  # the help text
    cmake = dict(re.findall(r'set\((EXTENSION_\w+)\s+"([^"]*)"\)', TOP_CMAKE.read_text("utf-8")))
    for where, content in (
        ("CMakeLists.txt", cmake["EXTENSION_DESCRIPTION"]),
        ("AutoCTV.s4ext", _s4ext()["description"]),
        ("README.md", (REPO / "README.md").read_text(encoding="utf-8")),
        ("docs/slicer.md", (REPO / "docs" / "slicer.md").read_text(encoding="utf-8")),
    ):
        assert phrase in content.replace("**", ""), f"{where} does not say '{phrase}'"
        for other in ("5.6", "5.7"):
            assert f"Slicer {other} or newer" not in content
