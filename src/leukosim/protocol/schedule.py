"""Compile a protocol phase into the engine's event schedule: breakpoints (phase days) with the
piecewise-constant drive between them and the boluses given at them, per patient (doses depend on
body size, caps and weight bands).

Day d of a phase is the time interval [d - 1, d) after the phase starts; an assessment on day d is
taken at time d - 1, before that day's doses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..model.chemotherapy import AGENTS, EFFECTS, INDUCTION_CLASS
from ..model.layout import (
    B_CAR_CELLS, B_HSCT, B_INO_MG, N_BOLUS, N_DRIVE, U_B_KILL, U_BLIN_RATE, U_INFECTION, U_LEUKEMIA_KILL,
    U_LEUKEMIA_KILL_OTHER, U_MARROW_KILL, U_T_KILL,
)
from ..model.registry import ParameterSet
from ..population.covariates import Covariates
from .schema import DrugAdministration, Phase, Quantity, WeightBand

__all__ = ["PhaseSchedule", "compile_phase", "resolve_phase", "Dose"]

_EFFECT_DRIVE = dict(zip(EFFECTS, (U_LEUKEMIA_KILL, U_T_KILL, U_B_KILL, U_MARROW_KILL, U_INFECTION)))


def _drive_column(effect: str, regimen: str | None) -> int:
    """The drive column of a regimen's (None: a lymphodepleting agent's) effect: leukemia kill goes to the
    induction-class or the other column, which the patient's chemosensitivity scales differently."""
    if effect == "leukemia_kill" and regimen not in INDUCTION_CLASS:
        return U_LEUKEMIA_KILL_OTHER
    return _EFFECT_DRIVE[effect]


@dataclass(frozen=True)
class Dose:
    """Doses of one drug given at one time, per patient, in the administered unit."""

    day: float  # time since phase start (days)
    drug: str
    amount: NDArray[np.float64]
    unit: str
    duration: float = 0.0  # days of a continuous infusion or chemotherapy block; 0 for a bolus


@dataclass(frozen=True)
class PhaseSchedule:
    """Breakpoint times (days since phase start, shared by all patients), drive (patients x breakpoints x
    N_DRIVE) and boluses (patients x breakpoints x N_BOLUS)."""

    times: NDArray[np.float64]
    drive: NDArray[np.float64]
    bolus: NDArray[np.float64]
    doses: tuple[Dose, ...]

    def window(self, start: float, stop: float) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                                          NDArray[np.float64]]:
        """Breakpoints in [start, stop): a breakpoint at ``start`` carries the drive active there and the
        boluses given exactly then."""
        inside = (self.times >= start) & (self.times < stop)
        active = max(int(np.searchsorted(self.times, start, side="right")) - 1, 0)
        times = self.times[inside]
        drive = self.drive[:, inside]
        bolus = self.bolus[:, inside]
        if times.size == 0 or times[0] > start:
            times = np.concatenate([[start], times])
            drive = np.concatenate([self.drive[:, active:active + 1], drive], axis=1)
            bolus = np.concatenate([np.zeros_like(self.bolus[:, :1]), bolus], axis=1)
        return times, drive, bolus


def resolve_phase(phase: Phase, phases: list[Phase]) -> tuple[list[DrugAdministration], list]:
    """Drugs and procedures of a phase, following ``same_as`` to the phase it copies."""
    if phase.same_as is None:
        return list(phase.drugs), list(phase.procedures)
    source = next(p for p in phases if p.name == phase.same_as)
    drugs, procedures = resolve_phase(source, phases)
    return drugs + list(phase.drugs), procedures + list(phase.procedures)


def _flat_dose(amount: NDArray[np.float64], covariates: Covariates, band: WeightBand | None,
               cap: Quantity | None) -> NDArray[np.float64]:
    if band is not None:
        amount = np.where(covariates.weight_kg >= band.min_weight_kg, band.dose, amount)
    if cap is not None:
        amount = np.minimum(amount, cap.value)
    return amount


def _administered(drug: DrugAdministration, covariates: Covariates) -> NDArray[np.float64]:
    """Dose per administration in the drug's flat unit (ug/day, mg or cells)."""
    per = {"mg/m2": covariates.bsa_m2, "ug/m2/day": covariates.bsa_m2, "mg/kg": covariates.weight_kg,
           "cells/kg": covariates.weight_kg}
    scale = per.get(drug.unit, np.ones_like(covariates.weight_kg))  # type: ignore[arg-type]
    return _flat_dose(drug.dose * scale, covariates, drug.weight_band, drug.max_dose)  # type: ignore[operator]


def compile_phase(phase: Phase, phases: list[Phase], covariates: Covariates,
                  parameters: ParameterSet) -> PhaseSchedule:
    """The event schedule of ``phase`` for the given patients. A transplant goes ahead (amount 1, else 0) for
    patients whose ``hsct_access_quantile`` is below ``hsct_access_probability``."""
    drugs, procedures = resolve_phase(phase, phases)
    n = len(covariates)
    edges = {0.0}
    for drug in drugs:
        if drug.drug == "chemotherapy" or drug.infusion == "continuous":
            edges.update((drug.days[0] - 1.0, float(drug.days[1])))
        else:
            for day in drug.days:
                edges.update((day - 1.0, float(day)))
    edges.update(proc.day - 1.0 for proc in procedures)
    times = np.array(sorted(t for t in edges if t < phase.days))
    drive = np.zeros((n, times.size, N_DRIVE))
    bolus = np.zeros((n, times.size, N_BOLUS))
    doses: list[Dose] = []

    def span(first: float, last: float) -> NDArray[np.bool_]:
        return (times >= first) & (times < last)

    for drug in drugs:
        if drug.drug == "chemotherapy":
            active = span(drug.days[0] - 1.0, drug.days[1])
            for effect in EFFECTS:
                drive[:, active, _drive_column(effect, drug.regimen)] += (parameters[f"chemo_{drug.regimen}_{effect}"]
                                                                          * drug.intensity)
            doses.append(Dose(drug.days[0] - 1.0, f"chemotherapy:{drug.regimen}",
                              np.full(n, drug.intensity), "intensity", drug.days[1] - drug.days[0] + 1.0))
            continue
        amount = _administered(drug, covariates)
        if drug.drug == "blinatumomab":
            drive[:, span(drug.days[0] - 1.0, drug.days[1]), U_BLIN_RATE] += amount[:, None]
            doses.append(Dose(drug.days[0] - 1.0, drug.drug, amount, "ug/day", drug.days[1] - drug.days[0] + 1.0))
            continue
        for day in drug.days:
            at = int(np.searchsorted(times, day - 1.0))
            if drug.drug == "inotuzumab_ozogamicin":
                bolus[:, at, B_INO_MG] += amount
                doses.append(Dose(day - 1.0, drug.drug, amount, "mg"))
            elif drug.drug == "tisagenlecleucel":
                bolus[:, at, B_CAR_CELLS] += amount
                doses.append(Dose(day - 1.0, drug.drug, amount, "cells"))
            else:  # lymphodepleting agent: effect on the day of the dose, proportional to mg/m2
                assert drug.drug in AGENTS
                per_m2 = amount / covariates.bsa_m2
                ratio = per_m2 / parameters[f"{drug.drug}_reference_dose"]
                for effect in EFFECTS:
                    drive[:, span(day - 1.0, float(day)), _drive_column(effect, None)] += (
                        parameters[f"{drug.drug}_{effect}"] * ratio)[:, None]
                doses.append(Dose(day - 1.0, drug.drug, amount, "mg"))
    transplanted = (covariates.hsct_access_quantile < parameters["hsct_access_probability"]).astype(np.float64)
    for proc in procedures:
        bolus[:, int(np.searchsorted(times, proc.day - 1.0)), B_HSCT] = transplanted
        doses.append(Dose(proc.day - 1.0, proc.procedure, transplanted, proc.conditioning))
    return PhaseSchedule(times, drive, bolus, tuple(doses))
