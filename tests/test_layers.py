"""The house rules, checked on the source text (every module is parsed with `ast`, none is imported).

1. Imports run downward only. Layers, lowest first: features -> products -> scoring -> training -> api.
   A module may import its own layer and the layers below it, never one above; nothing in the five
   packages imports tests/ or bench/. Every import counts: `import x.y` and `from x import y`, at module
   level, inside functions (lazy imports) and under `if TYPE_CHECKING:`, relative imports resolved to
   absolute, and `importlib.import_module("x")` / `__import__("x")` with a literal name.
2. scoring/ stays pure: no web, database, cluster or network library (nor `features.store`, the
   project's database layer), and no file I/O in its code, except in the one named place: a
   packaged-data loader, i.e. a module-level function without parameters, with a docstring, decorated
   with functools.cache / functools.lru_cache and named `_load...` or `_catalogue...`, may read (not
   write) a file (scoring/risk_texts.py `_catalogue` reads risk_reasons.yaml through importlib.resources).
3. Only features/settings.py reads INDEXLOAN_* environment variables (`os.environ[...]`, `.get`,
   `.pop`, `.setdefault`, `in os.environ`, `os.getenv`, or a pydantic-settings `env_prefix="INDEXLOAN_"`).
   Assigning one (api/cli/main.py hands the database URL to uvicorn's workers) is not a read.

The checkers are functions of a root directory: they run on this repository and, below, on small trees
with one deliberate violation each, so every rule is seen to fail when broken. docs/architecture.md
describes the same rules.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("features", "products", "scoring", "training", "api")  # lowest first
RANK = {name: i for i, name in enumerate(LAYERS)}
NEVER_IMPORTED = frozenset({"tests", "bench"})  # above every layer, and not installed with the packages
SETTINGS_FILE = "features/settings.py"
ENV_PREFIX = "INDEXLOAN_"

IMPURE_LIBRARIES = frozenset({
    # web
    "fastapi", "starlette", "uvicorn",
    # network
    "httpx", "requests", "urllib", "urllib3", "http", "socket", "aiohttp",
    # database
    "sqlalchemy", "alembic", "psycopg", "psycopg2", "asyncpg", "sqlite3",
    # cluster
    "dask", "distributed",
})
IMPURE_MODULES = ("features.store",)  # first-party, but the database layer
PATH_READS = frozenset({"read_text", "read_bytes"})
PATH_WRITES = frozenset({"write_text", "write_bytes"})
FRAME_WRITES = frozenset({"to_parquet", "to_csv", "to_feather", "to_excel", "to_pickle", "to_hdf", "tofile"})
# module -> (function names or name prefixes ending in "_") that read / write files
MODULE_READS = {
    "pandas": ("read_",),
    "pyarrow.parquet": ("read_",), "pyarrow.csv": ("read_",), "pyarrow.feather": ("read_",),
    "numpy": ("load", "loadtxt", "genfromtxt", "fromfile"),
    "joblib": ("load",),
}
MODULE_WRITES = {
    "pyarrow.parquet": ("write_",), "pyarrow.csv": ("write_",), "pyarrow.feather": ("write_",),
    "numpy": ("save", "savez", "savez_compressed", "savetxt"),
    "joblib": ("dump",),
}
CACHE_DECORATORS = frozenset({"functools.cache", "functools.lru_cache"})
LOADER_PREFIXES = ("_load", "_catalogue")


@dataclass(frozen=True)
class Violation:
    path: str  # relative to the root, with "/"
    line: int
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.detail}"


@dataclass(frozen=True)
class Module:
    path: str
    name: str  # dotted module name
    package: str  # the package relative imports start from
    source: str
    tree: ast.Module

    def text(self, node: ast.AST) -> str:
        """The node as written (one line, shortened)."""
        segment = ast.get_source_segment(self.source, node) or ast.unparse(node)
        segment = " ".join(segment.split())
        return segment if len(segment) <= 160 else segment[:157] + "..."


@dataclass(frozen=True)
class Import:
    line: int
    target: str  # absolute dotted name
    node: ast.AST


# ------------------------------------------------------------------ reading the tree


def _python_files(root: Path) -> Iterator[Path]:
    for layer in LAYERS:
        base = root / layer
        if base.is_dir():
            yield from sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts)


def modules(root: Path) -> tuple[list[Module], list[Violation]]:
    """Every module of the five packages under `root`, parsed; a file that does not parse is a violation."""
    found: list[Module] = []
    broken: list[Violation] = []
    for file in _python_files(root):
        rel = file.relative_to(root)
        path = rel.as_posix()
        source = file.read_text(encoding="utf-8")
        try:
            tree = ast.parse(source, filename=path)
        except SyntaxError as e:
            broken.append(Violation(path, e.lineno or 0, "does not parse", str(e.msg)))
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
            package = ".".join(parts)
        else:
            package = ".".join(parts[:-1])
        found.append(Module(path, ".".join(parts), package, source, tree))
    return found, broken


def _absolute(module: Module, node: ast.ImportFrom) -> str | None:
    """The absolute name a `from ... import` starts from; None when it climbs above the top package."""
    if not node.level:
        return node.module or ""
    base = module.package.split(".") if module.package else []
    if node.level > len(base):  # Python: "attempted relative import beyond top-level package"
        return None
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: Module) -> Iterator[Import]:
    """Every import of the module, wherever it stands, as absolute names."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, alias.name, node)
        elif isinstance(node, ast.ImportFrom):
            start = _absolute(module, node)
            if start is None:
                yield Import(node.lineno, "." * node.level + (node.module or ""), node)
            elif start:
                yield Import(node.lineno, start, node)
            else:  # `from . import x` in a top-level module: the names are the modules
                for alias in node.names:
                    yield Import(node.lineno, alias.name, node)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and not node.args[0].value.startswith(".")
              and _call_name(node.func) in ("importlib.import_module", "import_module", "__import__")):
            yield Import(node.lineno, node.args[0].value, node)


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return _call_name(func.value) + "." + func.attr
    return ""


def _bindings(module: Module) -> dict[str, str]:
    """Local name -> the absolute module or module attribute it stands for (`import numpy as np` -> np: numpy;
    `from functools import cache` -> cache: functools.cache), from imports anywhere in the module."""
    out: dict[str, str] = {}
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    out[alias.asname] = alias.name
                else:
                    top = alias.name.partition(".")[0]
                    out[top] = top
        elif isinstance(node, ast.ImportFrom):
            start = _absolute(module, node)
            for alias in node.names:
                if start is not None:
                    out[alias.asname or alias.name] = f"{start}.{alias.name}" if start else alias.name
    return out


def _resolved(expr: ast.expr, bindings: dict[str, str]) -> str | None:
    """`np.load` -> "numpy.load" when `np` is bound by an import; None for anything else."""
    if isinstance(expr, ast.Name):
        return bindings.get(expr.id)
    if isinstance(expr, ast.Attribute):
        base = _resolved(expr.value, bindings)
        return f"{base}.{expr.attr}" if base else None
    return None


# ------------------------------------------------------------------ rule 1: imports run downward


def layer_violations(root: Path) -> list[Violation]:
    found, out = modules(root)
    for module in found:
        layer = module.name.partition(".")[0]
        for imp in imports(module):
            target = imp.target.partition(".")[0]
            shown = module.text(imp.node)
            if imp.target.startswith("."):
                out.append(Violation(module.path, imp.line, "relative import above the top package", shown))
            elif target in NEVER_IMPORTED:
                out.append(Violation(module.path, imp.line, f"{layer} imports {target} (never imported by the "
                                     f"packages)", shown))
            elif target in RANK and RANK[target] > RANK[layer]:
                out.append(Violation(module.path, imp.line, f"{layer} imports {target}, a higher layer "
                                     f"({' -> '.join(LAYERS)})", shown))
    return out


# ------------------------------------------------------------------ rule 2: scoring stays pure


def _is_loader(fn: ast.FunctionDef | ast.AsyncFunctionDef, bindings: dict[str, str]) -> bool:
    """The one place scoring may read a file: a cached, parameterless `_load...`/`_catalogue...` function
    with a docstring (so it can only read a fixed, packaged file, once)."""
    a = fn.args
    if a.posonlyargs or a.args or a.kwonlyargs or a.vararg or a.kwarg:
        return False
    if not fn.name.startswith(LOADER_PREFIXES) or not ast.get_docstring(fn):
        return False
    decorators = (d.func if isinstance(d, ast.Call) else d for d in fn.decorator_list)
    return any(_resolved(d, bindings) in CACHE_DECORATORS for d in decorators)


def _file_io(node: ast.Call, bindings: dict[str, str]) -> str | None:
    """"read" or "write" when the call does file I/O, else None."""
    func = node.func
    if isinstance(func, ast.Name) and func.id == "open" and func.id not in bindings:
        mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"),
                                                            None)
        if mode is None:
            return "read"
        if isinstance(mode, ast.Constant) and isinstance(mode.value, str) and not set(mode.value) & set("wax+"):
            return "read"
        return "write"
    full = _resolved(func, bindings)
    if full:
        owner, _, name = full.rpartition(".")
        for table, kind in ((MODULE_READS, "read"), (MODULE_WRITES, "write")):
            if any(name == n or (n.endswith("_") and name.startswith(n)) for n in table.get(owner, ())):
                return kind
        if owner in ("io", "os", "builtins") and name == "open":
            return "write"  # mode not checked: treat as the worst case
    if isinstance(func, ast.Attribute):
        if func.attr in PATH_READS:
            return "read"
        if func.attr in PATH_WRITES | FRAME_WRITES:
            return "write"
        if func.attr == "open":  # Path.open, Traversable.open, gzip.open, ...
            return "write" if any(isinstance(a, ast.Constant) and isinstance(a.value, str)
                                  and set(a.value) & set("wax+") for a in node.args) else "read"
    return None


def _io_calls(module: Module) -> Iterator[tuple[ast.Call, str, bool]]:
    """(call, "read"/"write", inside the allowed loader) for every file I/O call of the module."""
    bindings = _bindings(module)

    def visit(node: ast.AST, in_loader: bool, top: bool) -> Iterator[tuple[ast.Call, str, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                # decorators and defaults run where the function is defined
                for d in child.decorator_list + child.args.defaults + [x for x in child.args.kw_defaults if x]:
                    yield from visit(ast.Expression(d), in_loader, top)
                yield from visit(ast.Module(child.body, []), top and _is_loader(child, bindings), False)
            elif isinstance(child, ast.Lambda):
                yield from visit(child, False, False)
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, in_loader, False)
            else:
                if isinstance(child, ast.Call):
                    kind = _file_io(child, bindings)
                    if kind:
                        yield child, kind, in_loader
                yield from visit(child, in_loader, top)

    yield from visit(module.tree, False, True)


def purity_violations(root: Path) -> list[Violation]:
    found, out = modules(root)
    for module in found:
        if module.name.partition(".")[0] != "scoring":
            continue
        for imp in imports(module):
            top = imp.target.partition(".")[0]
            impure = top in IMPURE_LIBRARIES or any(imp.target == m or imp.target.startswith(m + ".")
                                                    for m in IMPURE_MODULES)
            if impure:
                out.append(Violation(module.path, imp.line, f"scoring imports {imp.target} (scoring is pure: no "
                                     "web, database, cluster or network library)", module.text(imp.node)))
        for call, kind, in_loader in _io_calls(module):
            if kind == "read" and in_loader:
                continue
            where = ("writes a file" if kind == "write" else
                     "reads a file outside a packaged-data loader (a parameterless @functools.cache/lru_cache "
                     "function named _load.../_catalogue... with a docstring)")
            out.append(Violation(module.path, call.lineno, f"scoring {where}", module.text(call)))
    return out


# ------------------------------------------------------------------ rule 3: one settings object


def _constants(module: Module) -> dict[str, str]:
    """Names assigned a string literal anywhere in the module (`NAME = "INDEXLOAN_X"`)."""
    out: dict[str, str] = {}
    for node in ast.walk(module.tree):
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out.update((t.id, value.value) for t in targets if isinstance(t, ast.Name))
    return out


def _literal(expr: ast.expr | None, constants: dict[str, str]) -> str | None:
    """The string (or an f-string's leading text) a key expression stands for."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value
    if isinstance(expr, ast.Name):
        return constants.get(expr.id)
    if isinstance(expr, ast.JoinedStr) and expr.values and isinstance(expr.values[0], ast.Constant):
        return str(expr.values[0].value)
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        return _literal(expr.left, constants)
    return None


def env_violations(root: Path) -> list[Violation]:
    found, out = modules(root)
    for module in found:
        if module.path == SETTINGS_FILE:
            continue
        bindings, constants = _bindings(module), _constants(module)

        def is_environ(expr: ast.expr) -> bool:
            return _resolved(expr, bindings) == "os.environ"  # noqa: B023 - used within the loop

        def ours(expr: ast.expr | None) -> bool:
            return (_literal(expr, constants) or "").startswith(ENV_PREFIX)  # noqa: B023

        for node in ast.walk(module.tree):
            read = False
            if isinstance(node, ast.Call):
                func = node.func
                first = node.args[0] if node.args else None
                if _resolved(func, bindings) == "os.getenv" or (
                        isinstance(func, ast.Attribute) and func.attr in ("get", "pop", "setdefault")
                        and is_environ(func.value)):
                    read = ours(first) or ours(next((k.value for k in node.keywords if k.arg == "key"), None))
                # a second pydantic-settings object on the prefix: SettingsConfigDict(env_prefix="INDEXLOAN_")
                read = read or any(k.arg == "env_prefix" and ours(k.value) for k in node.keywords)
            elif isinstance(node, ast.ClassDef):  # class S(BaseSettings, env_prefix="INDEXLOAN_")
                read = any(k.arg == "env_prefix" and ours(k.value) for k in node.keywords)
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and is_environ(node.value):
                read = ours(node.slice)
            elif isinstance(node, ast.Compare):
                read = any(isinstance(op, ast.In | ast.NotIn) and is_environ(right) and ours(left)
                           for op, left, right in zip(node.ops, [node.left, *node.comparators[:-1]], node.comparators,
                                                      strict=True))
            elif isinstance(node, ast.Dict):
                read = any(isinstance(k, ast.Constant) and k.value == "env_prefix" and ours(v)
                           for k, v in zip(node.keys, node.values, strict=True))
            if read:
                out.append(Violation(module.path, node.lineno, f"reads an {ENV_PREFIX}* environment variable "
                                     f"outside {SETTINGS_FILE} (use features.settings)", module.text(node)))
    return out


def _report(violations: list[Violation]) -> str:
    return f"{len(violations)} violation(s):\n" + "\n".join(map(str, violations))


# ------------------------------------------------------------------ the repository


def test_the_checkers_see_the_whole_repository() -> None:
    found, _ = modules(REPO)
    layers = {m.name.partition(".")[0] for m in found}
    assert layers == set(LAYERS)
    names = {m.name for m in found}
    assert {"features.settings", "scoring.engine", "training.serving", "api.http.app", "api.cli.main"} <= names


def test_repository_imports_run_downward() -> None:
    violations = layer_violations(REPO)
    assert not violations, _report(violations)


def test_repository_scoring_is_pure() -> None:
    violations = purity_violations(REPO)
    assert not violations, _report(violations)


def test_repository_reads_settings_in_one_place() -> None:
    violations = env_violations(REPO)
    assert not violations, _report(violations)


# ------------------------------------------------------------------ the rules break when broken


def tree(root: Path, files: dict[str, str]) -> Path:
    """A scratch repository: the given modules, plus an empty __init__.py in every package directory."""
    for layer in LAYERS:
        (root / layer).mkdir(parents=True, exist_ok=True)
        (root / layer / "__init__.py").touch()
    for rel, source in files.items():
        file = root / rel
        file.parent.mkdir(parents=True, exist_ok=True)
        for parent in file.relative_to(root).parents:
            if parent.parts:
                (root / parent / "__init__.py").touch()
        file.write_text(textwrap.dedent(source), encoding="utf-8")
    return root


def _one(check: Callable[[Path], list[Violation]], root: Path) -> Violation:
    violations = check(root)
    assert len(violations) == 1, _report(violations)
    return violations[0]


def test_scoring_importing_the_http_app_fails(tmp_path: Path) -> None:
    root = tree(tmp_path, {"scoring/bad.py": '"""Bad."""\n\nimport numpy as np\nimport api.http.app\n'})
    v = _one(layer_violations, root)
    assert (v.path, v.line) == ("scoring/bad.py", 4)
    assert str(v).startswith("scoring/bad.py:4: scoring imports api, a higher layer")
    assert str(v).endswith("import api.http.app")


UPWARD = [  # (file, source, rule, line, the offending statement)
    ("features/store/load.py", "from products.catalogue import default_catalogue\n", "features imports products",
     1, "from products.catalogue import default_catalogue"),
    ("products/fields.py", "import scoring.engine\n", "products imports scoring", 1, "import scoring.engine"),
    ("scoring/plan.py", "import numpy as np\nfrom training.encoding import FeatureSpec\n", "scoring imports training",
     2, "from training.encoding import FeatureSpec"),
    ("training/serving.py", "from api.quoting import body\n", "training imports api",
     1, "from api.quoting import body"),
    ("features/sources.py", "from api import keys\n", "features imports api", 1, "from api import keys"),
    ("api/keys.py", "from tests.factories import make\n", "api imports tests", 1, "from tests.factories import make"),
    ("scoring/sample.py", "import bench.quote\n", "scoring imports bench", 1, "import bench.quote"),
    # lazy, under TYPE_CHECKING, dynamic
    ("scoring/engine.py", "def f():\n    from training import fit\n    return fit\n", "scoring imports training",
     2, "from training import fit"),
    ("scoring/engine.py", "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import training.encoding\n",
     "scoring imports training", 4, "import training.encoding"),
    ("products/catalogue.py", "import importlib\n\nM = importlib.import_module('scoring.plan')\n",
     "products imports scoring", 3, "importlib.import_module('scoring.plan')"),
    ("features/derive.py", "def f():\n    return __import__('training.fit')\n", "features imports training",
     2, "__import__('training.fit')"),
    # relative imports cannot leave their top-level package: Python refuses them, so does the check
    ("scoring/engine.py", "from ..training import fit\n", "relative import above the top package",
     1, "from ..training import fit"),
    ("scoring/sub/deep.py", "from ...api.http import app\n", "relative import above the top package",
     1, "from ...api.http import app"),
]


@pytest.mark.parametrize(("path", "source", "rule", "line", "statement"), UPWARD,
                         ids=[f"{u[0]}:{u[3]}" for u in UPWARD])
def test_upward_imports_fail(tmp_path: Path, path: str, source: str, rule: str, line: int, statement: str) -> None:
    v = _one(layer_violations, tree(tmp_path, {path: source}))
    assert (v.path, v.line) == (path, line)
    assert v.rule.startswith(rule)
    assert str(v).startswith(f"{path}:{line}: {rule}") and str(v).endswith(f": {statement}")


def test_downward_and_sideways_imports_pass(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "features/assemble.py": "from features.derive import derive\nfrom . import sources\n",
        "features/store/load.py": "from ..derive import derive\nfrom .db import connect\nfrom . import tables\n",
        "products/fields.py": "from features.sources import SOURCES\n",
        "scoring/texts.py": "from features.sources import SOURCES\nfrom products.catalogue import common_reasons\n"
                            "from .engine import ProductResult\nfrom . import plan\n",
        "training/registry.py": "import scoring\nfrom products import catalogue\nfrom features.store import audit\n",
        "api/quoting/body.py": "from training.serving import RiskModel\nfrom ..http import deps\n"
                               "def f():\n    import scoring.columnar\n",
        "api/__init__.py": "from . import keys\n",
    })
    assert layer_violations(root) == []


IMPURE = [
    "import sqlalchemy as sa",
    "from fastapi import APIRouter",
    "import starlette.requests",
    "import uvicorn",
    "import httpx",
    "import requests",
    "from alembic import op",
    "import psycopg",
    "import sqlite3",
    "import dask.dataframe as dd",
    "from distributed import Client",
    "import socket",
    "from urllib.request import urlopen",
    "import http.client",
    "from features.store.load import load_features",
    "from features.store import db",
]


@pytest.mark.parametrize("statement", IMPURE)
def test_scoring_importing_io_libraries_fails(tmp_path: Path, statement: str) -> None:
    source = f"def lazy():\n    {statement}\n"  # lazily, inside a function: still counted
    v = _one(purity_violations, tree(tmp_path, {"scoring/engine.py": source}))
    assert (v.path, v.line) == ("scoring/engine.py", 2)
    assert v.rule.startswith("scoring imports") and statement in str(v)


IO_CALLS = [
    "open('rates.yaml')",
    "Path('x.yaml').read_text()",
    "Path('x.bin').read_bytes()",
    "Path('x.txt').write_text('x')",
    "Path('x.bin').write_bytes(b'x')",
    "pd.read_parquet('features.parquet')",
    "pd.read_csv('features.csv')",
    "frame.to_parquet('out.parquet')",
    "frame.to_csv('out.csv')",
    "np.load('weights.npy')",
    "Path('x').open()",
]


@pytest.mark.parametrize("call", IO_CALLS)
def test_scoring_file_io_fails(tmp_path: Path, call: str) -> None:
    source = f"""\
        from pathlib import Path

        import numpy as np
        import pandas as pd


        def evaluate(frame):
            return {call}
        """
    v = _one(purity_violations, tree(tmp_path, {"scoring/engine.py": source}))
    assert (v.path, v.line) == ("scoring/engine.py", 8)
    assert v.rule.startswith("scoring ") and call in str(v)


LOADER = '''\
    """Labels."""

    import functools
    from functools import cache, lru_cache
    from importlib import resources

    import yaml


    {decorator}
    def {name}({params}):
        """The catalogue packaged beside this module."""
        return yaml.safe_load({read})
    '''
PACKAGED_READ = 'resources.files("scoring").joinpath("risk_reasons.yaml").read_text(encoding="utf-8")'


@pytest.mark.parametrize(("decorator", "name", "read"), [
    ("@lru_cache(maxsize=1)", "_catalogue", PACKAGED_READ),  # as scoring/risk_texts.py has it
    ("@cache", "_load_labels", "open('labels.yaml', encoding='utf-8')"),
    ("@functools.cache", "_catalogue_of_labels", PACKAGED_READ),
    ("@functools.lru_cache", "_load", "open('labels.yaml', 'rb')"),
])
def test_packaged_data_loader_may_read(tmp_path: Path, decorator: str, name: str, read: str) -> None:
    source = LOADER.format(decorator=decorator, name=name, params="", read=read)
    assert purity_violations(tree(tmp_path, {"scoring/labels.py": source})) == []


@pytest.mark.parametrize(("decorator", "name", "params", "read"), [
    ("", "_catalogue", "", PACKAGED_READ),  # not cached
    ("@lru_cache(maxsize=1)", "catalogue", "", PACKAGED_READ),  # not the loader's name
    ("@cache", "labels_from", "", PACKAGED_READ),
    ("@cache", "_load", "path", "open(path)"),  # reads a path given at run time
    ("@cache", "_load", "*, path='x'", "open(path)"),
    ("@staticmethod", "_load", "", PACKAGED_READ),  # not functools' cache
    ("@cache", "_load", "", "open('labels.yaml', 'w')"),  # writes
    ("@cache", "_load", "", "Path('x').write_text('x')"),
    ("@cache", "_load", "", "(lambda: open('x'))()"),  # a read that runs elsewhere, later
])
def test_file_io_elsewhere_fails(tmp_path: Path, decorator: str, name: str, params: str, read: str) -> None:
    source = LOADER.format(decorator=decorator, name=name, params=params, read=read)
    v = _one(purity_violations, tree(tmp_path, {"scoring/labels.py": source}))
    assert (v.path, v.line) == ("scoring/labels.py", 13)
    assert v.detail.startswith(("open(", "Path(", "resources.files("))


def test_loader_needs_a_docstring_and_functools(tmp_path: Path) -> None:
    source = f"""\
        from functools import cache
        from mylib import cache as other_cache


        @cache
        def _load():
            return {PACKAGED_READ}


        @other_cache
        def _catalogue():
            \"\"\"The catalogue packaged beside this module.\"\"\"
            return {PACKAGED_READ}
        """
    violations = purity_violations(tree(tmp_path, {"scoring/labels.py": source}))
    assert [(v.path, v.line) for v in violations] == [("scoring/labels.py", 7), ("scoring/labels.py", 13)]


def test_loader_must_be_at_module_level(tmp_path: Path) -> None:
    source = f"""\
        from functools import cache


        class Labels:
            @cache
            def _load():
                \"\"\"Packaged.\"\"\"
                return {PACKAGED_READ}


        def outer():
            @cache
            def _load():
                \"\"\"Packaged.\"\"\"
                return {PACKAGED_READ}
            return _load
        """
    violations = purity_violations(tree(tmp_path, {"scoring/labels.py": source}))
    assert [(v.path, v.line) for v in violations] == [("scoring/labels.py", 8), ("scoring/labels.py", 15)]


def test_file_io_outside_scoring_is_not_this_rule(tmp_path: Path) -> None:
    root = tree(tmp_path, {"products/catalogue.py": "from pathlib import Path\nX = Path('a.yaml').read_text()\n",
                           "api/x.py": "import sqlalchemy\nimport httpx\n"})
    assert purity_violations(root) == []


ENV_READS = [
    'os.environ.get("INDEXLOAN_DATABASE_URL")',
    'os.environ.get("INDEXLOAN_DEBUG", "0")',
    'os.getenv("INDEXLOAN_OPERATOR")',
    'os.environ["INDEXLOAN_DATABASE_URL"]',
    'os.environ.pop("INDEXLOAN_X", None)',
    'os.environ.setdefault("INDEXLOAN_X", "1")',
    '"INDEXLOAN_DEBUG" in os.environ',
    'os.environ.get(NAME)',
    'os.environ.get(f"INDEXLOAN_{kind}_URL")',
    'environ.get("INDEXLOAN_X")',
    'getenv("INDEXLOAN_X")',
    'SettingsConfigDict(env_prefix="INDEXLOAN_")',
    '{"env_prefix": "INDEXLOAN_", "extra": "ignore"}',
]


@pytest.mark.parametrize("read", ENV_READS)
@pytest.mark.parametrize("path", ["api/cli/models.py", "training/registry.py", "features/store/db.py"])
def test_env_reads_outside_settings_fail(tmp_path: Path, path: str, read: str) -> None:
    source = f"""\
        import os
        from os import environ, getenv

        from pydantic_settings import SettingsConfigDict

        NAME = "INDEXLOAN_DATABASE_URL"


        def url(kind):
            return {read}
        """
    v = _one(env_violations, tree(tmp_path, {path: source}))
    assert (v.path, v.line) == (path, 10)
    assert "INDEXLOAN_* environment variable" in v.rule and read in str(v)


def test_a_second_settings_class_fails(tmp_path: Path) -> None:
    source = 'from pydantic_settings import BaseSettings\n\n\nclass Mine(BaseSettings, env_prefix="INDEXLOAN_"):\n'
    source += '    debug: bool = False\n'
    v = _one(env_violations, tree(tmp_path, {"training/config.py": source}))
    assert str(v).startswith("training/config.py:4: reads an INDEXLOAN_* environment variable outside "
                             "features/settings.py") and 'class Mine(BaseSettings, env_prefix="INDEXLOAN_")' in str(v)


def test_env_writes_and_other_variables_pass(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "api/cli/main.py": 'import os\n\ndef serve(database_url):\n'
                           '    os.environ["INDEXLOAN_DATABASE_URL"] = database_url\n'
                           '    os.environ["PROMETHEUS_MULTIPROC_DIR"] = "/tmp/m"\n',
        "api/http/metrics.py": 'import os\nMULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"\n'
                               'X = os.environ.get(MULTIPROC_ENV)\n',
        "features/settings.py": 'import os\nfrom pydantic_settings import SettingsConfigDict\n'
                                'F = os.environ.get("INDEXLOAN_SETTINGS_FILE")\n'
                                'C = SettingsConfigDict(env_prefix="INDEXLOAN_")\n',
        "api/cli/models.py": 'HELP = "default: $INDEXLOAN_OPERATOR"\n',
    })
    assert env_violations(root) == []


def test_a_module_that_does_not_parse_is_reported(tmp_path: Path) -> None:
    root = tree(tmp_path, {"scoring/half.py": "x = 1\ndef f(:\n"})
    for check in (layer_violations, purity_violations, env_violations):
        v = _one(check, root)
        assert (v.path, v.line, v.rule) == ("scoring/half.py", 2, "does not parse")
