"""Blinatumomab: one-compartment linear PK with BSA-scaled clearance, solved analytically between
infusion-rate changes (Clements et al. 2020 Clin Pharmacokinet 59:463). Pharmacodynamics (T-cell
engagement, kill depending on the effector:target ratio) use the T-cell parameters in ``t_cells.py``."""

from __future__ import annotations

import math

import numba

from .parameter import Parameter

PARAMETERS = (
    Parameter("blin_clearance", 53.28, "L/day", "Clements 2020 CL 2.22 L/h at BSA 1.876 m2 [P/S]", False,
              "typical clearance at the reference BSA", iiv_cv=0.476),
    Parameter("blin_clearance_bsa_exponent", 0.62, "-", "Clements 2020 [S]", False, "BSA exponent on clearance"),
    Parameter("blin_volume", 5.98, "L", "Clements 2020 Vc [P/S]; scaled linearly by BSA per label pediatric "
              "Vd in L/m2 (drugs.com) [P]", False, "central volume at the reference BSA"),
    Parameter("blin_reference_bsa", 1.876, "m2", "Clements 2020 [S]", False, "reference BSA of the covariate model"),
)


@numba.njit(cache=True, inline="always", error_model="numpy")
def blinatumomab_amount(amount_start: float, rate: float, elimination: float, elapsed: float) -> float:
    """Amount in the body (ug) after ``elapsed`` days of a constant infusion ``rate`` (ug/day) from
    ``amount_start``; exact solution of dA/dt = rate - k A."""
    decay = math.exp(-elimination * elapsed)
    return amount_start * decay + rate / elimination * (1.0 - decay)
