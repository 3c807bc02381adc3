"""SBML Level 3 Version 2 export of the deterministic model of one virtual patient on one protocol path.

Exported (``patient_sbml``, written with python-libsbml):

* the 22 states of ``model.layout`` (ids ``layout.STATE_NAMES``) as parameters with rate rules. Cell numbers are
  on the natural-log scale as in the engine; assignment rules give them as counts (``leukemia_cd19neg`` ...);
* the right-hand side of ``model.rhs.derivatives``, written a second time as SBML formulas in one table
  (``_rules``): the test ``tests/test_sbml.py`` proves that libRoadRunner on the export reproduces leukosim's
  trajectories. Serum IL-6 and the drug concentrations are assignment rules;
* the patient's individual parameters (registry values with between-patient variability, and the quantities
  derived from covariates), each with its unit (SBML unit definitions) and, as annotation and notes, its source;
* the doses of one phase path of one arm as time-triggered, persistent SBML events without delay: inotuzumab
  boluses, the CAR-T infusion, allogeneic transplant (conditioning and graft), blinatumomab infusion-rate
  changes (re-anchoring its analytic one-compartment PK as the engine does), and the piecewise-constant
  chemotherapy and lymphodepletion kill rates and infection hazard. An event closes the post-transplant
  SOS/VOD window.

Not exported, because they belong to the engine's stochastic or graded layers: clone extinction and resampling
(the Kendall layer's ln K states are exported, the extinction thresholds are not: a clone that starts absent stays
absent, none goes extinct), relapse detection, death from the cumulative hazards (the hazards are exported),
CRS/ICANS grading and its management (tocilizumab, corticosteroids, blinatumomab interruption), assessments
and the decisions they drive: the phase path is fixed at export (by default the path of a complete responder,
``engine.reference.responder_path``). The export is the problem ``engine.reference.deterministic_course`` states
and ``engine.reference.solve_patient`` solves.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from xml.sax.saxutils import quoteattr

import libsbml
import numpy as np

from .. import __version__
from ..engine.reference import DeterministicCourse, deterministic_course
from ..model.disease import CD19_POSITIVE, CD22_POSITIVE, CLASS_NAMES
from ..model.layout import (
    B_CAR_CELLS, B_HSCT, B_INO_MG, C_ALIVE, C_BLIN_AMOUNT, C_BLIN_RATE, C_BLIN_TIME, C_CAR_PRESENT, C_HSCT_TIME,
    C_INO_FIRST, D, DERIVED_NAMES, N_CLASSES, S_CAR_EFFECTOR, S_CAR_EXHAUSTED, S_CAR_MEMORY, S_EXTINCTION,
    S_LEUKEMIA, STATE_NAMES, U_B_KILL, U_BLIN_RATE, U_INFECTION, U_LEUKEMIA_KILL, U_LEUKEMIA_KILL_OTHER,
    U_MARROW_KILL, U_T_KILL,
)
from ..model.registry import INDEX, PARAMETERS, ParameterSet
from ..model.rhs import SOS_WINDOW_DAYS
from ..protocol.schema import Protocol

__all__ = ["ANNOTATION_NAMESPACE", "DRIVE_IDS", "course_sbml", "patient_sbml"]

#: Namespace of the machine-readable parameter annotations (unit, source, calibration flag, typical value).
ANNOTATION_NAMESPACE = "urn:leukosim:sbml:parameter:1"

# ----------------------------------------------------------------------------------------------- units
_SECOND, _ITEM, _GRAM, _KILOGRAM, _LITRE = (libsbml.UNIT_KIND_SECOND, libsbml.UNIT_KIND_ITEM, libsbml.UNIT_KIND_GRAM,
                                            libsbml.UNIT_KIND_KILOGRAM, libsbml.UNIT_KIND_LITRE)
_PER_DAY = (_SECOND, -1, 0, 86400.0)
#: leukosim unit -> (SBML unit id, its factors (kind, exponent, scale, multiplier)); "dimensionless" is built in.
_UNITS: dict[str, tuple[str, tuple[tuple[int, int, int, float], ...]]] = {
    "-": ("dimensionless", ()),
    "log10": ("dimensionless", ()),
    "day": ("day", ((_SECOND, 1, 0, 86400.0),)),
    "1/day": ("per_day", (_PER_DAY,)),
    "cells": ("cell", ((_ITEM, 1, 0, 1.0),)),
    "cells/day": ("cell_per_day", ((_ITEM, 1, 0, 1.0), _PER_DAY)),
    "kg": ("kg", ((_KILOGRAM, 1, 0, 1.0),)),
    "L": ("L", ((_LITRE, 1, 0, 1.0),)),
    "L/day": ("L_per_day", ((_LITRE, 1, 0, 1.0), _PER_DAY)),
    "mg": ("mg", ((_GRAM, 1, -3, 1.0),)),
    "ug/day": ("ug_per_day", ((_GRAM, 1, -6, 1.0), _PER_DAY)),
    "ug": ("ug", ((_GRAM, 1, -6, 1.0),)),
    "ng/mL": ("ng_per_mL", ((_GRAM, 1, -9, 1.0), (_LITRE, -1, -3, 1.0))),
    "pg/mL": ("pg_per_mL", ((_GRAM, 1, -12, 1.0), (_LITRE, -1, -3, 1.0))),
    "1/(day ng/mL)": ("per_day_per_ng_per_mL", (_PER_DAY, (_GRAM, -1, -9, 1.0), (_LITRE, 1, -3, 1.0))),
    "pg/mL per (cells/day/kg)": ("pg_per_mL_per_cell_per_day_per_kg",
                                 ((_GRAM, 1, -12, 1.0), (_LITRE, -1, -3, 1.0), (_ITEM, -1, 0, 1.0),
                                  (_SECOND, 1, 0, 86400.0), (_KILOGRAM, 1, 0, 1.0))),
}

# ------------------------------------------------------------------------------------- identifiers
_CLASSES = tuple(STATE_NAMES[S_LEUKEMIA + k].removeprefix("ln_leukemia_") for k in range(N_CLASSES))
_CD22_LOW = CLASS_NAMES.index("CD22-low")  # the class inotuzumab kills at a higher EC50 (rhs.derivatives)
#: Derived per-patient quantities whose name is also a registry parameter (the typical value) get a suffix.
_DERIVED_IDS = {name: f"{name}_individual" if name in INDEX else name for name in DERIVED_NAMES}
#: SBML ids of the piecewise-constant drive (``layout.U_*``) set by the dosing events; blinatumomab is handled
#: by re-anchoring its analytic PK (``blin_rate``).
DRIVE_IDS = {U_LEUKEMIA_KILL: "drive_leukemia_kill", U_T_KILL: "drive_t_cell_kill", U_B_KILL: "drive_b_cell_kill",
             U_MARROW_KILL: "drive_marrow_kill", U_INFECTION: "drive_infection_hazard",
             U_LEUKEMIA_KILL_OTHER: "drive_leukemia_kill_other"}
#: Units and meaning of the derived per-patient quantities the model reads (population/individual.py).
_DERIVED: dict[str, tuple[str, str]] = {
    "weight_kg": ("kg", "body weight (covariate)"),
    "marrow_capacity": ("cells", "marrow cells at full occupancy: marrow_cells_per_kg x weight x age cellularity"),
    "b_source": ("cells/day", "B-precursor production at steady state"),
    "b_precursor_normal": ("cells", "B precursors at steady state: b_precursors_per_kg x weight"),
    "t_normal": ("cells", "homeostatic T-cell pool: t_cells_per_kg x weight"),
    "lymphocyte_space": ("cells", "lymphocyte niche: lymphocyte_space_per_kg x weight"),
    "marrow_normal": ("cells", "normal haematopoietic cells: marrow_capacity - B precursors"),
    "blin_elimination": ("1/day", "blinatumomab elimination rate: BSA-scaled clearance / volume"),
    "blin_volume": ("L", "blinatumomab central volume scaled by BSA"),
    "ino_clearance_ss": ("L/day", "inotuzumab steady-state clearance scaled by lean body mass"),
    "ino_clearance_time": ("L/day", "inotuzumab time-dependent clearance scaled by lean body mass"),
    "ino_decay": ("1/day", "decay of the time-dependent clearance (peripheral blasts, age)"),
    "ino_central_volume": ("L", "inotuzumab central volume scaled by lean body mass"),
    "chemosensitivity": ("-", "chemosensitivity to induction-class regimens (covariate x disease-stage factor)"),
    "chemosensitivity_other": ("-", "chemosensitivity to the other regimens and agents (covariate ^ "
                                    "chemosensitivity_shared_exponent x disease-stage factor x own random "
                                    "effect)"),
    "t_cell_fitness": ("-", "T-cell fitness (covariate)"),
    "t_cell_kill_sensitivity": ("-", "sensitivity of the patient's leukemia to T-cell killing (random effect)"),
    "prior_hsct": ("-", "1 after a prior allogeneic transplant (covariate)"),
    "marrow_reserve": ("-", "factor on normal_marrow_regrowth (disease-stage median x random effect)"),
    "car_exhaustion_factor": ("-", "factor on car_exhaustion_rate (t_cell_resistant_car_exhaustion_factor for a "
                                   "leukemia resistant to T-cell killing, else 1)"),
}
_STATE_UNITS = {"ino_central_mg": "mg", "ino_peripheral_mg": "mg"}  # every other state is dimensionless


def _alive(k: int) -> str:
    return f"alive_{_CLASSES[k]}"


_FUNCTIONS = {
    # rhs uses model.t_cells.hill, model.inotuzumab.emax and integrator._log_add
    "hill": "lambda(x, k, n, piecewise((x / k)^n / (1 + (x / k)^n), x > 0, 0))",
    "emax": "lambda(c, ec50, piecewise(c / (ec50 + c), c > 0, 0))",
    "log_add": "lambda(a, b, max(a, b) + ln(1 + exp(-abs(a - b))))",
}


def _rules() -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """The right-hand side of ``model.rhs.derivatives`` as SBML formulas: assignment rules (id, unit, formula) in
    evaluation order, and the rate rule of every state (by state id)."""
    cells = [f"leukemia_{c}" for c in _CLASSES]
    cd19 = " + ".join(cell for cell, positive in zip(cells, CD19_POSITIVE) if positive > 0.5)
    rules: list[tuple[str, str, str]] = [
        (cells[k], "cells", f"piecewise(exp(ln_leukemia_{_CLASSES[k]}), {_alive(k)} > 0.5, 0)")
        for k in range(N_CLASSES)
    ] + [
        ("total_leukemia", "cells", " + ".join(cells)),
        ("cd19_leukemia", "cells", cd19),
        ("b_precursor", "cells", "exp(ln_b_precursor)"),
        ("b_mature", "cells", "exp(ln_b_mature)"),
        ("normal_marrow", "cells", "exp(ln_normal_marrow)"),
        ("t_resting", "cells", "exp(ln_t_resting)"),
        ("t_active", "cells", "exp(ln_t_active)"),
        ("car_effector", "cells", "piecewise(exp(ln_car_effector), car_present > 0.5, 0)"),
        ("car_memory", "cells", "piecewise(exp(ln_car_memory), car_present > 0.5, 0)"),
        ("car_exhausted", "cells", "piecewise(exp(ln_car_exhausted), car_present > 0.5, 0)"),
        ("lymphocytes", "cells", "t_resting + t_active + car_effector + car_memory + car_exhausted"),
        # drug exposure (blinatumomab.py: exact one-compartment solution from the last rate change)
        ("blin_amount", "ug", ("blin_amount_anchor * exp(-blin_elimination * (time - blin_time_anchor)) + blin_rate "
                               "/ blin_elimination * (1 - exp(-blin_elimination * (time - blin_time_anchor)))")),
        ("blin_concentration", "ng/mL", "blin_amount / blin_volume_individual"),
        ("ino_concentration", "ng/mL", "1000 * ino_central_mg / ino_central_volume_individual"),
        # blinatumomab pharmacodynamics (t_cells.py)
        ("cd19_targets", "cells", "cd19_leukemia + b_precursor + b_mature"),
        ("blin_drug_activation", "-", ("piecewise(blin_concentration / (blin_concentration + blin_ec50_activation), "
                                       "blin_concentration > 0, 0)")),
        ("blin_drug_kill", "-", ("piecewise(blin_concentration / (blin_concentration + blin_ec50_kill), "
                                 "blin_concentration > 0, 0)")),
        ("activation", "1/day", ("blin_t_activation_rate * blin_vm_t * hill(cd19_targets / t_resting, blin_km_bt, "
                                 "blin_hill_bt) * blin_drug_activation")),
        ("blin_marrow_kill", "1/day", ("blin_kill_rate * blin_marrow_kill_efficiency * blin_vm_b * t_cell_fitness "
                                       "* hill(t_marrow_fraction * t_active / (cd19_leukemia + b_precursor), "
                                       "blin_km_tb, blin_hill_tb) * blin_drug_kill")),
        ("blin_blood_kill", "1/day", ("blin_blood_kill_max * t_cell_fitness * hill(t_active / b_mature, "
                                      "blin_km_tb * blin_marrow_kill_efficiency, blin_hill_tb) * blin_drug_kill")),
        # CAR-T kill (car_t.py), graft-versus-leukemia (transplant.py)
        ("car_kill", "1/day", "car_kill_max * car_effector / (car_kill_half_saturation + car_effector)"),
        ("gvl", "1/day", ("piecewise(gvl_kill_max * (1 - exp(-(time - hsct_time) / gvl_onset_days)), "
                          "hsct_time >= 0, 0)")),
        # leukemia (disease.py)
        ("leukemia_birth", "1/day", ("(leukemia_net_growth + leukemia_death_rate) "
                                     "* max(0, 1 - total_leukemia / marrow_capacity)")),
        ("chemo_kill", "1/day", (f"{DRIVE_IDS[U_LEUKEMIA_KILL]} * chemosensitivity "
                                 f"+ {DRIVE_IDS[U_LEUKEMIA_KILL_OTHER]} * chemosensitivity_other")),
        ("ino_kill", "1/day", "ino_kill_max * emax(ino_concentration, ino_ec50)"),
        ("ino_kill_cd22_low", "1/day", "ino_kill_max * emax(ino_concentration, ino_ec50 * ino_ec50_cd22_low_factor)"),
    ]
    rates: dict[str, str] = {}
    switches = ("", "switch_cd19_loss", "switch_cd22_low", "switch_lineage")
    for k, name in enumerate(_CLASSES):
        immune = "(car_kill + blin_marrow_kill) * t_cell_kill_sensitivity" if CD19_POSITIVE[k] > 0.5 else "0"
        ino = "ino_kill" if CD22_POSITIVE[k] > 0.5 else ("ino_kill_cd22_low" if k == _CD22_LOW else "0")
        rules.append((f"immune_kill_{name}", "1/day", immune))
        rules.append((f"death_{name}", "1/day", f"leukemia_death_rate + chemo_kill + immune_kill_{name} + {ino} + gvl"))
        if k == 0:
            rate = f"leukemia_birth - death_{name} - ({' + '.join(switches[1:])})"
        else:
            rate = (f"leukemia_birth - death_{name} + {switches[k]} * {_alive(0)} "
                    f"* exp(ln_leukemia_{_CLASSES[0]} - ln_leukemia_{name})")
        rates[f"ln_leukemia_{name}"] = f"piecewise({rate}, {_alive(k)} > 0.5, 0)"
        rates[STATE_NAMES[S_EXTINCTION + k]] = (f"piecewise(death_{name} * exp(-ln_leukemia_{name} - "
                                                f"{STATE_NAMES[S_EXTINCTION + k]}), {_alive(k)} > 0.5, 0)")
    rules += [
        # normal haematopoiesis and B lineage (disease.py, b_lineage.py)
        ("b_production", "cells/day", ("b_source * min(1, normal_marrow / marrow_normal) "
                                       "* max(0, 1 - total_leukemia / marrow_capacity)")),
        ("b_immune_kill_marrow", "1/day", "car_kill + blin_marrow_kill"),
        ("b_immune_kill_blood", "1/day", "car_kill + blin_blood_kill"),
        # T cells (t_cells.py) and CAR-T (car_t.py)
        ("lymphocyte_space_free", "-", "max(0, 1 - lymphocytes / lymphocyte_space)"),
        ("t_proliferation", "1/day", ("t_activated_proliferation * t_cell_fitness * lymphocyte_space_free "
                                      "* blin_drug_activation")),
        ("car_signal", "-", "cd19_targets / (cd19_targets + car_antigen_ec50)"),
        ("car_expansion", "1/day", "car_expansion_rate * t_cell_fitness * car_signal * lymphocyte_space_free"),
        ("car_activation", "cells/day", "car_expansion * car_effector"),
        ("car_loss", "1/day", f"{DRIVE_IDS[U_T_KILL]} + car_rejection_rate * t_resting / t_normal"),
        # inotuzumab clearance (inotuzumab.py); death hazards (transplant.py, toxicity.py)
        ("ino_clearance", "L/day", ("ino_clearance_ss_individual + piecewise(ino_clearance_time_individual "
                                    "* exp(-ino_decay * (time - ino_first_dose_time)), ino_first_dose_time >= 0, 0)")),
        ("trm_rate", "1/day", ("piecewise(trm_hazard * exp(-(time - hsct_time) / trm_decay_days) "
                               "* piecewise(trm_second_transplant_factor, prior_hsct > 0.5, 1), hsct_time >= 0, 0)")),
        ("sos_rate", "1/day", ("piecewise(sos_hazard_per_injury * liver_injury * sos_transplant_factor "
                               "+ sos_transplant_baseline, sos_window > 0.5, sos_hazard_per_injury * liver_injury)")),
        ("il6", "pg/mL", "il6_baseline + (il6_per_kill * car_kill * ("
                         + " + ".join(f"t_cell_kill_sensitivity * {cell}" for k, cell in enumerate(cells)
                                      if CD19_POSITIVE[k] > 0.5)
                         + " + b_precursor + b_mature)"
                         " + il6_per_activation * (activation * t_resting + car_activation)) / weight_kg"),
    ]
    car = "car_present > 0.5"
    rates |= {
        "ln_normal_marrow": f"normal_marrow_regrowth * marrow_reserve * (1 - (total_leukemia + normal_marrow "
                            f"+ b_precursor) / marrow_capacity) - {DRIVE_IDS[U_MARROW_KILL]}",
        "ln_b_precursor": f"b_production / b_precursor - b_maturation_rate - b_precursor_apoptosis "
                          f"- {DRIVE_IDS[U_B_KILL]} - b_immune_kill_marrow - ino_kill",
        "ln_b_mature": f"b_maturation_rate * b_precursor / b_mature - b_mature_death - {DRIVE_IDS[U_B_KILL]} "
                       f"- b_immune_kill_blood - ino_kill",
        "ln_t_resting": f"t_homeostatic_rate * (1 - lymphocytes / t_normal) - activation "
                        f"+ t_deactivation_rate * t_active / t_resting - {DRIVE_IDS[U_T_KILL]}",
        "ln_t_active": f"activation * t_resting / t_active - t_deactivation_rate - t_activated_apoptosis "
                       f"+ t_proliferation - {DRIVE_IDS[U_T_KILL]}",
        "ln_car_effector": f"piecewise(car_expansion - car_contraction_rate * (1 - car_signal) - car_memory_formation "
                           f"- car_exhaustion_rate * car_exhaustion_factor * car_signal "
                           f"+ car_memory_reactivation * car_signal * exp(ln_car_memory - ln_car_effector) "
                           f"- car_loss, {car}, 0)",
        "ln_car_memory": f"piecewise(car_memory_formation * exp(ln_car_effector - ln_car_memory) - car_memory_decay "
                         f"- car_memory_reactivation * car_signal - car_loss, {car}, 0)",
        "ln_car_exhausted": f"piecewise(car_exhaustion_rate * car_exhaustion_factor * car_signal "
                            f"* exp(ln_car_effector - ln_car_exhausted) "
                            f"- car_exhausted_death - car_loss, {car}, 0)",
        "ino_central_mg": "-(ino_clearance + ino_intercompartmental_clearance) / ino_central_volume_individual "
                          "* ino_central_mg + ino_intercompartmental_clearance / ino_peripheral_volume "
                          "* ino_peripheral_mg",
        "ino_peripheral_mg": "ino_intercompartmental_clearance / ino_central_volume_individual * ino_central_mg "
                             "- ino_intercompartmental_clearance / ino_peripheral_volume * ino_peripheral_mg",
        "liver_injury": "liver_injury_rate * ino_concentration - liver_repair_rate * liver_injury",
        "hazard_infection": (f"{DRIVE_IDS[U_INFECTION]} "
                             "+ marrow_failure_death_hazard * total_leukemia / marrow_capacity"),
        "hazard_trm": "trm_rate",
        "hazard_sos": "sos_rate",
    }
    return rules, rates


def _bolus_steps(bolus: np.ndarray) -> list[tuple[str, str]]:
    """The boluses of one breakpoint as assignments applied one after the other, in the order and with the
    arithmetic of ``engine.integrator._apply_bolus``."""
    steps: list[tuple[str, str]] = []
    if bolus[B_INO_MG] > 0.0:
        steps += [("ino_central_mg", f"ino_central_mg + {float(bolus[B_INO_MG])!r}"),
                  ("ino_first_dose_time", "piecewise(time, ino_first_dose_time < 0, ino_first_dose_time)")]
    if bolus[B_CAR_CELLS] > 0.0:
        cells = f"({float(bolus[B_CAR_CELLS])!r} * car_viable_fraction)"
        steps += [
            ("ln_car_effector", f"piecewise(log_add(ln_car_effector, ln({cells})), car_present > 0.5, ln({cells}))"),
            ("ln_car_memory", f"piecewise(ln_car_memory, car_present > 0.5, ln(0.01 * {cells}))"),
            # exhausted cells seeded at the ratio the exhaustion kinetics sustain under full antigen signal
            ("ln_car_exhausted", (f"piecewise(ln_car_exhausted, car_present > 0.5, ln(car_exhaustion_rate "
                                  f"* car_exhaustion_factor / (car_exhausted_death + car_expansion_rate "
                                  f"* t_cell_fitness) * {cells}))")),
            ("car_present", "1"),
        ]
    if bolus[B_HSCT] > 0.0:
        for k, name in enumerate(_CLASSES):  # conditioning thins every clone; Kendall's K gains (1/s - 1)/m
            extinction = STATE_NAMES[S_EXTINCTION + k]
            steps += [
                (extinction, (f"piecewise(log_add({extinction}, ln(10^hsct_conditioning_leukemia_log10_kill - 1) "
                              f"- ln_leukemia_{name}), {_alive(k)} > 0.5, {extinction})")),
                (f"ln_leukemia_{name}", (f"piecewise(ln_leukemia_{name} - hsct_conditioning_leukemia_log10_kill "
                                         f"* ln(10), {_alive(k)} > 0.5, ln_leukemia_{name})")),
            ]
        for state in ("ln_b_precursor", "ln_b_mature", "ln_t_active", *(STATE_NAMES[s] for s in (
                S_CAR_EFFECTOR, S_CAR_MEMORY, S_CAR_EXHAUSTED))):
            steps.append((state, f"{state} - hsct_conditioning_lymphocyte_log10_kill * ln(10)"))
        steps += [("ln_normal_marrow", "ln(hsct_engraftment_fraction * marrow_normal)"),
                  ("ln_b_precursor", "log_add(ln_b_precursor, ln(hsct_engraftment_fraction * b_precursor_normal))"),
                  ("ln_t_resting", "ln(hsct_engraftment_fraction * t_normal)"),
                  ("hsct_time", "time"), ("sos_window", "1")]
    return steps


def _parse(formula: str) -> libsbml.ASTNode:
    math = libsbml.parseL3Formula(formula)
    if math is None:
        raise ValueError(f"cannot parse SBML formula {formula!r}: {libsbml.getLastParseL3Error()}")
    return math


def _simultaneous(steps: list[tuple[str, str]]) -> dict[str, libsbml.ASTNode]:
    """Assignments applied one after the other as one set of SBML event assignments, each in terms of the values
    before the event (an SBML event evaluates all its assignments first)."""
    assigned: dict[str, libsbml.ASTNode] = {}
    for variable, formula in steps:
        math = _parse(formula)
        for name in assigned:
            math.renameSIdRefs(name, f"{name}__before_substitution")
        for name, earlier in assigned.items():
            math.replaceArgument(f"{name}__before_substitution", earlier)
        assigned[variable] = math
    return assigned


def _names(math: libsbml.ASTNode) -> set[str]:
    """Identifiers a formula refers to."""
    found = {math.getName()} if math.getType() == libsbml.AST_NAME else set()
    for i in range(math.getNumChildren()):
        found |= _names(math.getChild(i))
    return found


def _check(status: int, what: str) -> None:
    if status != libsbml.LIBSBML_OPERATION_SUCCESS:
        raise RuntimeError(f"libsbml could not {what}: {libsbml.OperationReturnValue_toString(status)}")


def _notes(text: str) -> str:
    return f'<body xmlns="http://www.w3.org/1999/xhtml"><p>{escape(text)}</p></body>'


def _parameter(model: libsbml.Model, sid: str, value: float, unit: str, constant: bool,
               annotation: dict[str, str] | None = None, note: str | None = None) -> None:
    parameter = model.createParameter()
    _check(parameter.setId(sid), f"set id {sid}")
    _check(parameter.setValue(float(value)), f"set the value of {sid}")
    _check(parameter.setUnits(_UNITS[unit][0]), f"set the unit of {sid}")
    _check(parameter.setConstant(constant), f"set {sid} constant")
    if annotation is not None:
        attributes = " ".join(f"{key}={quoteattr(text)}" for key, text in annotation.items())
        _check(parameter.setAnnotation(f'<leukosim:parameter xmlns:leukosim="{ANNOTATION_NAMESPACE}" {attributes}/>'),
               f"annotate {sid}")
    if note is not None:
        _check(parameter.setNotes(_notes(note)), f"set notes of {sid}")


def _patient_parameter(model: libsbml.Model, sid: str, p: np.ndarray) -> None:
    """A parameter of the patient vector ``p``: a registry parameter (individual value) or a derived quantity."""
    if sid in INDEX:
        record = PARAMETERS[INDEX[sid]]
        annotation = {"unit": record.unit, "source": record.source, "calibrate": str(record.calibrate).lower(),
                      "typical": repr(record.value), "iiv_cv": f"{record.iiv_cv:g}"}
        note = f"{record.description} [{record.unit}]. Source: {record.source}"
        _parameter(model, sid, p[INDEX[sid]], record.unit, True, annotation, note)
        return
    name = next((derived for derived, derived_id in _DERIVED_IDS.items() if derived_id == sid), None)
    if name is None or name not in _DERIVED:
        raise KeyError(f"SBML formulas refer to {sid!r}, which is neither a state, a rule nor a patient parameter")
    unit, meaning = _DERIVED[name]
    source = "derived per patient from covariates and registry parameters (leukosim population/individual.py)"
    _parameter(model, sid, p[D[name]], unit, True, {"unit": unit, "source": source},
               f"{meaning} [{unit}]. Source: {source}")


def _event(model: libsbml.Model, sid: str, trigger: str, assignments: dict[str, libsbml.ASTNode],
           name: str) -> None:
    """A persistent event without delay whose assignments use the values at trigger time."""
    event = model.createEvent()
    _check(event.setId(sid), f"set event id {sid}")
    event.setName(name)
    event.setUseValuesFromTriggerTime(True)
    condition = event.createTrigger()
    _check(condition.setMath(_parse(trigger)), f"set the trigger of {sid}")
    condition.setPersistent(True)
    condition.setInitialValue(False)
    for variable, math in assignments.items():
        assignment = event.createEventAssignment()
        assignment.setVariable(variable)
        _check(assignment.setMath(math), f"set the assignment of {variable} in {sid}")


def _day_id(t: float) -> str:
    return f"{t:g}".replace(".", "_").replace("-", "minus_")


def course_sbml(course: DeterministicCourse, row: int = 0) -> str:
    """SBML (L3V2) text of patient ``row`` of a deterministic course."""
    p, y0, c0 = course.p[row], course.y0[row], course.c0[row]
    patient_id = int(course.patient_id[row])
    document = libsbml.SBMLDocument(3, 2)
    model = document.createModel()
    model.setId(f"leukosim_{course.protocol.replace('-', '_')}_patient_{patient_id}")
    model.setName(f"leukosim {__version__}: {course.protocol}, arm {course.arm}, virtual patient {patient_id} "
                  f"(seed {course.seed})")
    model.setNotes(_notes(
        f"Deterministic model of leukosim {__version__} for virtual patient {patient_id} of protocol "
        f"{course.protocol} (seed {course.seed}), arm {course.arm}, phases {' > '.join(course.phases)} "
        f"(days 0 to {course.t_end:g}; later time has no doses). Time in days; cell states are natural logarithms "
        f"of whole-body counts. Not included: clone extinction, relapse detection, death events, CRS/ICANS grading "
        f"and management, assessments and decisions. Research use only: not a medical device, not advice for any "
        f"individual patient."))
    model.setTimeUnits("day")
    for unit_id, factors in {sid: factors for sid, factors in _UNITS.values() if factors}.items():
        definition = model.createUnitDefinition()
        definition.setId(unit_id)
        for kind, exponent, scale, multiplier in factors:
            unit = definition.createUnit()
            unit.setKind(kind)
            unit.setExponent(exponent)
            unit.setScale(scale)
            unit.setMultiplier(multiplier)
    for sid, formula in _FUNCTIONS.items():
        function = model.createFunctionDefinition()
        function.setId(sid)
        _check(function.setMath(_parse(formula)), f"define {sid}")

    rules, rates = _rules()
    defined = set(STATE_NAMES) | {sid for sid, _, _ in rules} | set(_FUNCTIONS)
    for index, state in enumerate(STATE_NAMES):
        _parameter(model, state, y0[index], _STATE_UNITS.get(state, "-"), False)
    inputs = {  # set by events: (initial value from the engine's context, unit, meaning)
        "blin_amount_anchor": (c0[C_BLIN_AMOUNT], "ug", "blinatumomab in the body at the last rate change"),
        "blin_time_anchor": (c0[C_BLIN_TIME], "day", "time of the last blinatumomab rate change"),
        "blin_rate": (c0[C_BLIN_RATE], "ug/day", "blinatumomab infusion rate since the last rate change"),
        "ino_first_dose_time": (c0[C_INO_FIRST], "day", "time of the first inotuzumab dose (-1: none yet)"),
        "hsct_time": (c0[C_HSCT_TIME], "day", "time of the last allogeneic transplant (-1: none yet)"),
        "car_present": (c0[C_CAR_PRESENT], "-", "1 once CAR-T cells are infused"),
        "sos_window": (0.0, "-", f"1 in the {SOS_WINDOW_DAYS:g} days after transplant conditioning"),
    } | {sid: (0.0, "1/day", f"{sid.removeprefix('drive_').replace('_', ' ')} of the running chemotherapy")
         for sid in DRIVE_IDS.values()}
    for sid, (value, unit, meaning) in inputs.items():
        _parameter(model, sid, value, unit, False, note=f"{meaning} [{unit}]; set by the dosing events")
    for k in range(N_CLASSES):
        _parameter(model, _alive(k), c0[C_ALIVE + k], "-", True,
                   note=f"1 if the {CLASS_NAMES[k]} clone is present at enrollment (no extinction in this model)")
    defined |= set(inputs) | {_alive(k) for k in range(N_CLASSES)}
    for sid, unit, formula in rules:
        _parameter(model, sid, 0.0, unit, False)
        rule = model.createAssignmentRule()
        rule.setVariable(sid)
        _check(rule.setMath(_parse(formula)), f"set the rule of {sid}")
    for state in STATE_NAMES:
        rule = model.createRateRule()
        rule.setVariable(state)
        _check(rule.setMath(_parse(rates[state])), f"set the rate of {state}")

    # dosing: one event per breakpoint where a dose is given or the drive changes (engine.integrator order)
    drive_before = np.zeros_like(course.drive[row, 0])
    referenced: set[str] = set()
    for j, t in enumerate(course.times):
        drive = course.drive[row, j]
        steps = _bolus_steps(course.bolus[row, j])
        if drive[U_BLIN_RATE] != drive_before[U_BLIN_RATE]:
            steps += [("blin_amount_anchor", "blin_amount"), ("blin_time_anchor", "time"),
                      ("blin_rate", repr(float(drive[U_BLIN_RATE])))]
        steps += [(sid, repr(float(drive[u]))) for u, sid in DRIVE_IDS.items() if drive[u] != drive_before[u]]
        drive_before = drive
        if not steps:
            continue
        described = [f"{what} {course.bolus[row, j, b]:.4g} {unit}" for b, what, unit in (
            (B_INO_MG, "inotuzumab", "mg"), (B_CAR_CELLS, "CAR-T", "cells")) if course.bolus[row, j, b] > 0.0]
        described += ["allogeneic transplant"] if course.bolus[row, j, B_HSCT] > 0.0 else []
        described += [f"blinatumomab {drive[U_BLIN_RATE]:.4g} ug/day"] if any(
            variable == "blin_rate" for variable, _ in steps) else []
        described += ["chemotherapy rates"] if any(variable in DRIVE_IDS.values() for variable, _ in steps) else []
        assignments = _simultaneous(steps)
        for math in assignments.values():
            referenced |= _names(math)
        _event(model, f"dose_day_{_day_id(t)}", f"time >= {float(t)!r}", assignments,
               f"day {t:g}: {', '.join(described)}")
    if course.bolus[row, :, B_HSCT].any():
        _event(model, "sos_window_end", f"hsct_time >= 0 && time >= hsct_time + {SOS_WINDOW_DAYS:g}",
               {"sos_window": _parse("0")}, f"end of the post-transplant SOS/VOD window ({SOS_WINDOW_DAYS:g} days)")

    for _, _, formula in rules:
        referenced |= _names(_parse(formula))
    for formula in rates.values():
        referenced |= _names(_parse(formula))
    for sid in sorted(referenced - defined - {"time"}):
        _patient_parameter(model, sid, p)
    return libsbml.writeSBMLToString(document)


def patient_sbml(protocol: Protocol, patient_id: int, seed: int = 0, arm: str | None = None,
                 phases: Sequence[str] | None = None, parameters: ParameterSet | None = None) -> str:
    """SBML (L3V2) text of the deterministic model of virtual patient ``patient_id`` of ``protocol`` in a run with
    ``seed``, dosed along ``phases`` of ``arm`` (default: the first arm, its complete-responder path). Raises
    ValueError for a negative patient id, an unknown arm or phase."""
    if patient_id < 0:
        raise ValueError(f"patient id must be >= 0, got {patient_id}")
    return course_sbml(deterministic_course(protocol, [patient_id], seed, arm, phases, parameters))
