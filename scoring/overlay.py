"""Overlays: a programme's own grade lifts its base products' limits and cuts their rates (pure: no I/O).

An overlay definition (`overlay:` in its file) is evaluated like any product (gates, scorecard, grade);
where it qualifies (its own offer conditions hold) and a base product makes an offer, the base offer's
limit is multiplied by the grade's uplift (rounded down as the base rounds, never above the overlay's
`max_limit_cny`) and its rate band and point rate are cut by the grade's basis points (never under the
overlay's `min_rate_pct`, never raised). Fees are a percentage of the limit and stay; a subsidy follows
the new rate. The base result keeps what it was before (`AppliedOverlay.before`), so a quote shows the
base terms, the overlay and the result. Several overlays on one product apply in plan order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import cache

import numpy as np

from scoring.engine import AppliedOverlay, BaseTerms, ProductResult, subsidy_bp
from scoring.plan import Plan


@cache
def _tables(plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """Uplift factor and rate cut (bp) per grade of an overlay plan (1 and 0 for grades it does not list)."""
    rule = plan.definition.overlay
    assert rule is not None
    uplift = np.array([rule.limit_uplift_by_grade.get(g, 1.0) for g in plan.grades], dtype=np.float64)
    cut = np.array([rule.rate_cut_bp_by_grade.get(g, 0) for g in plan.grades], dtype=np.int64)
    return uplift, cut


def apply_overlays(results: Mapping[str, ProductResult]) -> dict[str, ProductResult]:
    """The results with every overlay in them applied to its base products that are there too."""
    out = dict(results)
    for code, overlay in results.items():
        rule = overlay.plan.definition.overlay
        if rule is None:
            continue
        for base in rule.base_products:
            target = out.get(base)
            if target is not None and target.plan.definition.overlay is None:
                out[base] = _apply(target, overlay, code)
    return out


def _apply(base: ProductResult, overlay: ProductResult, code: str) -> ProductResult:
    rule = overlay.plan.definition.overlay
    assert rule is not None
    uplift_by_grade, cut_by_grade = _tables(overlay.plan)
    uplift, cut = uplift_by_grade[overlay.grade], cut_by_grade[overlay.grade]
    applied = base.eligible & overlay.eligible & ((uplift > 1.0) | (cut > 0))
    step = base.plan.round_down_to
    lifted = np.floor(base.limit_cny * uplift / step + 1e-9) * step
    if rule.max_limit_cny is not None:
        lifted = np.minimum(lifted, rule.max_limit_cny)
    limit = np.where(applied, np.maximum(lifted, base.limit_cny), base.limit_cny)
    floor_bp = int(round(rule.min_rate_pct * 100))

    def cut_rate(bp: np.ndarray) -> np.ndarray:  # never under the floor, never above what it was
        return np.where(applied & (bp >= 0), np.maximum(bp - cut, np.minimum(floor_bp, bp)), bp)

    def subsidised(rate: np.ndarray, was: np.ndarray) -> np.ndarray:  # the subsidy follows the new rate
        share = base.subsidy_share if base.subsidy_share is not None else 0.0
        points = base.subsidy_points_bp if base.subsidy_points_bp is not None else 0
        return np.where(applied & (rate >= 0), subsidy_bp(rate, share, points), was)

    lo, hi, rate = cut_rate(base.rate_lo_bp), cut_rate(base.rate_hi_bp), cut_rate(base.rate_bp)
    subsidy = subsidised(rate, base.subsidy_bp)
    all_in = np.where(rate >= 0, rate + base.fee_bp - subsidy, base.all_in_bp)
    options = base.option_terms
    if options is not None:  # every collateral option's terms are cut alike: (lo, hi, rate, fee, subsidy, all-in)
        options = options.copy()
        for k in range(options.shape[1]):
            o_rate = cut_rate(options[:, k, 2])
            o_sub = subsidised(o_rate, options[:, k, 4])
            options[:, k, 0], options[:, k, 1] = cut_rate(options[:, k, 0]), cut_rate(options[:, k, 1])
            options[:, k, 2], options[:, k, 4] = o_rate, o_sub
            options[:, k, 5] = np.where(o_rate >= 0, o_rate + options[:, k, 3] - o_sub, options[:, k, 5])
    before = BaseTerms(limit_cny=base.limit_cny, rate_lo_bp=base.rate_lo_bp, rate_hi_bp=base.rate_hi_bp,
                       rate_bp=base.rate_bp, subsidy_bp=base.subsidy_bp, all_in_bp=base.all_in_bp)
    record = AppliedOverlay(code=code, result=overlay, applied=applied, uplift=np.where(applied, uplift, 1.0),
                            rate_cut_bp=np.where(applied, base.rate_bp - rate, 0), before=before)
    return replace(base, limit_cny=limit, rate_lo_bp=lo, rate_hi_bp=hi, rate_bp=rate, subsidy_bp=subsidy,
                   all_in_bp=all_in, option_terms=options, overlays=(*base.overlays, record))
