"""Loading product definitions: every `definitions/*.yaml` is one product (a sixth = a new file).

Errors name the file and the path inside it (`dimensions.capability.indicators[2].weight: ...`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from products.policy import Policy
from products.schema import ProductDefinition, Text, bilingual, semantic_issues

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


# Chinese for pydantic's structural errors, by error type ({ctx} values filled in)
_ZH_BY_TYPE = {
    "greater_than_equal": "应大于或等于 {ge}", "greater_than": "应大于 {gt}",
    "less_than_equal": "应小于或等于 {le}", "less_than": "应小于 {lt}",
    "finite_number": "应为有限数值", "float_parsing": "应为数值", "float_type": "应为数值",
    "int_parsing": "应为整数", "int_type": "应为整数", "int_from_float": "应为整数",
    "bool_parsing": "应为 true 或 false", "bool_type": "应为 true 或 false",
    "string_type": "应为文本", "string_too_short": "文本太短（至少 {min_length} 个字符）",
    "string_too_long": "文本太长（最多 {max_length} 个字符）", "string_pattern_mismatch": "格式应符合 {pattern}",
    "too_short": "至少需要 {min_length} 项", "too_long": "最多 {max_length} 项",
    "list_type": "应为列表", "dict_type": "应为映射（键: 值）", "model_type": "应为映射（键: 值）",
    "literal_error": "应为 {expected} 之一", "date_from_datetime_parsing": "应为日期 YYYY-MM-DD",
    "date_parsing": "应为日期 YYYY-MM-DD", "date_type": "应为日期 YYYY-MM-DD",
    "union_tag_invalid": "kind 应为 {expected_tags} 之一", "union_tag_not_found": "缺少 kind",
    "value_error": "取值不符合规则：{error}",
}


def validation_issues(err: ValidationError) -> list[tuple[str, str]]:
    """Structural problems as (path, "English / 中文") pairs."""
    issues = []
    for e in err.errors(include_url=False):
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg, zh = "unknown field (not part of the product schema)", "未知字段（不属于产品定义的结构）"
        elif e["type"] == "missing":
            msg, zh = "required field missing", "缺少必填字段"
        else:
            template = _ZH_BY_TYPE.get(e["type"], "结构错误：{msg}")
            ctx = {k: v for k, v in (e.get("ctx") or {}).items()}
            try:
                zh = template.format(msg=msg, **ctx)
            except (KeyError, IndexError):
                zh = f"结构错误：{msg}"
        issues.append((format_loc(tuple(e["loc"])), bilingual(msg, zh)))
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


class _FastStrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same constructor on libyaml's parser: the same data, parsed ~10x faster (a run's start parses
    every product file). Its error messages differ, so a file it refuses is parsed again by `_StrictLoader`."""


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
_FastStrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _parse_yaml(text: str) -> Any:
    """`text` as _StrictLoader reads it (data, or the exception it raises), on the fast parser when it can."""
    try:
        return yaml.load(text, Loader=_FastStrictLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError, ValueError):
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - the reference parser, for its messages


def _read_yaml(path: Path) -> Any:
    """A product file's data; any bytes give a DefinitionError naming the problem (never a traceback)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DefinitionError(path, [("", bilingual(f"cannot read file: {e.strerror or e}", "无法读取文件"))]) from None
    if len(data) > MAX_PRODUCT_FILE_BYTES:
        raise DefinitionError(path, [("", bilingual(f"the file is {len(data):,} bytes; a product file is at most "
                                                    f"{MAX_PRODUCT_FILE_BYTES:,}", "文件过大"))])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DefinitionError(path, [(f"line {line}", bilingual(
            f"the file is not UTF-8 text (byte {e.start + 1}: {data[e.start:e.start + 1]!r}); save it as UTF-8",
            "文件不是 UTF-8 文本，请另存为 UTF-8"))]) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return _parse_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise DefinitionError(path, [(where, bilingual(f"invalid YAML: {problem}", "YAML 格式错误"))]) from None
    except RecursionError:
        raise DefinitionError(path, [("", bilingual("invalid YAML: nested too deeply", "YAML 嵌套过深"))]) from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise DefinitionError(path, [("", bilingual(f"invalid YAML: a value cannot be read: {str(e)[:160]}",
                                                    "YAML 中有无法读取的值"))]) from None


def _valid_sections(data: dict[str, Any], err: ValidationError) -> dict[str, Any]:
    """The top-level sections that validate on their own, as model values (the others are left out)."""
    broken = {e["loc"][0] for e in err.errors() if e["loc"]}
    if any(not e["loc"] for e in err.errors()):  # a whole-model rule failed: no section can be trusted
        return {}
    out: dict[str, Any] = {}
    for name, info in ProductDefinition.model_fields.items():
        if name in broken:
            continue
        if name not in data:
            if not info.is_required():
                out[name] = info.get_default(call_default_factory=True)
            continue
        try:
            out[name] = _section_adapter(name).validate_python(data[name])
        except ValidationError:
            continue
    return out


@cache
def _section_adapter(name: str) -> TypeAdapter[Any]:
    info = ProductDefinition.model_fields[name]
    validators = ProductDefinition.__pydantic_decorators__.field_validators.values()
    before = [getattr(ProductDefinition, v.cls_var_name) for v in validators
              if name in v.info.fields and v.info.mode == "before"]
    annotation: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    for func in before:
        annotation = Annotated[annotation, BeforeValidator(func)]
    return TypeAdapter(annotation)  # the models forbid inf and NaN themselves


def parse_definition(data: Any, file: str | Path = "<memory>", policy: Policy | None = None,
                     stored: bool = False) -> ProductDefinition:
    """Validate a definition given as plain data (the parsed YAML), reporting every problem at once:
    the structural errors of every section and the semantic ones of the sections that are sound.
    `stored=True`: a definition kept for replay, checked without the authoring rules (policy maxima,
    reachable cells) that may have tightened since it was quoted."""
    if not isinstance(data, dict):
        raise DefinitionError(file, [("", bilingual("a product file must be a mapping of keys to values",
                                                    "产品文件必须是“键: 值”的映射"))])
    try:
        definition = ProductDefinition.model_validate(data)
    except ValidationError as e:
        issues = validation_issues(e)
        sections = _valid_sections(data, e)
        partial = ProductDefinition.model_construct(**sections)
        # the checks skip broken sections; should one still reach into one, the structural issues stand
        with contextlib.suppress(AttributeError, TypeError, KeyError, ValueError):
            issues += semantic_issues(partial, set(common_reasons()), policy, valid=set(sections),
                                      authoring=not stored)
        raise DefinitionError(file, issues) from None
    issues = semantic_issues(definition, set(common_reasons()), policy, authoring=not stored)
    if issues:
        raise DefinitionError(file, issues)
    return definition


def load_definition(path: str | Path) -> ProductDefinition:
    path = Path(path)
    definition = parse_definition(_read_yaml(path), path)
    if path.parent.resolve() == DEFINITIONS_DIR and path.stem != definition.code:
        raise DefinitionError(path, [("code", bilingual(f"code {definition.code!r} must match the file name "
                                                        f"{path.stem!r}", "code 必须与文件名一致"))])
    return definition


def load_catalogue(directory: str | Path | None = None) -> dict[str, ProductDefinition]:
    """All product definitions, by code: those of `directory` when given; by default the packaged ones,
    then those of the `products_dir` setting (INDEXLOAN_PRODUCTS_DIR: a bank's own products and overlays;
    a code it defines replaces the packaged definition of that code). In file-name order per folder."""
    if directory is not None:
        folders = [Path(directory)]
    else:
        from features.settings import get_settings

        extra = get_settings().products_dir
        folders = [DEFINITIONS_DIR] + ([Path(extra)] if extra is not None else [])
    out: dict[str, ProductDefinition] = {}
    last: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            raise DefinitionError(folder, [("", bilingual("the product definitions folder does not exist",
                                                          "产品定义目录不存在"))])
        seen: set[str] = set()
        for path in sorted(folder.glob("*.yaml")):
            d = load_definition(path)
            if d.code in seen:
                raise DefinitionError(path, [("code", bilingual(f"product {d.code!r} is defined twice",
                                                                "产品重复定义"))])
            seen.add(d.code)
            out[d.code] = d  # a later folder's definition replaces the packaged one, in its place
            last[d.code] = path
    for code, d in out.items():  # an overlay names products it can adjust
        if d.overlay is None:
            continue
        bad = [b for b in d.overlay.base_products if b not in out or out[b].overlay is not None]
        if bad:
            raise DefinitionError(last[code], [("overlay.base_products", bilingual(
                f"{bad}: not a product of the catalogue (an overlay adjusts products, not overlays)",
                "不是目录中的产品（叠加方案只能调整产品，不能调整其他叠加方案）"))])
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
