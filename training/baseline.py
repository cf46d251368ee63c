"""The comparison the risk team asks first: does the model beat the five product indices alone?

Both datasets hold the same loans, dates and outcomes, so `split_dataset` gives them the same
development and out-of-time samples; only the inputs differ.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from training.config import TrainConfig
from training.datasets import Dataset, from_source_frames
from training.segments import product_indices


def five_index_dataset(frames: dict[str, pd.DataFrame], config: TrainConfig, as_of: dt.date | None = None
                       ) -> Dataset:
    """Loans with only the five product indices (scoring engine, same definitions as quotes) as inputs."""
    ds = from_source_frames(frames, config, as_of, {"kind": "frames", "inputs": "five product indices"},
                            feature_view=product_indices)
    ds.notes.append("baseline: inputs are the five product indices computed by the scoring engine")
    return ds
