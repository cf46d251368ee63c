"""The versions in force on an as-of date: the one builder every entry point uses.

A quote's numbers depend on the enterprise's data as of a date and on these, and nothing else:
- the product definitions in effect on that date (the latest `effective_date` on or before it),
- the reference rates in force on that date (`products/reference_rates.yaml`),
- rank-grading cut-offs calibrated on that date's population (every enterprise of the store, or the
  feature files a batch reads, as of that date),
- the risk model: the registry's champion, a named model directory, or none.

The API, `indexloan quote`, `indexloan batch precredit`, the API's batch jobs and replay all build
their versions here, so the same firm on the same day gets the same quote through every door. A
date nothing covers is a `VersionsError` naming the field at fault, never a silent fallback.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd

from api.quoting.snapshot import sha256_json
from products.catalogue import load_catalogue, reference_rates
from products.schema import ProductDefinition
from scoring import Plan, calibrate, compile_all
from scoring.engine import all_fields
from training.serving import RiskModel


class VersionsError(ValueError):
    """No versions can be built for the request: `field` is the request field at fault (as_of, products)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Versions:
    """Everything a quote's numbers depend on besides the enterprise's data."""

    as_of: dt.date | None  # the date these versions are in force for (None: rebuilt from a snapshot)
    plans: dict[str, Plan]
    definition_sha: dict[str, str]
    rates: dict[str, float]
    rates_sha: str
    model: RiskModel | None
    columns: list[str]  # feature columns the plans and the model read

    @property
    def model_version(self) -> str | None:
        return None if self.model is None else self.model.model_version

    @property
    def products(self) -> list[str]:
        return list(self.plans)

    def describe(self) -> dict[str, Any]:
        """The versions as a quote's snapshot and a batch's summary record them (built once; read-only)."""
        return self._described

    @cached_property
    def _described(self) -> dict[str, Any]:
        return {
            "products": {c: {"version": p.version, "sha256": self.definition_sha[c],
                             "effective_date": p.definition.effective_date.isoformat(),
                             "cut_cents": [int(x) for x in p.cut_cents], "cuts_calibrated": bool(p.cuts_calibrated)}
                         for c, p in self.plans.items()},
            "reference_rates": {"values": self.rates, "sha256": self.rates_sha},
            "model_version": self.model_version,
        }

    def only(self, products: Sequence[str]) -> Versions:
        """The same versions narrowed to `products` (already checked to be in force), in that order."""
        plans = {c: self.plans[c] for c in products}
        return Versions(self.as_of, plans, {c: self.definition_sha[c] for c in products}, self.rates,
                        self.rates_sha, self.model, _needed_columns(plans, self.model))


def _needed_columns(plans: Mapping[str, Plan], model: RiskModel | None) -> list[str]:
    fields, sources = all_fields(list(plans.values()))
    columns = list(fields) + [f"has_{s}" for s in sources]
    if model is not None:
        columns += list(model.feature_names)
    return list(dict.fromkeys(columns))


def definition_sha(definition: ProductDefinition) -> str:
    """Content hash of a definition (key order kept: it orders dimensions, indicators and reasons)."""
    return sha256_json(definition.model_dump(mode="json"), sort_keys=False)


def build_versions(definitions: Mapping[str, ProductDefinition], rates: Mapping[str, float],
                   model: RiskModel | None, population: pd.DataFrame | None,
                   as_of: dt.date | None = None) -> Versions:
    """Compile the definitions under the rates and calibrate rank-graded cut-offs on `population`."""
    plans = compile_all(definitions, rates)
    if population is not None and len(population):
        plans = {c: calibrate(p, population) for c, p in plans.items()}
    return Versions(
        as_of=as_of,
        plans=plans,
        definition_sha={c: definition_sha(d) for c, d in definitions.items()},
        rates=dict(rates),
        rates_sha=sha256_json(dict(rates)),
        model=model,
        columns=_needed_columns(plans, model),
    )


def check_as_of(as_of: dt.date, today: dt.date | None = None) -> None:
    today = today or dt.date.today()
    if as_of > today:
        raise VersionsError("as_of", f"as_of {as_of.isoformat()} is in the future (today is {today.isoformat()}); "
                                     f"未来日期不能报价")


def definitions_in_force(definitions: Iterable[ProductDefinition], as_of: dt.date
                         ) -> dict[str, ProductDefinition]:
    """Per product code, the definition with the latest `effective_date` on or before `as_of` (codes in
    the order first seen). Several versions of one product may be given; ones not yet in effect are left out;
    of two with the same date, the later given wins (the later approval: see api.workbench.store)."""
    chosen: dict[str, ProductDefinition] = {}
    order: list[str] = []
    for d in definitions:
        if d.code not in order:
            order.append(d.code)
        if d.effective_date > as_of:
            continue
        best = chosen.get(d.code)
        if best is None or d.effective_date >= best.effective_date:
            chosen[d.code] = d
    return {c: chosen[c] for c in order if c in chosen}


def select_products(definitions: Sequence[ProductDefinition], as_of: dt.date, wanted: Sequence[str] | None
                    ) -> dict[str, ProductDefinition]:
    """The definitions in force on `as_of`, narrowed to `wanted` (default: every product in force)."""
    known = list(dict.fromkeys(d.code for d in definitions))
    in_force = definitions_in_force(definitions, as_of)
    if wanted:
        wanted = list(dict.fromkeys(wanted))
        unknown = [p for p in wanted if p not in known]
        if unknown:
            raise VersionsError("products", f"unknown product(s): {', '.join(unknown)}; known: {', '.join(known)}")
        later = [p for p in wanted if p not in in_force]
        if later:
            starts = {d.code: d.effective_date for d in sorted(definitions, key=lambda d: d.effective_date)
                      if d.code in later}
            detail = ", ".join(f"{p} (effective {starts[p].isoformat()})" for p in later)
            raise VersionsError("products", f"not in force on {as_of.isoformat()}: {detail}; 该日期产品尚未生效")
        return {p: in_force[p] for p in wanted}
    if not in_force:
        raise VersionsError("as_of", f"no product definition is in force on {as_of.isoformat()}; 该日期无生效产品")
    return in_force


def rates_in_force(definitions: Mapping[str, ProductDefinition], as_of: dt.date) -> dict[str, float]:
    """The reference rates in force on `as_of`; every rate a definition prices on must be covered."""
    rates = reference_rates(as_of)
    missing = sorted({d.rate.reference for d in definitions.values()} - set(rates))
    if missing:
        raise VersionsError("as_of", f"the reference rate table has no value of {', '.join(missing)} in force on "
                                     f"{as_of.isoformat()}; 该日期无基准利率")
    return rates


def in_force(as_of: dt.date, products: Sequence[str] | None = None,
             definitions: Sequence[ProductDefinition] | None = None, today: dt.date | None = None
             ) -> tuple[dict[str, ProductDefinition], dict[str, float]]:
    """The definitions (narrowed to `products`) and reference rates in force on `as_of`: the checks every
    request goes through (a future date, an unknown product, one not yet in effect, a date without rates).
    `today`: only to build tomorrow's state ahead of midnight (`Quoter.prewarm`); requests never pass it."""
    check_as_of(as_of, today)
    every = list(definitions) if definitions is not None else list(load_catalogue().values())
    chosen = select_products(every, as_of, products)
    return chosen, rates_in_force(chosen, as_of)


def versions_with(as_of: dt.date, definitions: Mapping[str, ProductDefinition], population: pd.DataFrame | None,
                  model: RiskModel | None) -> Versions:
    """Given definitions (a draft, say) under the reference rates in force on `as_of`, cut-offs calibrated on
    `population`: what `versions_for` builds once it has picked the definitions in force."""
    return build_versions(definitions, rates_in_force(definitions, as_of), model, population, as_of)


def side_by_side(before: Versions, after: Versions, code: str) -> Versions:
    """One product under two versions as two plans ("before", "after") sharing one model, so that one
    `score_rows` call scores both and the model runs once (what-if simulation)."""
    plans = {"before": before.plans[code], "after": after.plans[code]}
    return Versions(before.as_of, plans, {"before": before.definition_sha[code], "after": after.definition_sha[code]},
                    {**before.rates, **after.rates}, before.rates_sha, before.model,
                    _needed_columns(plans, before.model))


def versions_for(as_of: dt.date, population: pd.DataFrame | None, model: RiskModel | None,
                 products: Sequence[str] | None = None,
                 definitions: Sequence[ProductDefinition] | None = None, today: dt.date | None = None) -> Versions:
    """The versions in force on `as_of` for `products` (default all in force), cut-offs calibrated on
    `population` (that date's enterprises). `definitions`: every known version (default the catalogue)."""
    chosen, rates = in_force(as_of, products, definitions, today)
    return build_versions(chosen, rates, model, population, as_of)
