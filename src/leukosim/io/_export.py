"""What the dataset exports share: the patients they keep, the notice and the data dictionary file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import __version__
from ..endpoints import statistics

NOTICE = ("Research use only: simulated (virtual) patients from leukosim, not clinical data; not a medical device "
          "and not advice for any individual patient.")


def analysed(patients: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The analysed patients (:func:`leukosim.endpoints.statistics.analysed`: randomised, simulation ``ok``),
    sorted by id, and how many were left out."""
    kept = statistics.analysed(patients)
    return kept.sort_values("patient_id", kind="stable").reset_index(drop=True), len(patients) - len(kept)


def dictionary_path(out: Path) -> Path:
    """Where the data dictionary of ``out`` goes: ``<name>.dictionary.json`` beside it."""
    return out.with_name(out.stem + ".dictionary.json")


def write_dictionary(out: Path, document: dict[str, object]) -> Path:
    """Write ``document`` (after the notice and provenance) as the data dictionary of ``out``."""
    path = dictionary_path(out)
    head = {"notice": NOTICE, "dataset": out.name, "leukosim_version": __version__}
    path.write_text(json.dumps({**head, **document}, indent=1, ensure_ascii=False) + "\n")
    return path
