"""Model artifacts on disk: file names, sha256, the content-addressed model id, verified loading.

A model directory holds `model.txt` (the model: LightGBM's text, or for the scorecard and blend
families one JSON document), `calibrator.joblib`, `report.html` and `metadata.json`; the metadata
records the sha256 of the other three. The model id is a hash over all four digests, so any change to
any artifact is a different model (or a refused one).

Formats: `indexloan-pd-model/1` (every model before model families: a LightGBM booster) and
`indexloan-pd-model/2` (metadata names the `family`: lightgbm, scorecard or blend). Both load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from training.errors import ArtifactIntegrityError

MODEL_FILE = "model.txt"
CALIBRATOR_FILE = "calibrator.joblib"
REPORT_FILE = "report.html"
METADATA_FILE = "metadata.json"
METRICS_FILE = "metrics.json"
ARTIFACTS = (MODEL_FILE, CALIBRATOR_FILE, REPORT_FILE, METADATA_FILE)
FORMAT = "indexloan-pd-model/2"
FORMAT_V1 = "indexloan-pd-model/1"
FORMATS = (FORMAT_V1, FORMAT)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_id_from_digests(digests: dict[str, str]) -> str:
    """16 hex characters of sha256 over `name:digest` lines of the four artifacts."""
    text = "\n".join(f"{name}:{digests[name]}" for name in ARTIFACTS)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_metadata(directory: Path) -> dict[str, Any]:
    path = directory / METADATA_FILE
    if not path.is_file():
        raise ArtifactIntegrityError(f"{directory} is not a model directory: {METADATA_FILE} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArtifactIntegrityError(f"{path} is unreadable or corrupted: {e}") from None
    if not isinstance(data, dict) or data.get("format") not in FORMATS or "artifacts" not in data:
        raise ArtifactIntegrityError(f"{path} is not the metadata of an indexloan PD model ({', '.join(FORMATS)})")
    return data


def model_family(meta: dict[str, Any]) -> str:
    """The model family a metadata document declares (format 1 predates families: LightGBM)."""
    if meta.get("format") == FORMAT_V1:
        return "lightgbm"
    if meta.get("format") != FORMAT:
        raise ArtifactIntegrityError(f"unknown model format {meta.get('format')!r} (known: {', '.join(FORMATS)})")
    return str(meta.get("family", ""))


def verify(directory: Path, expected: dict[str, str]) -> None:
    """Refuse (ArtifactIntegrityError) unless every listed file exists with the expected sha256."""
    for name, digest in expected.items():
        path = directory / name
        if not path.is_file():
            raise ArtifactIntegrityError(f"artifact {path} is missing")
        actual = sha256_file(path)
        if actual != digest:
            raise ArtifactIntegrityError(
                f"artifact {path} failed its integrity check: sha256 {actual[:12]}... differs from the recorded "
                f"{digest[:12]}...; the file was changed or corrupted and will not be loaded"
            )


def verify_directory(directory: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Check a model directory against its own metadata; return (metadata, digests of all four files)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactIntegrityError(f"model directory {directory} does not exist")
    meta = read_metadata(directory)
    verify(directory, meta["artifacts"])
    digests = {**meta["artifacts"], METADATA_FILE: sha256_file(directory / METADATA_FILE)}
    missing = [name for name in ARTIFACTS if name not in digests]
    if missing:
        raise ArtifactIntegrityError(f"{directory / METADATA_FILE} does not record {', '.join(missing)}")
    return meta, digests
