"""Benchmark the synthetic-region generator: generation and writing for N firms against a bare baseline.

    python bench/demo_data.py --firms 1000000 [--seed 1] [--fmt parquet] [--out DIR] [--keep]

Prints wall times, rows per source, peak resident memory (getrusage ru_maxrss) and, as a baseline
measured in the same run, the time to draw as many numpy normal variates as the region has values
and to write them as one Parquet file; then the ratio of the two.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.synthetic import generate_region, write_region  # noqa: E402

BASELINE_COLUMNS = 20


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024**3 if sys.platform == "darwin" else 1024**2)


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def baseline(values: int, out_dir: Path, seed: int) -> tuple[float, float, float, int]:
    """Seconds to draw `values` normal variates and to write them as one Parquet file, and its size."""
    rows = max(values // BASELINE_COLUMNS, 1)
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((BASELINE_COLUMNS, rows))
    drawn = time.perf_counter()
    table = pa.table({f"x{i:02d}": data[i] for i in range(BASELINE_COLUMNS)})
    path = out_dir / "baseline.parquet"
    pq.write_table(table, path, compression="snappy")
    written = time.perf_counter()
    size = path.stat().st_size
    path.unlink()
    return drawn - start, written - drawn, written - start, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--firms", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fmt", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the output directory")
    args = parser.parse_args(argv)

    out_dir = args.out or Path(tempfile.mkdtemp(prefix="synthetic-region-"))
    print(f"firms {args.firms:,}  seed {args.seed}  format {args.fmt}  out {out_dir}")

    start = time.perf_counter()
    frames = generate_region(args.firms, args.seed)
    generated = time.perf_counter()
    peak_generate = peak_rss_gb()
    write_region(frames, out_dir, args.fmt)
    written = time.perf_counter()
    peak_write = peak_rss_gb()

    gen_s, write_s, total_s = generated - start, written - generated, written - start
    rows = {name: len(frame) for name, frame in frames.items()}
    values = sum(len(frame) * frame.shape[1] for frame in frames.values())
    in_memory_gb = sum(frame.memory_usage(deep=True).sum() for frame in frames.values()) / 1024**3
    print(f"\n{'source':18s}{'rows':>14s}{'columns':>9s}")
    for name, frame in frames.items():
        print(f"{name:18s}{rows[name]:>14,d}{frame.shape[1]:>9d}")
    print(f"{'total':18s}{sum(rows.values()):>14,d}   values (cells) {values:,}")
    print(f"\nframes in memory      {in_memory_gb:8.2f} GB")
    print(f"files on disk         {directory_bytes(out_dir) / 1024**3:8.2f} GB")
    print(f"generate              {gen_s:8.1f} s   peak RSS {peak_generate:.2f} GB")
    print(f"write ({args.fmt:7s})       {write_s:8.1f} s   peak RSS {peak_write:.2f} GB")
    print(f"generate + write      {total_s:8.1f} s")
    del frames

    draw_s, base_write_s, base_s, base_bytes = baseline(values, out_dir, args.seed)
    print(f"\nbaseline: {values:,} normal variates in one Parquet file ({BASELINE_COLUMNS} float64 columns, "
          f"{base_bytes / 1024**3:.2f} GB)")
    print(f"  draw                {draw_s:8.1f} s")
    print(f"  write               {base_write_s:8.1f} s")
    print(f"  total               {base_s:8.1f} s")
    print(f"\nratio (generate + write) / baseline = {total_s / base_s:.2f}")
    print(f"peak RSS of the whole run {peak_rss_gb():.2f} GB")

    if not args.keep and args.out is None:
        shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
