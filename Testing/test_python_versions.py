"""The core's sources stay within Python 3.9 (Slicer 5.8 runs CPython 3.9.10).

Three checks: a scan of the syntax tree for the 3.10+ features that compile on newer Pythons but
fail at run time on 3.9 (``zip(strict=)``, runtime ``X | Y`` unions, ``itertools.pairwise``); a
byte-compile of AutoCTV/ and AutoCTVLib/ by a real CPython 3.9 (found through pyenv, or this
interpreter when it is 3.9); and an import of every AutoCTVLib module, where only the optional
heavy packages (torch and friends) may be missing.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import AutoCTVLib

ROOT = Path(__file__).resolve().parents[1]
CORE_FOLDERS = ("AutoCTV", "AutoCTVLib")
#: Packages the core may import at module level that the light stacks do not install.
OPTIONAL_PACKAGES = {"torch", "tqdm", "matplotlib", "itk"}
_BUILTIN_TYPES = {"int", "float", "str", "bytes", "bool", "list", "dict", "tuple", "set", "type"}


def _sources(folders: tuple[str, ...] = (*CORE_FOLDERS, "Testing")) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def _looks_like_a_type(node: ast.AST) -> bool:
    """A heuristic for the operands of a runtime union: None, a builtin type, a CamelCase name
    (``os.PathLike``, ``torch.Tensor``), a subscripted generic; ALL_CAPS flags are not types."""
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _looks_like_a_type(node.left) or _looks_like_a_type(node.right)
    if isinstance(node, ast.Subscript):
        return True
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
    return name in _BUILTIN_TYPES or (name[:1].isupper() and not name.isupper())


def python39_problems(path: Path) -> list[str]:
    """``file:line: what`` for each construct in ``path`` that fails on Python 3.9."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, str(path))
    lazy_annotations = "from __future__ import annotations" in source
    in_annotation: set[int] = set()
    for node in ast.walk(tree):
        for field in ("annotation", "returns"):
            annotation = getattr(node, field, None)
            if annotation is not None:
                in_annotation.update(id(part) for part in ast.walk(annotation))
    problems: list[str] = []
    reported: set[int] = set()
    where = f"{path.relative_to(ROOT) if ROOT in path.parents else path.name}:"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "zip":
            if any(keyword.arg == "strict" for keyword in node.keywords):
                problems.append(f"{where}{node.lineno}: zip(strict=) needs Python 3.10")
        elif isinstance(node, ast.Attribute) and node.attr == "pairwise":
            problems.append(f"{where}{node.lineno}: itertools.pairwise needs Python 3.10")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            evaluated = id(node) not in in_annotation or not lazy_annotations
            if id(node) in reported or not evaluated:
                continue
            if _looks_like_a_type(node.left) and _looks_like_a_type(node.right):
                reported.update(id(part) for part in ast.walk(node))  # report a chain once
                problems.append(
                    f"{where}{node.lineno}: runtime union {ast.unparse(node)} needs Python 3.10 "
                    "(use typing.Union/Optional)"
                )
    return problems


def test_sources_use_nothing_newer_than_python39() -> None:
    problems = [problem for path in _sources() for problem in python39_problems(path)]
    assert problems == []


def test_the_scan_finds_what_python39_lacks(tmp_path: Path) -> None:
    """The scan itself can fail: each construct it looks for is reported, annotations and
    flag unions are not."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from __future__ import annotations\n"
        "import itertools, os, re\n"
        "Alias = str | os.PathLike[str] | None\n"
        "FLAGS = re.IGNORECASE | re.MULTILINE\n"
        "def f(a: int | None) -> list[int] | None:\n"
        "    pairs = list(zip(a, a, strict=True))\n"
        "    return list(itertools.pairwise(pairs))\n",
        encoding="utf-8",
    )
    found = sorted(python39_problems(sample))
    assert [line.split(": ")[0] for line in found] == ["sample.py:3", "sample.py:6", "sample.py:7"]
    assert "runtime union" in found[0] and "zip(strict=)" in found[1] and "pairwise" in found[2]


def _version_key(path: Path) -> tuple[int, ...]:
    release = path.parents[1].name  # .../versions/3.9.18/bin/python3.9
    return tuple(int(part) for part in re.findall(r"\d+", release))


def find_python39() -> str | None:
    """A CPython 3.9 executable: this interpreter, else the newest one pyenv installed."""
    if sys.version_info[:2] == (3, 9):
        return sys.executable
    roots = []
    if shutil.which("pyenv"):
        result = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip():
            roots.append(Path(result.stdout.strip()))
    roots.append(Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")))
    for root in roots:
        found = [
            path
            for path in (root / "versions").glob("3.9.*/bin/python3.9")
            if re.fullmatch(r"3\.9\.\d+", path.parents[1].name) and os.access(path, os.X_OK)
        ]
        if found:
            return str(max(found, key=_version_key))
    return None


_COMPILE_ALL = """
import pathlib, sys
count, errors = 0, []
for folder in sys.argv[1:]:
    for path in sorted(pathlib.Path(folder).rglob("*.py")):
        count += 1
        try:
            compile(path.read_text(encoding="utf-8"), str(path), "exec", dont_inherit=True)
        except SyntaxError as error:
            errors.append(f"{path}:{error.lineno}: {error.msg}")
print("\\n".join(errors))
print(f"compiled {count} files with Python {sys.version.split()[0]}, {len(errors)} errors")
sys.exit(1 if errors else 0)
"""


def test_core_byte_compiles_under_python39() -> None:
    python = find_python39()
    if python is None:
        pytest.skip("no CPython 3.9 found (this interpreter, `pyenv root`/versions, ~/.pyenv)")
    folders = [str(ROOT / folder) for folder in CORE_FOLDERS]
    result = subprocess.run(
        [python, "-c", _COMPILE_ALL, *folders], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "with Python 3.9." in result.stdout and ", 0 errors" in result.stdout
    count = int(re.search(r"compiled (\d+) files", result.stdout).group(1))  # type: ignore[union-attr]
    assert count == len(_sources(CORE_FOLDERS))


def test_every_core_module_imports() -> None:
    """Every AutoCTVLib module imports; only the optional heavy packages may be missing."""
    missing_optional: dict[str, str] = {}
    failures = []
    for module in pkgutil.walk_packages(AutoCTVLib.__path__, "AutoCTVLib."):
        try:
            importlib.import_module(module.name)
        except ModuleNotFoundError as error:
            top = (error.name or "").split(".")[0]
            if top in OPTIONAL_PACKAGES:
                missing_optional[module.name] = top
            else:
                failures.append(f"{module.name}: {error}")
        except Exception as error:  # a 3.9 runtime failure shows up as TypeError and the like
            failures.append(f"{module.name}: {type(error).__name__}: {error}")
    assert failures == []
    for module_name, package in missing_optional.items():
        assert importlib.util.find_spec(package) is None, f"{module_name} failed on {package}"
    # The I/O layer and this compatibility module never need torch.
    assert not any(
        name.startswith(("AutoCTVLib.io", "AutoCTVLib.compat")) for name in missing_optional
    )
