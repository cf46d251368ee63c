"""Monitoring thresholds: per product, model feature and data source, from a file (never hard-coded)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_FILE = Path(__file__).resolve().parent / "thresholds.yaml"

Share = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PsiLimits(_Strict):
    warn: Annotated[float, Field(ge=0.0)]
    alert: Annotated[float, Field(ge=0.0)]

    @model_validator(mode="after")
    def _ordered(self) -> PsiLimits:
        if self.alert < self.warn:
            raise ValueError(f"alert {self.alert:g} is below warn {self.warn:g}")
        return self


class PsiThresholds(_Strict):
    default: PsiLimits = PsiLimits(warn=0.1, alert=0.25)
    pd: PsiLimits | None = None
    products: dict[str, PsiLimits] = {}
    features: dict[str, PsiLimits] = {}


class FeedLimits(_Strict):
    min_coverage: Share | None = None
    max_missing: Share | None = None
    max_age_factor: Annotated[float, Field(gt=0.0)] | None = None


class FeedThresholds(_Strict):
    default: FeedLimits = FeedLimits(min_coverage=0.5, max_missing=0.05, max_age_factor=1.5)
    sources: dict[str, FeedLimits] = {}
    fields: dict[str, Share] = {}  # "source.field" -> max_missing


class OverrideThresholds(_Strict):
    max_share: Share = 0.2
    min_quotes: Annotated[int, Field(ge=1)] = 20


class ShadowThresholds(_Strict):
    max_decision_change: Share = 0.1


class Thresholds(_Strict):
    psi: PsiThresholds = PsiThresholds()
    feeds: FeedThresholds = FeedThresholds()
    overrides: OverrideThresholds = OverrideThresholds()
    shadow: ShadowThresholds = ShadowThresholds()

    def for_pd(self) -> PsiLimits:
        return self.psi.pd or self.psi.default

    def for_product(self, code: str) -> PsiLimits:
        return self.psi.products.get(code, self.psi.default)

    def for_feature(self, name: str) -> PsiLimits:
        return self.psi.features.get(name, self.psi.default)

    def for_source(self, name: str) -> FeedLimits:
        """The source's limits, each unset one taken from the default."""
        own, default = self.feeds.sources.get(name, FeedLimits()), self.feeds.default
        return FeedLimits(**{k: getattr(own, k) if getattr(own, k) is not None else getattr(default, k)
                             for k in FeedLimits.model_fields})

    def max_missing(self, source: str, field: str) -> float:
        own = self.feeds.fields.get(f"{source}.{field}")
        return own if own is not None else float(self.for_source(source).max_missing or 0.0)


class ThresholdsError(ValueError):
    """The thresholds file is unreadable or invalid; the message names the file and the path inside it."""


def parse_thresholds(data: object, where: str) -> Thresholds:
    try:
        return Thresholds.model_validate(data or {})
    except ValidationError as error:
        first = error.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise ThresholdsError(f"{where}: {path}: {first['msg']}") from None


def read_thresholds(path: Path) -> Thresholds:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ThresholdsError(f"cannot read monitoring thresholds {path}: {error}") from None
    return parse_thresholds(data, str(path))


@cache
def _cached(path: str, mtime: float) -> Thresholds:
    return read_thresholds(Path(path))


def load_thresholds() -> Thresholds:
    """The configured thresholds file (settings.monitoring_thresholds_file), else the packaged defaults;
    re-read when the file changes."""
    from features.settings import get_settings

    path = get_settings().monitoring_thresholds_file or DEFAULT_FILE
    try:
        mtime = path.stat().st_mtime
    except OSError as error:
        raise ThresholdsError(f"cannot read monitoring thresholds {path}: {error}") from None
    return _cached(str(path), mtime)
