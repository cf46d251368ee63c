"""The run's summary, accumulated partition by partition: counts per product and grade, total limits,
the distribution of point rates (exact: rates are whole basis points, so counts per rate are kept)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


class Summary:
    def __init__(self, products: list[str]) -> None:
        self.products = products
        self.rows = 0
        self.eligible = Counter[str]()
        self.limit = Counter[str]()
        self.by_grade: dict[str, dict[str, Counter[str]]] = {p: {} for p in products}
        self.rates: dict[str, Counter[int]] = {p: Counter() for p in products}

    def add(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        for p in self.products:
            eligible = table[f"{p}.eligible"].to_numpy()
            limit = table[f"{p}.limit_cny"].to_numpy()
            grade = table[f"{p}.grade"].combine_chunks()
            labels = grade.dictionary.to_pylist()
            codes = grade.indices.to_numpy(zero_copy_only=False)
            for g, label in enumerate(labels):
                rows = codes == g
                if not rows.any():
                    continue
                c = self.by_grade[p].setdefault(label, Counter())
                c["enterprises"] += int(rows.sum())
                c["eligible"] += int((rows & eligible).sum())
                c["limit_cny"] += int(limit[rows].sum())
            self.eligible[p] += int(eligible.sum())
            self.limit[p] += int(limit.sum())
            rate = table[f"{p}.rate_pct"].to_numpy()
            offered = rate[eligible]
            bp = np.rint(offered[~np.isnan(offered)] * 100).astype(np.int64)  # an overlay has no rate of its own
            values, counts = np.unique(bp, return_counts=True)
            self.rates[p].update(dict(zip(values.tolist(), counts.tolist(), strict=True)))

    def _rates(self, p: str) -> dict[str, Any]:
        counts = self.rates[p]
        if not counts:
            return {"offers": 0}
        values = np.array(sorted(counts))
        cum = np.cumsum([counts[v] for v in values])
        total = int(cum[-1])

        def q(share: float) -> float:
            return float(values[np.searchsorted(cum, share * total, side="left")]) / 100

        mean = sum(v * c for v, c in counts.items()) / total / 100
        return {"offers": total, "min_pct": float(values[0]) / 100, "max_pct": float(values[-1]) / 100,
                "mean_pct": round(mean, 4), **{f"p{int(s * 100)}_pct": q(s) for s in QUANTILES},
                "counts_by_pct": {f"{v / 100:.2f}": counts[v] for v in values.tolist()}}

    def as_json(self) -> dict[str, Any]:
        return {
            "enterprises": self.rows,
            "products": {p: {"eligible": self.eligible[p],
                             "eligible_share": round(self.eligible[p] / max(self.rows, 1), 6),
                             "total_limit_cny": self.limit[p],
                             "grades": {g: dict(c) for g, c in self.by_grade[p].items()},
                             "rates": self._rates(p)} for p in self.products},
        }
