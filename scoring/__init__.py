"""The scoring engine (pure: no I/O). Compile definitions into plans once, evaluate on features frames.

    plans = compile_all(load_catalogue(), reference_rates(as_of))
    results = evaluate_all(plans, features, pd_values=None)
    for obj in enterprise_quotes(results): ...
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from products.schema import ProductDefinition
from scoring.columns import Columns, extract
from scoring.engine import ProductResult, ReasonSpec, evaluate, evaluate_all, evaluate_batch
from scoring.output import enterprise_quotes, quote_dict
from scoring.plan import Plan, compile_plan, with_rank_cutoffs


def compile_all(definitions: Mapping[str, ProductDefinition], reference_rates: Mapping[str, float]
                ) -> dict[str, Plan]:
    return {code: compile_plan(d, dict(reference_rates)) for code, d in definitions.items()}


def calibrate(plan: Plan, population: pd.DataFrame | Columns) -> Plan:
    """Rank-graded plans: cut-offs from a reference population (rows with the required sources);
    other plans are returned unchanged."""
    if plan.definition.grading.method != "rank":
        return plan
    r = evaluate(plan, population)
    has_all = ~r.reason_flags[:, [i for i, s in enumerate(r.reason_specs) if s.code == "MISSING_SOURCE"]].any(1)
    return with_rank_cutoffs(plan, r.index_cents[has_all])


__all__ = [
    "Columns", "Plan", "ProductResult", "ReasonSpec", "calibrate", "compile_all", "compile_plan",
    "enterprise_quotes", "evaluate", "evaluate_all", "evaluate_batch", "extract",
    "quote_dict", "with_rank_cutoffs",
]
