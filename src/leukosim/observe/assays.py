"""Measurement models: what an MRD assay, a marrow differential count, a CAR transgene qPCR and a B-cell
count report, given the true simulated quantity (model_literature.md §7).

Sampling noise comes only from uniforms in (0, 1) passed in by the caller, who draws them from the
per-patient counter-based streams (:mod:`leukosim.population.streams`); every draw is an inverse CDF, so a
result is a deterministic, non-decreasing function of its uniform and never depends on other patients.
Nothing here creates a random generator.

MRD: a sample of ``cells_analysed`` nucleated cells (or genome equivalents) holds a leukemic fraction
``f``; each leukemic cell in it is detected with probability ``efficiency``, so the number of leukemic events
is Poisson(f x cells_analysed x efficiency), the small-fraction limit of binomial sampling. The assay calls
the sample positive at ``min_events`` events and then reports events / cells_analysed; below that it
reports 0.0 (not detected). The reported fraction is therefore efficiency x f on average: with the default
efficiency 1 it is unbiased above the limit of detection.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import binom, poisson

__all__ = [
    "Assay",
    "ASSAYS",
    "DNA_UG_PER_DIPLOID_CELL",
    "B_CELL_APLASIA_PER_UL",
    "BLINATUMOMAB_LLOQ_NG_PER_ML",
    "INOTUZUMAB_LLOQ_NG_PER_ML",
    "CAR_QPCR_LLOQ_COPIES_PER_UG",
    "limit_of_detection",
    "measure_mrd",
    "measure_blast_percent",
]

_CLL_MRD = ("CLL MRD consensus, Leukemia 2021, doi:10.1038/s41375-021-01241-1, Table 3 (model_literature.md "
            "§7)")
_KIM = "Kim, Blood Res 2020;55(S1): flow and qPCR MRD in ALL at sensitivities of 10^-4 (model_literature §7)"


@dataclass(frozen=True)
class Assay:
    """A measurement of the leukemic fraction of a marrow or blood sample by counting leukemic events."""

    name: str
    """Key in ``ASSAYS``."""
    cells_analysed: float
    """Nucleated cells (flow events, morphology cells, or genome equivalents of DNA input) analysed per
    sample [cells]."""
    min_events: int
    """Leukemic events needed to call the sample positive [events]; fewer are reported as not detected."""
    efficiency: float
    """Probability that a leukemic cell in the analysed sample is detected as a leukemic event [-]."""
    nominal_sensitivity: float
    """Published sensitivity of the method [leukemic cells per nucleated cell]; ``cells_analysed`` and
    ``min_events`` are chosen so that the limit of detection equals it."""
    source: str
    """Where the numbers come from; [U] marks assumptions."""

    def __post_init__(self) -> None:
        if not self.cells_analysed >= 1.0:
            raise ValueError(f"assay {self.name!r}: cells_analysed must be >= 1")
        if self.min_events < 1:
            raise ValueError(f"assay {self.name!r}: min_events must be >= 1")
        if not 0.0 < self.efficiency <= 1.0:
            raise ValueError(f"assay {self.name!r}: efficiency must be in (0, 1]")

    @property
    def limit_of_detection(self) -> float:
        """True leukemic fraction at which the expected number of detected events equals ``min_events``
        [fraction]: min_events / (cells_analysed x efficiency). Detection probability there is
        P(Poisson(min_events) >= min_events): 0.63 for 1 event, 0.54 for 10, 0.53 for 20."""
        return self.min_events / (self.cells_analysed * self.efficiency)


#: The assays by name. Efficiencies of 1 are assumptions [U] (calibratable: below 1 an assay
#: under-reports and misses more low-level disease).
ASSAYS: Mapping[str, Assay] = MappingProxyType({
    "flow": Assay(
        name="flow",
        cells_analysed=1.0e5,
        min_events=10,
        efficiency=1.0,
        nominal_sensitivity=1.0e-4,
        source=f"multiparameter flow cytometry, sensitivity 10^-4: {_CLL_MRD}; {_KIM}. 10^5 cells and a "
               "positivity threshold of 10 clustered events are assumptions [U] (model_literature.md §7: "
               ">= 10-20 events). EuroFlow 8-colour reaches <= 10^-5 only with > 4x10^6 cells (Theunissen, "
               "Blood 2017;129:347): model that as a custom Assay.",
    ),
    "pcr": Assay(
        name="pcr",
        cells_analysed=3.0e5,
        min_events=3,
        efficiency=1.0,
        nominal_sensitivity=1.0e-5,
        source=f"ASO IGH/TCR RQ-PCR (or ddPCR), sensitivity 10^-5: {_CLL_MRD}. 3x10^5 genome equivalents "
               "(about 2 ug DNA over replicate reactions at 6.6 pg per cell) and 3 target copies are "
               "assumptions [U] chosen to give the nominal sensitivity.",
    ),
    "ngs": Assay(
        name="ngs",
        cells_analysed=3.0e6,
        min_events=3,
        efficiency=1.0,
        nominal_sensitivity=1.0e-6,
        source=f"clonoSEQ IGH/IGK/TCR NGS, sensitivity 10^-6: {_CLL_MRD}; ecosystem.md §3.5 (Blood Adv "
               "2023;7:3395). 3x10^6 genome equivalents (about 20 ug DNA at 6.6 pg per cell) and 3 sequenced "
               "clonal cells are assumptions [U] chosen to give the nominal sensitivity.",
    ),
    "morphology": Assay(
        name="morphology",
        cells_analysed=500.0,
        min_events=5,
        efficiency=1.0,
        nominal_sensitivity=1.0e-2,
        source="marrow differential count of 500 cells (counts of 200-500 cells are usual); morphology "
               "detects about 1-5% blasts and defines CR as < 5% blasts (calibration_targets.md C6; "
               "ecosystem.md §3.5). 5 blasts (1%) to call disease is an assumption [U].",
    ),
})

#: DNA per diploid human nucleated cell [ug] (6.6 pg; 1 ug gDNA is about 1.5x10^5 cells): the conventional
#: qPCR conversion, model_literature.md §7 [U: value from the sequence-based genome mass is slightly lower].
DNA_UG_PER_DIPLOID_CELL = 6.6e-6

#: Peripheral CD19+ B cells per uL at or below which B cells count as depleted [cells/uL]: the
#: blinatumomab label's depletion level (model_literature.md §7).
B_CELL_APLASIA_PER_UL = 10.0

#: Lower limits of quantification of the drug and CAR-T assays, applied when exporting model values as
#: observations (:mod:`leukosim.io.nonmem`): blinatumomab CD69 T-cell bioassay 50-100 pg/mL, inotuzumab
#: HPLC-MS/MS 1.0 ng/mL (model_literature.md §7); CAR transgene qPCR 50 copies/ug gDNA is an assumption [U]
#: (not in the reference set).
BLINATUMOMAB_LLOQ_NG_PER_ML = 0.05
INOTUZUMAB_LLOQ_NG_PER_ML = 1.0
CAR_QPCR_LLOQ_COPIES_PER_UG = 50.0


def _assay(assay: str | Assay) -> Assay:
    if isinstance(assay, Assay):
        return assay
    try:
        return ASSAYS[assay]
    except KeyError:
        raise ValueError(f"unknown assay {assay!r}; expected one of {sorted(ASSAYS)} or an Assay") from None


def limit_of_detection(assay: str | Assay) -> float:
    """Limit of detection of ``assay`` (a name in ``ASSAYS`` or an ``Assay``) as a true leukemic fraction:
    min_events / (cells_analysed x efficiency)."""
    return _assay(assay).limit_of_detection


def _fraction_and_uniform(true_fraction: ArrayLike, u: ArrayLike) -> tuple[NDArray[np.float64],
                                                                           NDArray[np.float64]]:
    fraction, uniform = np.broadcast_arrays(np.asarray(true_fraction, dtype=np.float64),
                                            np.asarray(u, dtype=np.float64))
    if np.any((fraction < 0.0) | (fraction > 1.0)):
        raise ValueError("true_fraction must lie in [0, 1] (NaN is passed through)")
    if not np.all((uniform > 0.0) & (uniform < 1.0)):
        raise ValueError("u must hold uniforms in the open interval (0, 1)")
    return fraction, uniform


def measure_mrd(true_fraction: ArrayLike, assay: str | Assay, u: ArrayLike) -> NDArray[np.float64]:
    """Measured MRD (leukemic fraction of nucleated cells) for each true fraction and uniform.

    Leukemic events ~ Poisson(true_fraction x cells_analysed x efficiency), drawn as the inverse CDF at
    ``u`` and capped at cells_analysed; the result is events / cells_analysed when events >= min_events and
    0.0 (not detected) otherwise. A NaN true fraction (no evaluable sample) gives NaN.

    Args:
        true_fraction: leukemic cells / nucleated cells in the sample, in [0, 1].
        assay: ``"flow"``, ``"pcr"``, ``"ngs"``, ``"morphology"`` or an ``Assay``.
        u: uniforms in (0, 1), broadcast against ``true_fraction``.
    """
    spec = _assay(assay)
    fraction, uniform = _fraction_and_uniform(true_fraction, u)
    events = poisson.ppf(uniform, fraction * (spec.cells_analysed * spec.efficiency))
    # Poisson is the small-fraction limit of sampling cells_analysed cells: never more events than cells
    events = np.minimum(events, spec.cells_analysed)
    measured = np.where(events >= spec.min_events, events / spec.cells_analysed, 0.0)
    return np.where(np.isnan(fraction), np.nan, measured)


def measure_blast_percent(true_fraction: ArrayLike, u: ArrayLike, *,
                          cells_counted: int | None = None) -> NDArray[np.float64]:
    """Marrow blast percent from a morphological differential count.

    Blasts counted ~ Binomial(cells_counted, true_fraction) by the inverse CDF at ``u``; the result is
    100 x blasts / cells_counted (every count is reported, no detection threshold). ``cells_counted``
    defaults to the ``"morphology"`` assay's cells_analysed (500). NaN fractions give NaN.
    """
    n = int(ASSAYS["morphology"].cells_analysed if cells_counted is None else cells_counted)
    if n < 1:
        raise ValueError("cells_counted must be >= 1")
    fraction, uniform = _fraction_and_uniform(true_fraction, u)
    blasts = binom.ppf(uniform, n, fraction)
    return 100.0 * blasts / n
