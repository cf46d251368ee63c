"""One-row cost of a trained model on the quote path: raw score, contributions (the explanation) and the whole
`assess` (encode + PD + contributions + reason texts), median of single-thread calls.

    .venv/bin/python bench/explain_cost.py MODEL_DIR DATA.csv|.parquet [--rows 200]

The bare baseline measured in the same run is the raw score alone (one LightGBM or scorecard pass); the
explanation and `assess` are printed as multiples of it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]  # bench/http.py shadows http
sys.path.insert(0, str(_BENCH.parent))

from bench.train import per_call_ms  # noqa: E402  (one timing helper for the benches)
from training.datasets import read_table  # noqa: E402
from training.serving import RiskModel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--rows", type=int, default=200, help="calls per measure, each on another row")
    args = parser.parse_args()
    model = RiskModel.from_dir(args.model_dir)
    frame = read_table(args.data)
    rows = [frame.iloc[[i]] for i in range(min(args.rows, len(frame)))]
    encoded = [model.encode(r) for r in rows]
    it = {"k": 0}

    def cycle(items):  # type: ignore[no-untyped-def]
        it["k"] = (it["k"] + 1) % len(items)
        return items[it["k"]]

    raw = per_call_ms(lambda: model.raw_score(cycle(encoded)), 3 * len(rows))
    contrib = per_call_ms(lambda: model.contributions(cycle(encoded)), 3 * len(rows))
    assess = per_call_ms(lambda: model.assess(cycle(rows)), len(rows))
    trees = model.booster.num_trees() if model.booster is not None else 0
    print(f"model {args.model_dir}: family {model.family}, {trees} trees, {len(model.feature_names)} features")
    print(f"one row (median, single thread): raw score {raw:.3f} ms (baseline), contributions {contrib:.3f} ms "
          f"({contrib / raw:.1f}x), assess {assess:.3f} ms ({assess / raw:.1f}x)")


if __name__ == "__main__":
    main()
