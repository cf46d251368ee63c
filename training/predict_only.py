"""LightGBM imported for a process that only predicts (a batch run, its Dask workers).

LightGBM imports scikit-learn (and through it scipy.stats) whenever scikit-learn is installed, for its optional
estimator classes (`LGBMClassifier`, `DaskLGBMClassifier`): about 2 s of a 5 s process start, on this
project's machines, for classes a process that scores with a `Booster` never uses. This module must not
import LightGBM itself: it decides how LightGBM is first imported.
"""

from __future__ import annotations

import sys
from typing import Any


def import_lightgbm_to_predict() -> None:
    """Import LightGBM without its scikit-learn classes. scikit-learn stays importable afterwards (a
    calibrator is still fitted with it); only LightGBM's estimator classes are unusable in this process, so
    call it only where nothing trains. A no-op once LightGBM or scikit-learn is imported."""
    if "lightgbm" in sys.modules or "sklearn" in sys.modules:
        return
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # `import sklearn` raises ImportError meanwhile
    try:
        import lightgbm  # noqa: F401
    finally:
        del sys.modules["sklearn"]


def dask_setup(worker: Any) -> None:
    """`distributed`'s preload hook: a batch run's LocalCluster workers start the same way."""
    import_lightgbm_to_predict()
