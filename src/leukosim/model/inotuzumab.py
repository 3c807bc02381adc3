"""Inotuzumab ozogamicin: two-compartment PK with time-dependent clearance (Wu et al. 2024 Clin
Pharmacokinet 63:981, pooled adult + pediatric ITCC-059, lean-body-mass covariates), Emax kill of CD22+
cells (less for CD22-low) and hepatic sinusoidal injury driving SOS/VOD risk."""

from __future__ import annotations

import numba

from .parameter import Parameter

PARAMETERS = (
    Parameter("ino_clearance_ss", 0.7268, "L/day", "[D] Wu 2024 CL_SS 0.130 x (1-0.767 ALL) L/h x 24 [S]", False,
              "steady-state linear clearance at LBM 52.7 kg", iiv_cv=0.40),
    Parameter("ino_clearance_ss_lbm_exponent", 1.05, "-", "Wu 2024 [S]", False, "LBM exponent on CL_SS"),
    Parameter("ino_clearance_time", 8.712, "L/day", "[D] Wu 2024 CL_TIME 0.569 x (1-0.362 ALL) L/h x 24 [S]", False,
              "initial time-dependent (target-mediated surrogate) clearance", iiv_cv=0.737),
    Parameter("ino_clearance_time_lbm_exponent", 0.687, "-", "Wu 2024 [S]", False, "LBM exponent on CL_TIME"),
    Parameter("ino_decay_rate", 0.1052, "1/day", "[D] Wu 2024 kdes 0.0577 x (1-0.924 ALL) 1/h x 24 [S]", False,
              "decay rate of the time-dependent clearance", iiv_cv=0.597),
    Parameter("ino_decay_blast_exponent", -0.0484, "-", "Wu 2024 [S]", False, "exponent of PB blasts (1e9/L) / 0.352"),
    Parameter("ino_decay_age_exponent", -0.296, "-", "Wu 2024 [S]", False, "exponent of age / 60 y on kdes"),
    Parameter("ino_central_volume", 6.49, "L", "Wu 2024 Vc [S]", False, "central volume at LBM 52.7 kg",
              iiv_cv=0.401),
    Parameter("ino_central_volume_lbm_exponent", 0.977, "-", "Wu 2024 [S]", False, "LBM exponent on Vc"),
    Parameter("ino_intercompartmental_clearance", 1.0488, "L/day", "Wu 2024 Q 0.0437 L/h [S]", False,
              "intercompartmental clearance"),
    Parameter("ino_peripheral_volume", 4.74, "L", "Wu 2024 Vp [S]", False, "peripheral volume"),
    Parameter("ino_reference_lbm", 52.7, "kg", "Wu 2024 [S]", False, "reference lean body mass"),
    Parameter("ino_kill_max", 0.5, "1/day", "none: CD22/calicheamicin cell constants not sourced; calibrate to "
              "INO-VATE CR/CRi [U]; spread: CD22 site density and calicheamicin sensitivity vary [U]", True,
              "maximal kill rate of CD22+ cells", iiv_cv=1.0, bounds=(0.05, 3.0)),
    Parameter("ino_ec50", 30.0, "ng/mL", "none; calibrate (label mean Cmax 308 ng/mL) [U]", True,
              "concentration for half-maximal kill of CD22+ cells", bounds=(0.3, 1000.0)),
    Parameter("ino_ec50_cd22_low_factor", 20.0, "-", "assumption: CD22-low blasts resist InO (Front Immunol 2023) [U]",
              True, "EC50 multiplier for CD22-low cells"),
    Parameter("liver_injury_rate", 1.0e-4, "1/(day ng/mL)", "none; calibrate to INO-VATE VOD 14% [U]", True,
              "sinusoidal injury accrual per unit inotuzumab concentration"),
    Parameter("liver_repair_rate", 0.01, "1/day", "assumption: injury persists for months [U]", True,
              "repair of sinusoidal injury"),
)


@numba.njit(cache=True, inline="always", error_model="numpy")
def emax(concentration: float, ec50: float) -> float:
    """Fractional effect C / (EC50 + C)."""
    if concentration <= 0.0:
        return 0.0
    return concentration / (ec50 + concentration)
