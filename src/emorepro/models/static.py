"""The constructor parameters of a family's dataclasses, read from the source without importing it.

The workflow checks ``model_params``, ``train.data`` and ``train.loss`` against the dataclasses
of each experiment's family when it is parsed (:func:`emorepro.config.check_config`).  Importing
a family module imports torch (about 2 s, per ``snakemake`` call and per job), so this module
reads the class definitions with :mod:`ast` instead: the names are never written twice, and
``tests/test_config.py`` asserts that what it reads equals ``inspect.signature`` of the real
class for every registered family, so the two cannot drift apart.  (No library reads dataclass
fields statically; this handles what the families use: ``@dataclass`` classes whose fields are
annotated class attributes, ``field(init=False)``, ``ClassVar``, and bases defined in the same
module or imported from a sibling module with ``from .module import Name``.)
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]   # src/emorepro


def _module_file(module: str) -> Path:
    """``emorepro.models.zhang_bilstm`` -> its source file."""
    parts = module.split(".")
    if parts[0] != "emorepro":
        raise ValueError(f"{module}: only modules of the emorepro package are read statically")
    base = PACKAGE_ROOT.joinpath(*parts[1:])
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


@lru_cache(maxsize=None)
def _module_tree(module: str) -> ast.Module:
    path = _module_file(module)
    return ast.parse(path.read_text(), filename=str(path))


def _resolve_from(module: str, node: ast.ImportFrom) -> str:
    """The absolute module name of ``from <node.module> import ...`` written in ``module``."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    is_package = _module_file(module).name == "__init__.py"
    package = parts[: len(parts) - node.level + is_package]   # level 1 = the package the module is in
    return ".".join(package + ([node.module] if node.module else []))


def _dataclass_decorators(tree: ast.Module) -> set[str]:
    """Names the module binds to ``dataclasses.dataclass`` (``from dataclasses import dataclass as _dc``)."""
    return {a.asname or a.name for node in tree.body if isinstance(node, ast.ImportFrom) and node.module == "dataclasses"
            for a in node.names if a.name == "dataclass"}


def _is_dataclass(cls: ast.ClassDef, names: set[str]) -> bool:
    for d in cls.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if (isinstance(target, ast.Attribute) and target.attr == "dataclass") or getattr(target, "id", None) in names:
            return True
    return False


def _field_in_init(value: ast.expr | None) -> bool:
    """False for ``field(init=False, ...)``."""
    if isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", "")) == "field":
        for kw in value.keywords:
            if kw.arg == "init" and isinstance(kw.value, ast.Constant) and kw.value.value is False:
                return False
    return True


def _is_classvar(annotation: ast.expr) -> bool:
    text = ast.unparse(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar", "'ClassVar", '"ClassVar'))


@lru_cache(maxsize=None)
def dataclass_params(module: str, name: str) -> tuple[str, ...]:
    """Constructor parameter names of the dataclass ``name`` defined in (or imported into) ``module``."""
    tree = _module_tree(module)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            if not _is_dataclass(node, _dataclass_decorators(tree)):
                raise TypeError(f"{module}.{name} is not a @dataclass")
            names: list[str] = []
            for base in node.bases:   # inherited fields come first, as in dataclasses
                if isinstance(base, ast.Name):
                    names += [n for n in dataclass_params(module, base.id) if n not in names]
            for stmt in node.body:
                if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                        and not _is_classvar(stmt.annotation)):
                    field_name, in_init = stmt.target.id, _field_in_init(stmt.value)
                    if in_init and field_name not in names:
                        names.append(field_name)
                    elif not in_init and field_name in names:
                        names.remove(field_name)
            return tuple(names)
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            original = next(a.name for a in node.names if (a.asname or a.name) == name)
            return dataclass_params(_resolve_from(module, node), original)
    raise LookupError(f"{module}: no class {name!r} (defined or imported with `from ... import`)")
