"""Height and weight from a pediatric growth reference, and body-surface area.

Height and BMI follow the LMS method (Cole & Green, Stat Med 1992;11:1305): a measurement with SDS z is
``M * (1 + L*S*z)**(1/L)`` (``M * exp(S*z)`` when L = 0), with L, M, S by age and sex taken from the
references maintained in the ``rcpchgrowth`` package (RCPCH, https://github.com/rcpch/digital-growth-charts):

- ``"cdc"``: CDC 2000 growth charts, 2-20 y (Kuczmarski et al., Vital Health Stat 11, 2002;246), with the WHO
  2006 standard below 2 y as the CDC recommends (Grummer-Strawn et al., MMWR 2010;59(RR-9)), and above the
  95th BMI centile the CDC 2022 extended BMI (Wei et al., 2020; Hales et al., NCHS Vital Health Stat 2022).
- ``"uk-who"``: UK-WHO, i.e. the WHO 2006 standard from 2 weeks to 4 y and UK90 (Cole, Freeman & Preece,
  Stat Med 1998;17:407) from 4 to 20 y.

Weight is BMI times height squared, so a child's height SDS and BMI SDS are the two independent draws. The
references end at 20 y: an older patient takes the height and BMI of a 20-year-old (adult height; the BMI of
middle age is a few kg/m2 higher, so an adult's weight and BSA are somewhat low).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from rcpchgrowth.cdc import cdc_reference
from rcpchgrowth.constants.reference_constants import BMI, CDC, FEMALE, HEIGHT, MALE
from rcpchgrowth.global_functions import fetch_lms, lms_value_array_for_measurement_for_reference
from scipy.special import ndtr, ndtri

__all__ = ["GrowthReference", "BsaFormula", "SDS_LIMIT", "height_weight_from_sds", "bsa_m2"]

GrowthReference = Literal["cdc", "uk-who"]
BsaFormula = Literal["mosteller", "haycock", "dubois", "gehan_george"]

#: Height and BMI SDS are truncated to [-SDS_LIMIT, SDS_LIMIT].
SDS_LIMIT = 3.0

_GRID_STEP_YEARS = 0.05
_GRID_AGES = np.arange(401) / 20.0  # 0 to 20 y every 0.05 y; exact multiples so reference switch ages hit
_CDC_EXTENDED_BMI_Z = 1.645  # 95th centile: above it the CDC 2022 extended BMI replaces the LMS curve


def _lms_rows(reference: str, age: float, measurement: str, sex: str, youngest: bool) -> list[dict]:
    """rcpchgrowth's LMS rows for the reference segment covering ``age`` (``youngest``: the segment ending
    there, at an age where two segments meet)."""
    try:
        return lms_value_array_for_measurement_for_reference(reference, age, measurement, sex, youngest)
    except LookupError:
        if reference == CDC and measurement == BMI and 0.0 <= age < 2.0:
            # rcpchgrowth's CDC uses WHO 2006 below 2 y for length and weight, not BMI: take the same table
            return cdc_reference(age, measurement, youngest)["measurement"][measurement][sex]
        raise


@lru_cache(maxsize=None)
def _lms_table(reference: str, measurement: str, sex: str, youngest: bool) -> NDArray[np.float64]:
    """L, M, S and the CDC extended-BMI sigma (NaN where none) on the age grid, shape (4, n_grid).

    ``youngest`` takes, at an age where two reference segments meet (2 y, 4 y), the value of the segment
    ending there, i.e. the limit from the left. Ages without data (UK-WHO BMI before 2 weeks) hold the
    nearest value.
    """
    table = np.full((4, _GRID_AGES.size), np.nan)
    for i, age in enumerate(_GRID_AGES):
        try:
            rows = _lms_rows(reference, float(age), measurement, sex, youngest)
        except LookupError:
            continue
        # a segment may start just after its switch age (WHO 2-5 y BMI at 2.0014 y): clamp as rcpchgrowth does
        lms = fetch_lms(min(max(float(age), rows[0]["decimal_age"]), rows[-1]["decimal_age"]), rows)
        table[:, i] = lms["l"], lms["m"], lms["s"], lms.get("sigma", np.nan)
    have = ~np.isnan(table[1])
    for row in range(3):
        table[row] = np.interp(_GRID_AGES, _GRID_AGES[have], table[row, have])
    table.setflags(write=False)
    return table


def _lms_at(reference: str, measurement: str, age_years: NDArray[np.float64],
            male: NDArray[np.bool_]) -> NDArray[np.float64]:
    """L, M, S, sigma at each age, shape (4, n): linear between grid points within one reference segment,
    held beyond 20 y."""
    position = np.clip(np.asarray(age_years, dtype=np.float64), 0.0, _GRID_AGES[-1]) / _GRID_STEP_YEARS
    below = np.minimum(position.astype(np.int64), _GRID_AGES.size - 2)
    weight = position - below
    out = np.empty((4, position.size))
    for sex, chosen in ((MALE, male), (FEMALE, ~male)):
        lower = _lms_table(reference, measurement, sex, False)[:, below[chosen]]
        upper = _lms_table(reference, measurement, sex, True)[:, below[chosen] + 1]
        out[:, chosen] = lower + weight[chosen] * (upper - lower)
    return out


def _lms_measurement(lms: NDArray[np.float64], z: NDArray[np.float64]) -> NDArray[np.float64]:
    """The LMS measurement ``M (1 + L S z)^(1/L)`` (``M exp(S z)`` for L = 0), vectorised."""
    l, m, s = lms[0], lms[1], lms[2]
    small = np.abs(l) < 1e-12
    safe_l = np.where(small, 1.0, l)
    power = m * np.power(1.0 + safe_l * s * z, 1.0 / safe_l)
    return np.where(small, m * np.exp(s * z), power)


def height_weight_from_sds(
    age_years: NDArray[np.float64],
    male: NDArray[np.bool_],
    height_sds: NDArray[np.float64],
    bmi_sds: NDArray[np.float64],
    reference: GrowthReference = "cdc",
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Height (cm; recumbent length below 2 y) and weight (kg) for age (y), sex and height / BMI SDS.

    SDS beyond +-``SDS_LIMIT`` are clipped; ages above 20 y use the 20-y reference values.
    """
    male = np.asarray(male, dtype=bool)
    height_z = np.clip(height_sds, -SDS_LIMIT, SDS_LIMIT)
    bmi_z = np.clip(bmi_sds, -SDS_LIMIT, SDS_LIMIT)
    height_cm = _lms_measurement(_lms_at(reference, HEIGHT, age_years, male), height_z)
    bmi_lms = _lms_at(reference, BMI, age_years, male)
    extended = (bmi_z > _CDC_EXTENDED_BMI_Z) & ~np.isnan(bmi_lms[3])
    bmi = _lms_measurement(bmi_lms, np.where(extended, _CDC_EXTENDED_BMI_Z, bmi_z))
    # CDC extended BMI: the 95th centile plus a half-normal tail of scale sigma (the LMS curve fails above it)
    bmi[extended] += bmi_lms[3, extended] * ndtri(10.0 * ndtr(bmi_z[extended]) - 9.0)
    return height_cm, bmi * (height_cm / 100.0) ** 2


def bsa_m2(height_cm: NDArray[np.float64] | float, weight_kg: NDArray[np.float64] | float,
           formula: BsaFormula = "mosteller") -> NDArray[np.float64]:
    """Body-surface area (m2) from height (cm) and weight (kg).

    ``mosteller``: sqrt(h w / 3600) (Mosteller, N Engl J Med 1987;317:1098).
    ``haycock``: 0.024265 h^0.3964 w^0.5378 (Haycock et al., J Pediatr 1978;93:62).
    ``dubois``: 0.007184 h^0.725 w^0.425 (Du Bois & Du Bois, Arch Intern Med 1916;17:863).
    ``gehan_george``: 0.0235 h^0.42246 w^0.51456 (Gehan & George, Cancer Chemother Rep 1970;54:225).
    """
    h = np.asarray(height_cm, dtype=np.float64)
    w = np.asarray(weight_kg, dtype=np.float64)
    if formula == "mosteller":
        return np.sqrt(h * w / 3600.0)
    if formula == "haycock":
        return 0.024265 * h**0.3964 * w**0.5378
    if formula == "dubois":
        return 0.007184 * h**0.725 * w**0.425
    if formula == "gehan_george":
        return 0.0235 * h**0.42246 * w**0.51456
    raise ValueError(f"unknown BSA formula {formula!r}; choose mosteller, haycock, dubois or gehan_george")
