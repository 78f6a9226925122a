"""The layout's rules, read from the source (README "Architecture"): each fails naming the
offending import, and each is shown to fail on a violation planted in a copy of the package.

    store/     numpy and the standard library: the run directory and the files attnviz writes
    analysis/  numpy only: tasks, metrics, verdict, inspection statistics (reads store/)
    keras/     everything that imports Keras or TensorFlow
    views/     what a person sees
    cli.py     options -> one core call -> one view
"""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import attnviz

PACKAGE = Path(attnviz.__file__).parent
DRAWING = ("rich", "typer", "matplotlib", "imageio", "PIL")
FRAMEWORKS = ("keras", "tensorflow", "jax", "keras_hub")

# Below the CLI, views are imported only here, each for the reason given.
VIEWS_BELOW_CLI = {
    ("attnviz.keras.tensorboard", "attnviz.views.colors"):
        "TensorBoard's attention images are drawn in the GIF's colours",
}
# The one module that reads Keras' private attributes (it says which versions it was checked
# against), and private names of other libraries that have no public way to the same end.
KERAS_INTERNALS = "attnviz.keras.internals"
OTHER_PRIVATE = {
    ("attnviz.views.usage", "typer._click"): "Click's exception classes, as typer ships them",
    ("attnviz.keras.training", "os._exit"): "leaves at once after a second Ctrl+C",
    ("attnviz.cli", "os._exit"): "one of several training processes that fails leaves at "
                                 "once, past JAX's shutdown barrier",
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    line: int
    target: str  # the imported module, dotted
    names: tuple[str, ...]  # the names of a `from` import

    def __str__(self) -> str:
        what = f"from {self.target} import {', '.join(self.names)}" if self.names else (
            f"import {self.target}")
        return f"{self.module}:{self.line}: {what}"


def modules(package: Path) -> dict[str, ast.Module]:
    """Every module of the package, by dotted name, parsed."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def imports(package: Path) -> list[Import]:
    """Every import statement, lazy ones inside functions included. `from attnviz.views
    import heatmap` imports the module attnviz.views.heatmap, and counts as that."""
    found = []
    trees = modules(package)
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [Import(name, node.lineno, alias.name, ()) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:  # each rule reads absolute
                found.append(Import(name, node.lineno, "." * node.level + (node.module or ""),
                                    tuple(alias.name for alias in node.names)))
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = tuple(alias.name for alias in node.names)
                submodules = [n for n in names if f"{node.module}.{n}" in trees]
                if len(submodules) < len(names):
                    found.append(Import(name, node.lineno, node.module,
                                        tuple(n for n in names if n not in submodules)))
                found += [Import(name, node.lineno, f"{node.module}.{n}", ()) for n in submodules]
    return found


def _in(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def numpy_only_violations(package: Path) -> list[str]:
    """store/ and analysis/ import no framework and draw nothing; store/ sits below
    analysis/, and neither reaches the Keras side or the views."""
    bad = []
    for imp in imports(package):
        if _in(imp.module, "attnviz.store"):
            banned = (*FRAMEWORKS, *DRAWING, "attnviz.analysis", "attnviz.keras",
                      "attnviz.views", "attnviz.cli")
        elif _in(imp.module, "attnviz.analysis"):
            banned = (*FRAMEWORKS, *DRAWING, "attnviz.keras", "attnviz.views", "attnviz.cli")
        else:
            continue
        if _in(imp.target, *banned):
            bad.append(str(imp))
    return bad


def views_below_cli(package: Path) -> list[str]:
    """Nothing below the CLI imports a view, but the stated exceptions."""
    return [str(imp) for imp in imports(package)
            if _in(imp.target, "attnviz.views")
            and not _in(imp.module, "attnviz.views", "attnviz.cli", "attnviz.__main__")
            and (imp.module, imp.target) not in VIEWS_BELOW_CLI]


def frameworks_outside_keras(package: Path) -> list[str]:
    """Keras, TensorFlow and JAX are imported in attnviz.keras only, and every import is
    absolute (a relative one would slip past these rules)."""
    return [str(imp) for imp in imports(package)
            if imp.target.startswith(".")
            or (_in(imp.target, *FRAMEWORKS) and not _in(imp.module, "attnviz.keras"))]


def private_imports(package: Path) -> list[str]:
    """No module imports another module's private name, by `from` or by attribute."""
    bad = []
    trees = modules(package)
    for imp in imports(package):
        if imp.target.startswith("attnviz") and imp.target != imp.module:
            bad += [f"{imp} ({name} is private)" for name in imp.names
                    if name.startswith("_") and not name.startswith("__")]
    for name, tree in trees.items():
        aliases = {}  # local name -> attnviz module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("attnviz"):
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in trees:
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in trees and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                continue
            owner = ast.unparse(node.value)
            module = aliases.get(owner, owner if owner.startswith("attnviz.") else None)
            if module is not None and module != name:
                bad.append(f"{name}:{node.lineno}: {owner}.{node.attr} ({module}'s private "
                           "name)")
    return bad


def _private_use(node: ast.AST) -> tuple[ast.AST, str] | None:
    """(the object, the private name) when the node reads or writes `obj._name`, or names
    one in getattr/setattr/hasattr."""
    if isinstance(node, ast.Attribute) and node.attr.startswith("_") and (
            not node.attr.startswith("__")):
        return node.value, node.attr
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str) and node.args[1].value.startswith("_")
            and not node.args[1].value.startswith("__")):
        return node.args[0], node.args[1].value
    return None


def foreign_private_attributes(package: Path) -> list[str]:
    """Private attributes of objects attnviz does not own (a Keras model, layer or tensor;
    another library) are read in attnviz.keras.internals only. A module's own objects
    (self, cls, instances of its own classes) and the stated exceptions are fine."""
    bad = []
    every_import = imports(package)  # once: parsing the package again per module took ~60 s
    for name, tree in modules(package).items():
        if name == KERAS_INTERNALS:
            continue
        own = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
        own_values = _own_instances(tree, own)
        for node in ast.walk(tree):
            used = _private_use(node)
            if used is None:
                continue
            obj, attr = used
            text = ast.unparse(obj)
            if text in ("self", "cls") or text in own or text in own_values:
                continue
            if (name, f"{text}.{attr}") in OTHER_PRIVATE:
                continue
            bad.append(f"{name}:{node.lineno}: {text}.{attr}")
        for imp in every_import:
            if imp.module == name and _in(imp.target, "keras.src", "tensorflow.python"):
                bad.append(f"{imp} (a private Keras or TensorFlow module)")
    return bad


def _own_instances(tree: ast.Module, own: set[str]) -> set[str]:
    """Local names assigned an instance of one of the module's own classes (`run = cls(...)`,
    `run = Run(...)`)."""
    names = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and ast.unparse(node.value.func) in ({"cls"} | own)):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


RULES = {
    "numpy-only": numpy_only_violations,
    "views-below-cli": views_below_cli,
    "frameworks-in-keras": frameworks_outside_keras,
    "private-imports": private_imports,
    "foreign-private-attributes": foreign_private_attributes,
}


@pytest.mark.parametrize("rule", RULES)
def test_the_package_keeps_the_rule(rule):
    violations = RULES[rule](PACKAGE)
    assert not violations, f"{rule}:\n" + "\n".join(violations)


PLANTED = {
    "numpy-only": ("attnviz/analysis/score.py", "import keras  # planted\n"),
    "views-below-cli": ("attnviz/keras/training.py",
                        "from attnviz.views.heatmap import Heatmap  # planted\n"),
    "frameworks-in-keras": ("attnviz/views/report.py",
                            "def planted():\n    import tensorflow\n"),
    "private-imports": ("attnviz/views/report.py",
                        "from attnviz.store.run import _checksum  # planted\n"),
    "foreign-private-attributes": ("attnviz/keras/capture.py",
                                   "def planted(model):\n    return model._layers\n"),
}


@pytest.mark.parametrize("rule", RULES)
def test_a_planted_violation_fails_naming_it(rule, tmp_path):
    copy = tmp_path / "attnviz"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*_assets"))
    file, line = PLANTED[rule]
    target = tmp_path / file
    before = set(RULES[rule](copy))
    target.write_text(target.read_text() + "\n" + line)
    violations = sorted(set(RULES[rule](copy)) - before)
    assert len(violations) == 1, violations
    planted_module = file.removesuffix(".py").replace("/", ".")
    assert violations[0].startswith(planted_module + ":"), violations


def test_the_public_recorder_import_stays_light():
    """`attnviz.keras` is a package of Keras modules; importing one of them, or the package,
    does not import the recorder until it is asked for."""
    init = (PACKAGE / "keras" / "__init__.py").read_text()
    tree = ast.parse(init)
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not top_level, [ast.unparse(node) for node in top_level]
    from attnviz.keras import AttentionRecorder
    from attnviz.keras.recorder import AttentionRecorder as defined

    assert AttentionRecorder is defined


@pytest.mark.parametrize(("rule", "file", "line"), [
    ("frameworks-in-keras", "attnviz/analysis/score.py", "from . import tasks  # planted\n"),
    ("private-imports", "attnviz/views/report.py",
     "def planted():\n    import attnviz.store.run\n    return attnviz.store.run._checksum\n"),
    ("views-below-cli", "attnviz/analysis/score.py", "from attnviz import views  # planted\n"),
])
def test_the_ways_around_a_rule_are_caught(rule, file, line, tmp_path):
    copy = tmp_path / "attnviz"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*_assets"))
    before = set(RULES[rule](copy))
    target = tmp_path / file
    target.write_text(target.read_text() + "\n" + line)
    assert len(set(RULES[rule](copy)) - before) >= 1, (rule, line)
