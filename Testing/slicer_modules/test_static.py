"""Static checks of the Slicer modules, the shared Qt panel and the extension's CMake files.

The Qt shells import ``qt``, ``ctk`` and the Slicer app, which do not exist outside Slicer, so
nothing here imports them: sources are compiled, parsed with ``ast``, the ``.ui`` file with
``xml.etree``, and the CMake files with a small reader of ``set``/``list(APPEND)`` and the
packaging macros (plus, when ``cmake`` is installed, a real configure against a stand-in
Slicer).
"""

from __future__ import annotations

import ast
import glob
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = ("BrainMetSeg", "LungSeg", "OvarianSeg")
PACKAGE = REPO / "unetseg"
GUI = PACKAGE / "gui"
PANEL_UI = GUI / "Resources" / "UI" / "SegmentationPanel.ui"
PARAMETERS = GUI / "parameters.py"
SLICER_FILES = sorted([REPO / m / f"{m}.py" for m in MODULES] + list(GUI.glob("*.py")))
#: Packages that a fresh Slicer lacks until the user agrees to install them: the modules must
#: load without them (they are imported inside functions).
DEFERRED_PACKAGES = {"torch", "jsonschema", "safetensors", "nibabel", "highdicom", "yaml", "monai"}
INSTALLERS = {"pip_install", "pip_ensure", "installTorch"}
REQUIRED_EXTENSION_VARIABLES = (
    "EXTENSION_HOMEPAGE",
    "EXTENSION_CATEGORY",
    "EXTENSION_CONTRIBUTORS",
    "EXTENSION_DESCRIPTION",
    "EXTENSION_ICONURL",
    "EXTENSION_SCREENSHOTURLS",
    "EXTENSION_DEPENDS",
)


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO)) for p in paths]


# --- Python sources ---------------------------------------------------------------------------


def _interpreter(version: tuple[int, int]) -> str | None:
    """A working Python executable of ``version`` (pyenv installs, then ``python3.X`` on PATH;
    pyenv shims on PATH may exist without working, so each candidate is run once)."""
    major, minor = version
    pyenv = glob.glob(os.path.expanduser(f"~/.pyenv/versions/{major}.{minor}.*/bin/python"))
    candidates = [*sorted(pyenv, reverse=True), shutil.which(f"python{major}.{minor}")]
    probe = "import sys; print(*sys.version_info[:2])"
    for candidate in filter(None, candidates):
        run = subprocess.run([candidate, "-c", probe], capture_output=True, text=True)
        if run.returncode == 0 and run.stdout.split() == [str(major), str(minor)]:
            return candidate
    return None


@pytest.mark.parametrize("version", [(3, 11), (3, 12)], ids=["py3.11", "py3.12"])
def test_sources_compile(version):
    """Every module and panel file compiles for Python 3.11 and 3.12 (Slicer 5.10+ bundles 3.12).
    The other version's interpreter runs ``compile()`` in a subprocess (no .pyc is written); the
    test is skipped when that interpreter is not installed."""
    if sys.version_info[:2] == version:
        for path in SLICER_FILES:
            compile(path.read_text(encoding="utf-8"), str(path), "exec")
        return
    python = _interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version[0]}.{version[1]} interpreter found")
    script = (
        "import sys\nfor p in sys.argv[1:]: compile(open(p, encoding='utf-8').read(), p, 'exec')"
    )
    run = subprocess.run(
        [python, "-c", script, *map(str, SLICER_FILES)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


def _importTimeNodes(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Nodes executed when a module is imported: simple statements, class bodies, decorators,
    default values and the headers and blocks of compound statements; not function bodies nor
    ``if TYPE_CHECKING:`` blocks."""
    for statement in body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from statement.decorator_list
            yield from statement.args.defaults
        elif isinstance(statement, ast.ClassDef):
            yield from statement.decorator_list
            yield from statement.bases
            yield from _importTimeNodes(statement.body)
        elif isinstance(statement, ast.If) and "TYPE_CHECKING" in ast.unparse(statement.test):
            yield from _importTimeNodes(statement.orelse)
        elif isinstance(statement, ast.If | ast.For | ast.While | ast.With | ast.Try):
            yield from filter(None, (getattr(statement, f, None) for f in ("test", "iter")))
            yield from (item.context_expr for item in getattr(statement, "items", []))
            for block in ("body", "orelse", "finalbody"):
                yield from _importTimeNodes(getattr(statement, block, []))
            for handler in getattr(statement, "handlers", []):
                yield from _importTimeNodes(handler.body)
        else:
            yield statement


def _importedModules(path: Path) -> set[str]:
    """Absolute names of the modules a file imports at import time."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    relative = path.relative_to(REPO).with_suffix("")
    parts = list(relative.parts[:-1] if path.name == "__init__.py" else relative.parts)
    names = set()
    for node in _importTimeNodes(tree.body):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # Level 1 is the file's package: the folder of a module, a package's own folder.
            keep = len(parts) - node.level + (path.name == "__init__.py")
            base = parts[:keep] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _moduleFile(name: str) -> Path | None:
    path = REPO.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _importClosure(path: Path) -> dict[str, str]:
    """Third-party top-level packages imported (transitively through unetseg modules and their
    parent packages) when ``path`` is imported -> the unetseg file that imports each."""
    found: dict[str, str] = {}
    pending, seen = [path], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in _importedModules(current):
            if name.split(".")[0] != "unetseg":
                found.setdefault(name.split(".")[0], str(current.relative_to(REPO)))
                continue
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                file = _moduleFile(".".join(parts[:depth]))
                if file is not None:
                    pending.append(file)
    return found


@pytest.mark.parametrize("path", SLICER_FILES, ids=_ids(SLICER_FILES))
def test_loads_without_deferred_packages(path):
    """A fresh Slicer has no torch, jsonschema or safetensors: importing a module or panel file
    must not need them (directly or through the unetseg modules it imports)."""
    closure = _importClosure(path)
    offending = {name: closure[name] for name in DEFERRED_PACKAGES & closure.keys()}
    assert not offending, f"imported at load time (package: importing file): {offending}"


@pytest.mark.parametrize("path", SLICER_FILES, ids=_ids(SLICER_FILES))
def test_no_install_at_import_time(path):
    """pip/torch installation happens only inside functions (after asking the user)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [
        f"line {node.lineno}: {ast.unparse(node.func)}"
        for statement in _importTimeNodes(tree.body)
        for node in ast.walk(statement)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) in INSTALLERS
    ]
    assert not calls


@pytest.mark.parametrize("module", MODULES)
def test_module_file_follows_template(module):
    """Short entry file with the four classes Slicer looks up by name and translatable
    strings."""
    path = REPO / module / f"{module}.py"
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 100
    tree = ast.parse(source)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    expected = {
        module: "ScriptedLoadableModule",
        f"{module}Widget": "SegmentationModuleWidget",
        f"{module}Logic": "SegmentationModuleLogic",
        f"{module}Test": "ScriptedLoadableModuleTest",
    }
    for name, base in expected.items():
        assert name in classes, f"{module}.py has no class {name}"
        assert base in [ast.unparse(b) for b in classes[name].bases]
    imports = [ast.unparse(node) for node in tree.body if isinstance(node, ast.ImportFrom)]
    assert "from slicer.i18n import tr as _" in imports
    translated = [
        ast.unparse(node.targets[0])
        for node in ast.walk(classes[module])
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and ast.unparse(node.value.func) == "_"
    ]
    for attribute in ("title", "helpText", "acknowledgementText"):
        assert f"self.parent.{attribute}" in translated, f"{attribute} is not set with _()"


# --- The panel (.ui) and the parameter node ---------------------------------------------------


def _uiFiles() -> list[Path]:
    return sorted([*GUI.rglob("*.ui"), *(p for m in MODULES for p in (REPO / m).rglob("*.ui"))])


@pytest.mark.parametrize("path", _uiFiles(), ids=_ids(_uiFiles()))
def test_ui_parses(path):
    root = ET.parse(path).getroot()
    assert root.tag == "ui"
    assert root.find("widget") is not None


def _uiWidgets(path: Path) -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(path).getroot().iter("widget")}


def _uiReferences(path: Path) -> set[str]:
    """Names used as ``self.ui.<name>`` or ``ui.<name>``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute):
            owner = node.value
            if (isinstance(owner, ast.Attribute) and owner.attr == "ui") or (
                isinstance(owner, ast.Name) and owner.id == "ui"
            ):
                names.add(node.attr)
    return names


def test_code_uses_only_widgets_of_the_panel():
    widgets = _uiWidgets(PANEL_UI)
    used = {name: path for path in SLICER_FILES for name in _uiReferences(path)}
    assert used, "no self.ui.<widget> reference found: the reader is broken"
    unknown = {name: str(path.relative_to(REPO)) for name, path in used.items()}
    unknown = {name: where for name, where in unknown.items() if name not in widgets}
    assert not unknown, f"widgets missing from {PANEL_UI.name}: {unknown}"


def _parameterClass() -> ast.ClassDef:
    tree = ast.parse(PARAMETERS.read_text(encoding="utf-8"))
    return next(
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and "parameterNodeWrapper" in [ast.unparse(d) for d in node.decorator_list]
    )


def _parameterFields() -> dict[str, str]:
    """Field name -> annotation source of the ``@parameterNodeWrapper`` class."""
    return {
        node.target.id: ast.unparse(node.annotation)
        for node in _parameterClass().body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


def _internalParameters() -> tuple[str, ...]:
    tree = ast.parse(PARAMETERS.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "INTERNAL_PARAMETERS":
            return tuple(ast.literal_eval(node.value))
    return ()


def _boundWidgets() -> dict[str, ET.Element]:
    """SlicerParameterName -> widget, from the panel."""
    bound: dict[str, ET.Element] = {}
    for widget in _uiWidgets(PANEL_UI).values():
        for prop in widget.findall("property[@name='SlicerParameterName']"):
            parameter = prop.findtext("string")
            assert parameter not in bound, f"{parameter} is bound to two widgets"
            bound[parameter] = widget
    return bound


def test_every_parameter_is_bound_or_documented_internal():
    fields = _parameterFields()
    expected = {"modelId", "device", "overlap", "fast", "outputSegmentation", "replaceExisting"}
    assert expected <= set(fields)
    bound = _boundWidgets()
    internal = set(_internalParameters())
    assert not (set(bound) - set(fields)), "SlicerParameterName that is not a parameter"
    assert not (internal & set(bound)), "a parameter is both bound and internal"
    assert set(fields) == set(bound) | internal, "parameters neither bound nor internal"
    docstring = ast.get_docstring(_parameterClass()) or ""
    source = PARAMETERS.read_text(encoding="utf-8")
    for name in internal:
        assert name in docstring
        assert re.search(rf"#.*{name}", source), f"{name} is not explained in a comment"


def _widgetFitsType(widget: ET.Element, annotation: str) -> bool:
    """Whether Slicer's parameterNodeWrapper can connect this widget class to this type."""
    widgetClass = widget.get("class")
    if annotation.startswith("vtkMRML"):
        nodeTypes = [
            s.text for s in widget.iterfind("property[@name='nodeTypes']/stringlist/string")
        ]
        return widgetClass == "qMRMLNodeComboBox" and nodeTypes in ([], [annotation])
    if annotation == "bool":
        return widgetClass in ("QCheckBox", "QPushButton")
    if annotation.startswith("Annotated[float"):
        bounded = "WithinRange" in annotation
        return widgetClass == "QDoubleSpinBox" or (widgetClass == "ctkSliderWidget" and bounded)
    if annotation.startswith("Annotated[str") and "Choice" in annotation:
        return widgetClass == "QComboBox"
    if annotation == "str":
        return widgetClass in ("QLineEdit", "QTextEdit")
    return False


def test_bound_widgets_fit_parameter_types():
    fields = _parameterFields()
    misfits = {
        name: (widget.get("class"), fields[name])
        for name, widget in _boundWidgets().items()
        if not _widgetFitsType(widget, fields[name])
    }
    assert not misfits


def test_advanced_options_sit_in_the_advanced_section():
    """Device, overlap and the approximate "fast" mode are advanced options (collapsed by
    default); "fast" is off unless the user ticks it."""
    advanced = _uiWidgets(PANEL_UI)["advancedCollapsibleButton"]
    inside = {w.get("name") for w in advanced.iter("widget")}
    bound = _boundWidgets()
    for parameter in ("device", "overlap", "fast"):
        assert bound[parameter].get("name") in inside, f"{parameter} is not in Advanced"
    fast = bound["fast"]
    assert fast.findtext("property[@name='text']/string") == "Fast (approximate)"
    assert "approximate" in (fast.findtext("property[@name='toolTip']/string") or "")
    assert fast.find("property[@name='checked']") is None
    assert _parameterDefaults()["fast"] == "False"


def _parameterDefaults() -> dict[str, str]:
    """Field name -> default value source of the ``@parameterNodeWrapper`` class."""
    return {
        node.target.id: ast.unparse(node.value)
        for node in _parameterClass().body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and node.value is not None
    }


def test_panel_has_one_input_selector_per_slot():
    tree = ast.parse(PARAMETERS.read_text(encoding="utf-8"))
    slots = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "INPUT_SLOTS"
    )
    widgetTree = ast.parse((GUI / "moduleWidget.py").read_text(encoding="utf-8"))
    nonImages = next(
        ast.literal_eval(node.value)
        for node in widgetTree.body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "NON_IMAGE_VOLUMES"
    )
    fields = _parameterFields()
    widgets = _uiWidgets(PANEL_UI)
    for slot in range(slots):
        assert fields[f"input{slot}"] == "vtkMRMLScalarVolumeNode"
        assert f"input{slot}Label" in widgets
        selector = widgets[f"input{slot}Selector"]
        hidden = selector.iterfind("property[@name='hideChildNodeTypes']/stringlist/string")
        assert tuple(s.text for s in hidden) == nonImages, "selectors and auto-fill disagree"


# --- CMake ------------------------------------------------------------------------------------


def _cmakeCommands(text: str) -> list[tuple[str, list[str]]]:
    """``(command, arguments)`` in order; quoted arguments keep their text (without quotes),
    comments are dropped. Enough for the plain CMake of this project (no bracket syntax)."""
    commands = []
    position = 0
    command = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(")
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        if text[position] == "#":
            end = text.find("\n", position)
            position = len(text) if end < 0 else end
            continue
        match = command.match(text, position)
        assert match, f"unexpected CMake text at {text[position : position + 40]!r}"
        position = match.end()
        arguments, depth = [], 0
        while True:
            char = text[position]
            if char == '"':
                end = text.index('"', position + 1)
                arguments.append(text[position + 1 : end])
                position = end + 1
            elif char == "#":
                position = text.index("\n", position)
            elif char == "(":
                depth += 1
                position += 1
            elif char == ")":
                position += 1
                if depth == 0:
                    break
                depth -= 1
            elif char.isspace():
                position += 1
            else:
                token = re.match(r'[^\s()"#]+', text[position:]).group(0)
                arguments.append(token)
                position += len(token)
        commands.append((match.group(1).lower(), arguments))
    return commands


def _evaluate(path: Path) -> tuple[dict[str, list[str]], list[tuple[str, list[str]]]]:
    """Variables after ``set``/``list(APPEND)`` (unknown variables expand to nothing) and the
    other commands with their arguments expanded and split on ``;``."""
    variables: dict[str, list[str]] = {}

    def expand(argument: str) -> list[str]:
        text = re.sub(r"\$\{(\w+)\}", lambda m: ";".join(variables.get(m.group(1), [])), argument)
        return [item for item in text.split(";") if item]

    calls = []
    for name, arguments in _cmakeCommands(path.read_text(encoding="utf-8")):
        values = [item for argument in arguments for item in expand(argument)]
        if name == "set":
            variables[values[0]] = values[1:]
        elif name == "list" and values[:1] == ["APPEND"]:
            variables.setdefault(values[1], []).extend(values[2:])
        else:
            calls.append((name, values))
    return variables, calls


_MACRO_KEYWORDS = {
    "NAME",
    "SCRIPTS",
    "RESOURCES",
    "TARGET_NAME",
    "SOURCE_DIR",
    "DESTINATION_DIR",
    "INSTALL_DIR",
    "WITH_GENERIC_TESTS",
    "WITH_SUBDIR",
    "VERBOSE",
    "NO_INSTALL_SUBDIR",
    "GLOBAL_TARGET",
}


def _keywordArguments(values: list[str]) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    current = None
    for value in values:
        if value in _MACRO_KEYWORDS:
            current = parsed.setdefault(value, [])
        elif current is not None:
            current.append(value)
    return parsed


def _packagedFiles(folder: Path, macro: str) -> set[str]:
    """SCRIPTS and RESOURCES of the packaging macro call in ``folder/CMakeLists.txt``."""
    _, calls = _evaluate(folder / "CMakeLists.txt")
    found = [values for name, values in calls if name == macro.lower()]
    assert len(found) == 1, f"{folder.name}/CMakeLists.txt must call {macro} once"
    arguments = _keywordArguments(found[0])
    return set(arguments.get("SCRIPTS", [])) | set(arguments.get("RESOURCES", []))


def _sourceFiles(folder: Path) -> set[str]:
    """Files that must be packaged: all but CMake files, byte code and hidden files."""
    return {
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file()
        and path.name != "CMakeLists.txt"
        and "__pycache__" not in path.parts
        and path.suffix != ".pyc"
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    }


PACKAGING = [(m, "slicerMacroBuildScriptedModule") for m in MODULES] + [
    ("unetseg", "ctkMacroCompilePythonScript")
]


@pytest.mark.parametrize(("folder", "macro"), PACKAGING, ids=[f for f, _ in PACKAGING])
def test_every_file_is_packaged(folder, macro):
    """A file not listed in SCRIPTS or RESOURCES is not in the extension package, and a listed
    file that does not exist stops the CMake configure."""
    listed = _packagedFiles(REPO / folder, macro)
    present = _sourceFiles(REPO / folder)
    assert not sorted(present - listed), f"not listed in {folder}/CMakeLists.txt"
    assert not sorted(listed - present), f"listed in {folder}/CMakeLists.txt but missing"


@pytest.mark.parametrize("module", MODULES)
def test_module_cmake_registers_its_test(module):
    variables, calls = _evaluate(REPO / module / "CMakeLists.txt")
    assert variables["MODULE_NAME"] == [module]
    build = next(values for name, values in calls if name == "slicermacrobuildscriptedmodule")
    assert _keywordArguments(build)["NAME"] == [module]
    tests = [values for name, values in calls if name == "slicer_add_python_unittest"]
    assert tests == [["SCRIPT", f"{module}.py"]]
    assert ("if", ["BUILD_TESTING"]) in calls


def test_top_cmake_is_a_slicer_extension():
    variables, calls = _evaluate(REPO / "CMakeLists.txt")
    assert calls[0][0] == "cmake_minimum_required"
    assert ("project", ["UNetSeg"]) in calls
    for name in REQUIRED_EXTENSION_VARIABLES:
        assert variables.get(name), f"{name} is missing or empty"
    assert variables["EXTENSION_CATEGORY"] == ["Segmentation"]
    assert "PyTorch" in " ".join(variables["EXTENSION_DEPENDS"]).split()
    for url in ("EXTENSION_HOMEPAGE", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert all(u.startswith("https://") for u in " ".join(variables[url]).split())
    names = [name for name, _ in calls]
    assert ("find_package", ["Slicer", "REQUIRED"]) in calls
    subdirectories = [values[0] for name, values in calls if name == "add_subdirectory"]
    assert subdirectories == ["unetseg", *MODULES]
    includes = [values for name, values in calls if name == "include"]
    assert includes == [[], [], []], "include(${Slicer_...}) targets are Slicer variables"
    assert names.index("find_package") < names.index("add_subdirectory")
    raw = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    for variable in (
        "Slicer_USE_FILE",
        "Slicer_EXTENSION_GENERATE_CONFIG",
        "Slicer_EXTENSION_CPACK",
    ):
        assert f"include(${{{variable}}})" in raw


# A stand-in for Slicer's CMake package: records what the macros would copy and install.
_FAKE_SLICER = r"""
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer/qt-scripted-modules)
set(BUILD_TESTING ON)
file(WRITE ${CMAKE_BINARY_DIR}/copied.txt "")
macro(ctkMacroCompilePythonScript)
  cmake_parse_arguments(CTK "NO_INSTALL_SUBDIR;GLOBAL_TARGET"
    "TARGET_NAME;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR" "SCRIPTS;RESOURCES" ${ARGN})
  if(NOT CTK_INSTALL_DIR OR CTK_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "bad ctkMacroCompilePythonScript call: ${ARGN}")
  endif()
  foreach(file ${CTK_SCRIPTS} ${CTK_RESOURCES})
    if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${file})
      message(FATAL_ERROR "missing ${file}")
    endif()
    file(RELATIVE_PATH target ${CMAKE_BINARY_DIR} ${CTK_DESTINATION_DIR}/${file})
    file(APPEND ${CMAKE_BINARY_DIR}/copied.txt "${target}\n")
  endforeach()
endmacro()
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES"
    ${ARGN})
  if(MY_UNPARSED_ARGUMENTS OR NOT MY_NAME)
    message(FATAL_ERROR "bad slicerMacroBuildScriptedModule call: ${ARGN}")
  endif()
  ctkMacroCompilePythonScript(TARGET_NAME ${MY_NAME} SCRIPTS "${MY_SCRIPTS}"
    RESOURCES "${MY_RESOURCES}"
    DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}
    INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR} NO_INSTALL_SUBDIR)
endmacro()
function(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "SCRIPT" "SLICER_ARGS" ${ARGN})
  if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${MY_SCRIPT})
    message(FATAL_ERROR "missing test script ${MY_SCRIPT}")
  endif()
endfunction()
"""


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cmake_configures_and_lays_out_the_package(tmp_path):
    """Configure the extension with real CMake against a stand-in Slicer: the modules land in
    qt-scripted-modules/ and the whole unetseg package in qt-scripted-modules/unetseg/, so
    ``import unetseg`` works from the modules."""
    fake = tmp_path / "Slicer"
    fake.mkdir()
    (fake / "SlicerConfig.cmake").write_text(_FAKE_SLICER)
    (fake / "UseSlicer.cmake").write_text("")
    build = tmp_path / "build"
    run = subprocess.run(
        ["cmake", "-S", str(REPO), "-B", str(build), f"-DSlicer_DIR={fake}"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    copied = set((build / "copied.txt").read_text().split())
    lib = "lib/Slicer/qt-scripted-modules"
    expected = {f"{lib}/unetseg/{f}" for f in _sourceFiles(PACKAGE)}
    for module in MODULES:
        expected |= {f"{lib}/{f}" for f in _sourceFiles(REPO / module)}
    assert sorted(expected - copied) == []
    assert sorted(copied - expected) == []
