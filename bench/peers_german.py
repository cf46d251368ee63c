"""German credit only: `bench/peers.py --data german` (kept for the commands that name this script).

    .venv/bin/python bench/peers_german.py [--folds 5] [--seed 0] [--methods ...]
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "--data", "german", *sys.argv[1:]]
    runpy.run_path(str(Path(__file__).resolve().parent / "peers.py"), run_name="__main__")
