"""Loading product definitions: every `definitions/*.yaml` is one product (a sixth = a new file).

Errors name the file and the path inside it (`dimensions.capability.indicators[2].weight: ...`).
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from products.schema import ProductDefinition, Text, semantic_issues

PACKAGE_DIR = Path(__file__).resolve().parent
DEFINITIONS_DIR = PACKAGE_DIR / "definitions"
REASONS_FILE = PACKAGE_DIR / "reasons.yaml"
REFERENCE_RATES_FILE = PACKAGE_DIR / "reference_rates.yaml"


class DefinitionError(ValueError):
    """A product file that cannot be used; `issues` holds (path in file, message) pairs."""

    def __init__(self, file: str | Path, issues: list[tuple[str, str]]):
        self.file = str(file)
        self.issues = issues
        lines = [f"{self.file}: {len(issues)} problem(s)"]
        lines += [f"  {path or '<root>'}: {msg}" for path, msg in issues]
        super().__init__("\n".join(lines))


def format_loc(loc: tuple[int | str, ...]) -> str:
    """('dimensions', 'capability', 'indicators', 2, 'weight') -> 'dimensions.capability.indicators[2].weight'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("benchmark", "bins", "categorical", "flag") and out.endswith("scoring"):
            continue  # pydantic adds the union tag to the path; the file has no such key
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_issues(err: ValidationError) -> list[tuple[str, str]]:
    issues = []
    for e in err.errors(include_url=False):
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (not part of the product schema)"
        elif e["type"] == "missing":
            msg = "required field missing"
        issues.append((format_loc(tuple(e["loc"])), msg))
    return issues


MAX_PRODUCT_FILE_BYTES = 1 << 20  # a product definition is a few KB


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently:
    `max_pd: 0.05` then `max_pd: 0.9` would load as 0.9)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: SafeLoader reports it
            break
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"the key {key!r} is given twice in one mapping (first on line {first.start_mark.line + 1})",
                key_node.start_mark)
        seen[key] = key_node
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _read_yaml(path: Path) -> Any:
    """A product file's data; any bytes give a DefinitionError naming the problem (never a traceback)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DefinitionError(path, [("", f"cannot read file: {e.strerror or e}")]) from None
    if len(data) > MAX_PRODUCT_FILE_BYTES:
        raise DefinitionError(path, [("", f"the file is {len(data):,} bytes; a product file is at most "
                                          f"{MAX_PRODUCT_FILE_BYTES:,}")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DefinitionError(path, [(f"line {line}", f"the file is not UTF-8 text (byte {e.start + 1}: "
                                                      f"{data[e.start:e.start + 1]!r}); save it as UTF-8")]) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise DefinitionError(path, [(where, f"invalid YAML: {problem}")]) from None
    except RecursionError:
        raise DefinitionError(path, [("", "invalid YAML: nested too deeply")]) from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise DefinitionError(path, [("", f"invalid YAML: a value cannot be read: {str(e)[:160]}")]) from None


def parse_definition(data: Any, file: str | Path = "<memory>") -> ProductDefinition:
    """Validate a definition given as plain data (the parsed YAML)."""
    if not isinstance(data, dict):
        raise DefinitionError(file, [("", "a product file must be a mapping of keys to values")])
    try:
        definition = ProductDefinition.model_validate(data)
    except ValidationError as e:
        raise DefinitionError(file, validation_issues(e)) from None
    issues = semantic_issues(definition, set(common_reasons()))
    if issues:
        raise DefinitionError(file, issues)
    return definition


def load_definition(path: str | Path) -> ProductDefinition:
    path = Path(path)
    definition = parse_definition(_read_yaml(path), path)
    if path.parent.resolve() == DEFINITIONS_DIR and path.stem != definition.code:
        raise DefinitionError(path, [("code", f"code {definition.code!r} must match the file name "
                                              f"{path.stem!r}")])
    return definition


def definitions_dir() -> Path:
    """The seed definitions' folder: settings.products_dir (INDEXLOAN_PRODUCTS_DIR) or the shipped one."""
    from features.settings import get_settings

    return get_settings().products_dir or DEFINITIONS_DIR


def load_catalogue(directory: str | Path | None = None) -> dict[str, ProductDefinition]:
    """All product definitions in the folder, by code, in file-name order."""
    folder = Path(directory) if directory is not None else definitions_dir()
    out: dict[str, ProductDefinition] = {}
    for path in sorted(folder.glob("*.yaml")):
        d = load_definition(path)
        if d.code in out:
            raise DefinitionError(path, [("code", f"product {d.code!r} is defined twice")])
        out[d.code] = d
    return out


@cache
def default_catalogue() -> dict[str, ProductDefinition]:
    return load_catalogue()


@cache
def common_reasons() -> dict[str, Text]:
    """The shared reason catalogue (templates may use {indicator_zh}, {source_en}, ... placeholders)."""
    data = yaml.safe_load(REASONS_FILE.read_text(encoding="utf-8"))
    return {code: Text.model_validate(text) for code, text in data.items()}


class _RatePoint(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    since: dt.date
    value: float = Field(ge=0, le=30)


@cache
def _reference_table() -> dict[str, list[_RatePoint]]:
    data = yaml.safe_load(REFERENCE_RATES_FILE.read_text(encoding="utf-8"))
    return {
        name: sorted((_RatePoint.model_validate(p) for p in points), key=lambda p: p.since)
        for name, points in data.items()
    }


def reference_rates(as_of: dt.date | None = None) -> dict[str, float]:
    """Each reference rate (annual %) in force on `as_of` (default today): the latest dated value."""
    day = as_of or dt.date.today()
    out: dict[str, float] = {}
    for name, points in _reference_table().items():
        valid = [p for p in points if p.since <= day]
        if valid:
            out[name] = valid[-1].value
    return out
