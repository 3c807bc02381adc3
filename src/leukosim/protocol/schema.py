"""The protocol file schema: population, arms, phases, drugs in label units, assessments, decisions,
clinical management, follow-up, endpoint definitions and published targets.

Every model forbids unknown fields and is immutable. Days inside a phase count from 1 (day 1 is the
first day of the phase), as in clinical protocols.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

__all__ = [
    "Distribution",
    "LATENT_LIMITS",
    "MAX_AGE_YEARS",
    "Population",
    "Quantity",
    "WeightBand",
    "DrugAdministration",
    "Procedure",
    "Assessment",
    "Condition",
    "Decision",
    "Phase",
    "Arm",
    "ManagementRule",
    "EfsDefinition",
    "OsDefinition",
    "ResponseDefinition",
    "Endpoints",
    "Group",
    "Target",
    "TargetEndpoint",
    "QUANTITY_ENDPOINTS",
    "BUILTIN_GROUPS",
    "Protocol",
    "DRUG_UNITS",
]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


def _invalid(message: str, *loc: str | int) -> PydanticCustomError:
    """A validation error located below the model that raises it: ``loc`` (YAML key names and list
    indices) is carried in the error context and appended to the model's location by
    :mod:`leukosim.protocol.load`, so a cross-field check still points at the offending field."""
    return PydanticCustomError("protocol", message, {"loc": tuple(loc)})


def _show(values: object) -> str:
    if isinstance(values, (list, tuple)):
        return "[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values) + "]"
    return f"{values:g}" if isinstance(values, float) else repr(values)


# --------------------------------------------------------------------------------------------- population


class Distribution(StrictModel):
    """A covariate distribution, truncated to ``range`` when given.

    ``fixed``: ``value``. ``uniform`` / ``loguniform``: ``range``. ``normal``: ``mean``, ``sd``.
    ``lognormal``: ``median``, ``cv`` (coefficient of variation of the untruncated law).
    ``logitnormal`` (for fractions in (0, 1)): ``median``, ``sd`` on the logit scale.
    """

    distribution: Literal["fixed", "uniform", "loguniform", "normal", "lognormal", "logitnormal"]
    value: float | None = None
    mean: float | None = None
    sd: float | None = Field(default=None, gt=0)
    median: float | None = None
    cv: float | None = Field(default=None, gt=0)
    range: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _check_fields(self) -> Distribution:
        needed = {
            "fixed": ("value",),
            "uniform": ("range",),
            "loguniform": ("range",),
            "normal": ("mean", "sd"),
            "lognormal": ("median", "cv"),
            "logitnormal": ("median", "sd"),
        }[self.distribution]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise _invalid(f"expected {', '.join(needed)} for a {self.distribution} distribution, missing "
                           f"{', '.join(missing)}", missing[0])
        unused = [name for name in ("value", "mean", "sd", "median", "cv")
                  if getattr(self, name) is not None and name not in needed]
        if unused:
            allowed = ", ".join(dict.fromkeys((*needed, "range")))
            raise _invalid(f"expected only {allowed} for a {self.distribution} distribution, "
                           f"got also {', '.join(unused)}", unused[0])
        if self.range is not None:
            low, high = self.range
            if not low < high:
                raise _invalid(f"expected range [low, high] with low < high, got {_show(self.range)}",
                               "range")
            centre_name = "median" if self.median is not None else "mean"
            centre = self.median if self.median is not None else self.mean
            if centre is not None and not low <= centre <= high:
                raise _invalid(f"expected the {centre_name} within the range {_show(self.range)}, "
                               f"got {centre:g}", centre_name)
        if self.distribution in ("lognormal", "loguniform"):
            if self.median is not None and self.median <= 0:
                raise _invalid(f"expected a median > 0 for a {self.distribution} distribution, "
                               f"got {self.median:g}", "median")
            if self.range is not None and self.range[0] <= 0:
                raise _invalid(f"expected a range of positive values for a {self.distribution} distribution, "
                               f"got {_show(self.range)}", "range")
        if self.distribution == "logitnormal" and not 0 < (self.median or 0) < 1:
            raise _invalid(f"expected a median in (0, 1) for a logitnormal distribution, got {self.median:g}",
                           "median")
        return self

    def bounds(self) -> tuple[float, float]:
        """The support after truncation (fixed: the value itself)."""
        if self.distribution == "fixed":
            return (float(self.value), float(self.value))  # type: ignore[arg-type]
        if self.range is not None:
            return self.range
        if self.distribution == "logitnormal":
            return (0.0, 1.0)
        if self.distribution == "lognormal":
            return (0.0, float("inf"))
        return (float("-inf"), float("inf"))


def _within(name: str, dist: Distribution, low: float, high: float) -> None:
    lo, hi = dist.bounds()
    if lo < low or hi > high:
        where: tuple[str, ...] = ("range",) if dist.range is not None else (
            ("value",) if dist.distribution == "fixed" else ())
        hint = "" if where else f" (a {dist.distribution} distribution without range is unbounded)"
        raise _invalid(f"expected {name} within [{low:g}, {high:g}], got [{lo:g}, {hi:g}]{hint}",
                       name, *where)


#: Oldest age a population may hold (y). Above 20 y, height and BMI are those of a 20-year-old
#: (``population/body_size.py``); adult populations, such as INO-VATE's, are calibration arms for the drugs.
MAX_AGE_YEARS = 90.0
#: Disease stages whose chemosensitivity is scaled by the registry's ``chemosensitivity_relapsed``.
RELAPSED_DISEASE = ("first_relapse", "relapsed_refractory")


#: Latent population features and the upper end of their values (shares are fractions of blasts).
LATENT_LIMITS = {"cd19_negative_fraction": 1.0, "cd22_low_fraction": 1.0, "lineage_switch_fraction": 1.0,
                 "t_cell_fitness": 100.0, "chemosensitivity": 100.0}


class Population(StrictModel):
    """Eligibility and baseline distributions of the virtual population. The latent features (pre-existing
    antigen-negative shares, ``t_cell_fitness``, ``chemosensitivity``) follow the parameter set's laws for the
    disease stage (``model/latent.py``) unless given here. ``chemosensitivity`` is relative to the typical
    patient of the disease stage (relapsed disease is scaled by the registry's ``chemosensitivity_relapsed``, a
    late first relapse by ``chemosensitivity_late_relapse``). ``late_relapse_fraction``: share of first relapses
    that are late (BFM: 6 months or more after the end of frontline therapy; COG: 36 months or more from
    diagnosis), first relapse only; the others are early."""

    description: str = ""
    disease: Literal["newly_diagnosed", "first_relapse", "relapsed_refractory", "mrd_positive"]
    age_years: Distribution
    male_fraction: float = Field(ge=0, le=1)
    growth_reference: Literal["cdc", "uk-who"] = "cdc"
    marrow_blasts_percent: Distribution
    wbc_per_uL: Distribution
    prior_hsct_fraction: float = Field(default=0.0, ge=0, le=1)
    prior_blinatumomab_fraction: float = Field(default=0.0, ge=0, le=1)
    late_relapse_fraction: float = Field(default=0.0, ge=0, le=1)
    cd19_negative_fraction: Distribution | None = None
    cd22_low_fraction: Distribution | None = None
    lineage_switch_fraction: Distribution | None = None
    t_cell_fitness: Distribution | None = None
    chemosensitivity: Distribution | None = None

    @model_validator(mode="after")
    def _check_ranges(self) -> Population:
        _within("age_years", self.age_years, 0.0, MAX_AGE_YEARS)
        _within("marrow_blasts_percent", self.marrow_blasts_percent, 0.0, 100.0)
        _within("wbc_per_uL", self.wbc_per_uL, 0.0, 1.0e6)
        for name, high in LATENT_LIMITS.items():
            if getattr(self, name) is not None:
                _within(name, getattr(self, name), 0.0, high)
        if self.late_relapse_fraction > 0.0 and self.disease != "first_relapse":
            raise _invalid(f"expected late_relapse_fraction 0 for disease {self.disease!r} (late relapse is a "
                           f"kind of first relapse), got {self.late_relapse_fraction:g}", "late_relapse_fraction")
        return self


# --------------------------------------------------------------------------------------------- treatment

DoseUnit = Literal["mg/m2", "mg/kg", "mg", "ug/m2/day", "ug/day", "cells/kg", "cells"]
DrugName = Literal[
    "blinatumomab",
    "inotuzumab_ozogamicin",
    "tisagenlecleucel",
    "fludarabine",
    "cyclophosphamide",
    "chemotherapy",
]
#: CD19 CAR-T products (cellular kinetics are reported for arms that give one).
CAR_T_PRODUCTS = ("tisagenlecleucel",)
ChemoRegimen = Literal[
    "prephase",
    "induction",
    "consolidation",
    "high_dose_methotrexate",
    "reinduction",
    "intensive_block",
    "maintenance",
]

#: Label units each drug may be prescribed in.
DRUG_UNITS: dict[str, tuple[str, ...]] = {
    "blinatumomab": ("ug/m2/day", "ug/day"),
    "inotuzumab_ozogamicin": ("mg/m2",),
    "tisagenlecleucel": ("cells/kg", "cells"),
    "fludarabine": ("mg/m2",),
    "cyclophosphamide": ("mg/m2", "mg/kg"),
    "chemotherapy": (),
    "tocilizumab": ("mg/kg",),
    "corticosteroids": ("mg/m2", "mg/kg"),
}


class Quantity(StrictModel):
    """A dose with its unit, used for caps (e.g. ``{value: 28, unit: ug/day}``)."""

    value: float = Field(gt=0)
    unit: DoseUnit


class WeightBand(StrictModel):
    """A flat dose replacing the body-size dose at or above a weight (label: >= 45 kg blinatumomab,
    > 50 kg tisagenlecleucel)."""

    min_weight_kg: float = Field(gt=0)
    dose: float = Field(gt=0)
    unit: DoseUnit


class DrugAdministration(StrictModel):
    """One drug in a phase. ``days`` lists bolus days, or ``[first, last]`` for a continuous infusion or a
    chemotherapy block (inclusive)."""

    drug: DrugName
    dose: float | None = Field(default=None, gt=0)
    unit: DoseUnit | None = None
    days: list[int] = Field(min_length=1)
    infusion: Literal["bolus", "continuous"] = "bolus"
    max_dose: Quantity | None = None
    weight_band: WeightBand | None = None
    regimen: ChemoRegimen | None = None
    intensity: float = Field(default=1.0, gt=0, le=3)

    @model_validator(mode="after")
    def _check_dose(self) -> DrugAdministration:
        for index, day in enumerate(self.days):
            if day < 1:
                raise _invalid(f"expected a day >= 1 (day 1 is the first day of the phase), got {day}",
                               "days", index)
        if self.drug == "chemotherapy":
            if self.regimen is None:
                *others, last = get_args(ChemoRegimen)
                raise _invalid(f"expected a regimen for chemotherapy ({', '.join(others)} or {last})", "regimen")
            for name in ("dose", "unit", "max_dose", "weight_band"):
                if getattr(self, name) is not None:
                    raise _invalid(f"expected no {name} for chemotherapy: it is given as a regimen with an "
                                   "intensity", name)
            if len(self.days) != 2 or self.days[0] > self.days[1]:
                raise _invalid("expected days: [first, last] for a chemotherapy block, "
                               f"got {_show(self.days)}", "days")
            return self
        if self.regimen is not None:
            raise _invalid(f"expected no regimen for {self.drug} (regimen applies to chemotherapy only)",
                           "regimen")
        for name in ("dose", "unit"):
            if getattr(self, name) is None:
                raise _invalid(f"expected a dose and a unit for {self.drug}, missing {name}", name)
        allowed = DRUG_UNITS[self.drug]
        if self.unit not in allowed:
            raise _invalid(f"expected a unit for {self.drug} of {' or '.join(allowed)}, got {self.unit}",
                           "unit")
        for name, given in (("max_dose", self.max_dose), ("weight_band", self.weight_band)):
            if given is not None and given.unit not in _FLAT_UNITS[self.drug]:
                flat = " or ".join(_FLAT_UNITS[self.drug])
                raise _invalid(f"expected {name}.unit for {self.drug} of {flat}, got {given.unit}",
                               name, "unit")
        if self.infusion == "continuous":
            if self.drug != "blinatumomab":
                raise _invalid(f"expected infusion: bolus for {self.drug}, which is not given as a "
                               "continuous infusion", "infusion")
            if len(self.days) != 2 or self.days[0] > self.days[1]:
                raise _invalid("expected days: [first, last] for a continuous infusion, "
                               f"got {_show(self.days)}", "days")
        elif self.drug == "blinatumomab":
            raise _invalid("expected infusion: continuous for blinatumomab", "infusion")
        elif any(later <= earlier for earlier, later in zip(self.days, self.days[1:], strict=False)):
            raise _invalid("expected bolus days in increasing order without repeats, "
                           f"got {_show(self.days)}", "days")
        return self


_FLAT_UNITS: dict[str, tuple[str, ...]] = {
    "blinatumomab": ("ug/day",),
    "inotuzumab_ozogamicin": ("mg",),
    "tisagenlecleucel": ("cells",),
    "fludarabine": ("mg",),
    "cyclophosphamide": ("mg",),
    "chemotherapy": (),
}


class Procedure(StrictModel):
    """A procedure on a day of the phase: allogeneic haematopoietic stem-cell transplant."""

    procedure: Literal["allogeneic_hsct"]
    day: int = Field(ge=1)
    conditioning: Literal["myeloablative_tbi", "myeloablative_chemotherapy"] = "myeloablative_tbi"


class Assessment(StrictModel):
    """A response / MRD assessment on a day of the phase."""

    name: str = Field(min_length=1)
    day: int = Field(ge=1)
    sample: Literal["marrow", "blood"] = "marrow"
    assay: Literal["morphology", "flow", "pcr", "ngs"] = "flow"
    threshold: float = Field(default=1.0e-4, gt=0, lt=1)


Response = Literal["CR", "CRi", "CR_or_CRi", "NR"]


class Condition(StrictModel):
    """A condition on the result of an assessment (by default the phase's last one). All given
    clauses must hold."""

    assessment: str | None = None
    response: Response | None = None
    response_not: Response | None = None
    mrd_at_least: float | None = Field(default=None, gt=0)
    mrd_below: float | None = Field(default=None, gt=0)
    prior_hsct: bool | None = None

    @model_validator(mode="after")
    def _non_empty(self) -> Condition:
        clauses = (self.response, self.response_not, self.mrd_at_least, self.mrd_below, self.prior_hsct)
        if all(clause is None for clause in clauses):
            raise ValueError("expected at least one clause (response, response_not, mrd_at_least, "
                             "mrd_below, prior_hsct)")
        return self


class Decision(StrictModel):
    """``{if: condition, go: target}`` or ``{else: target}``. A target is a phase name of the arm,
    ``off_protocol`` (treatment failure: no further protocol therapy) or ``follow_up``."""

    when: Condition | None = Field(default=None, alias="if")
    go: str | None = None
    otherwise: str | None = Field(default=None, alias="else")

    @model_validator(mode="after")
    def _one_form(self) -> Decision:
        if self.otherwise is not None:
            if self.when is not None or self.go is not None:
                raise ValueError("expected an else decision to hold only the target: {else: target}")
        elif self.when is None or self.go is None:
            raise ValueError("expected a decision {if: condition, go: target} or {else: target}")
        return self

    @property
    def target(self) -> str:
        return self.otherwise if self.otherwise is not None else self.go  # type: ignore[return-value]


class Phase(StrictModel):
    """A block of therapy of fixed length. ``same_as`` copies drugs and procedures of an earlier phase;
    assessments and decisions are always the phase's own. ``randomization``: patients are randomised as they
    start this phase (after a run-in such as a reinduction block): the endpoint origin ``randomization`` is that
    day, and patients who never start it are not randomised and not analysed."""

    name: str = Field(min_length=1)
    days: int = Field(gt=0, le=3650)
    same_as: str | None = None
    randomization: bool = False
    drugs: list[DrugAdministration] = Field(default_factory=list)
    procedures: list[Procedure] = Field(default_factory=list)
    assess: list[Assessment] = Field(default_factory=list)
    then: list[Decision] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_days(self) -> Phase:
        for index, drug in enumerate(self.drugs):
            if max(drug.days) > self.days:
                raise _invalid(f"expected days within the {self.days}-day phase, got {drug.drug} on day "
                               f"{max(drug.days)}", "drugs", index, "days")
        for index, item in enumerate(self.assess):
            if item.day > self.days:
                raise _invalid(f"expected a day within the {self.days}-day phase, got assessment "
                               f"{item.name!r} on day {item.day}", "assess", index, "day")
        for index, proc in enumerate(self.procedures):
            if proc.day > self.days:
                raise _invalid(f"expected a day within the {self.days}-day phase, got {proc.procedure} "
                               f"on day {proc.day}", "procedures", index, "day")
        for index, decision in enumerate(self.then[:-1]):
            if decision.otherwise is not None:
                raise _invalid("expected the else decision last (decisions after it are never reached)",
                               "then", index)
        return self


class Arm(StrictModel):
    name: str = Field(min_length=1)
    allocation: float = Field(default=1.0, gt=0)
    phases: list[Phase] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_references(self) -> Arm:
        names = [phase.name for phase in self.phases]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise _invalid(f"expected phase names unique within an arm, got {name!r} twice",
                               "phases", index, "name")
        randomizing = [index for index, phase in enumerate(self.phases) if phase.randomization]
        if len(randomizing) > 1:
            raise _invalid(f"expected at most one randomization phase in arm {self.name!r}, got "
                           f"{self.phases[randomizing[0]].name!r} and {self.phases[randomizing[1]].name!r}",
                           "phases", randomizing[1], "randomization")
        seen: dict[str, Phase] = {}
        assessments: set[str] = set()
        for index, phase in enumerate(self.phases):
            if phase.same_as is not None:
                if phase.same_as not in seen:
                    raise _invalid(f"expected same_as to name an earlier phase of arm {self.name!r} "
                                   f"({', '.join(seen) or 'none'}), got {phase.same_as!r}",
                                   "phases", index, "same_as")
                source = seen[phase.same_as]
                while source.same_as is not None:
                    source = seen[source.same_as]
                last = max((max(drug.days) for drug in source.drugs), default=0)
                last = max([last] + [proc.day for proc in source.procedures])
                if last > phase.days:
                    raise _invalid(f"expected at least {last} days to hold the therapy copied from "
                                   f"{phase.same_as!r}, got {phase.days}", "phases", index, "days")
            seen[phase.name] = phase
            assessments.update(item.name for item in phase.assess)
            for j, decision in enumerate(phase.then):
                at = ("phases", index, "then", j)
                if decision.target not in names and decision.target not in ("off_protocol", "follow_up"):
                    raise _invalid(f"expected a phase of arm {self.name!r} ({', '.join(names)}), "
                                   f"off_protocol or follow_up, got {decision.target!r}",
                                   *at, "else" if decision.otherwise is not None else "go")
                when = decision.when
                if when is not None:
                    if when.assessment is not None and when.assessment not in assessments:
                        known = ", ".join(sorted(assessments)) or "none"
                        raise _invalid(f"expected an assessment of this or an earlier phase ({known}), "
                                       f"got {when.assessment!r}", *at, "if", "assessment")
                    on_result = (when.response, when.response_not, when.mrd_at_least, when.mrd_below)
                    if when.assessment is None and any(c is not None for c in on_result) and not phase.assess:
                        raise _invalid("expected an assessment in the phase or an explicit assessment name "
                                       "for a decision on response or MRD", *at, "if")
        return self

    def randomizes(self) -> bool:
        """Whether patients are randomised on starting a phase of the arm (otherwise at enrollment)."""
        return any(phase.randomization for phase in self.phases)

    def gives_car_t(self) -> bool:
        """Whether any phase of the arm infuses a CAR-T product."""
        return any(drug.drug in CAR_T_PRODUCTS for phase in self.phases for drug in phase.drugs)

    def assessment_names(self) -> list[str]:
        """Names of the arm's assessments in phase order, each once (mutually exclusive branches may
        share a name, e.g. ``end-of-cycle-2`` in two differently dosed cycle-2 phases)."""
        return list(dict.fromkeys(item.name for phase in self.phases for item in phase.assess))


class ManagementTrigger(StrictModel):
    crs_grade_at_least: int | None = Field(default=None, ge=1, le=4)
    icans_grade_at_least: int | None = Field(default=None, ge=1, le=4)
    drug_running: Literal["blinatumomab"] | None = None

    @model_validator(mode="after")
    def _has_grade(self) -> ManagementTrigger:
        if self.crs_grade_at_least is None and self.icans_grade_at_least is None:
            raise ValueError("expected crs_grade_at_least or icans_grade_at_least in a management trigger")
        return self


class ManagementDose(StrictModel):
    drug: Literal["tocilizumab", "corticosteroids"]
    dose: float = Field(gt=0)
    unit: DoseUnit
    max_dose: Quantity | None = None

    @model_validator(mode="after")
    def _check_unit(self) -> ManagementDose:
        if self.unit not in DRUG_UNITS[self.drug]:
            raise _invalid(f"expected a unit for {self.drug} of {' or '.join(DRUG_UNITS[self.drug])}, "
                           f"got {self.unit}", "unit")
        return self


class ManagementRule(StrictModel):
    """Clinical management of toxicity: give a drug, or interrupt an infusion, when a grade is reached."""

    when: ManagementTrigger = Field(alias="if")
    give: ManagementDose | None = None
    interrupt: Literal["blinatumomab"] | None = None
    interrupt_days: int = Field(default=7, ge=1, le=14)

    @model_validator(mode="after")
    def _one_action(self) -> ManagementRule:
        if (self.give is None) == (self.interrupt is None):
            raise ValueError("expected a management rule to either give a drug (give) or interrupt one "
                             "(interrupt)")
        return self


# --------------------------------------------------------------------------------------------- endpoints

EfsEvent = Literal["no_response", "relapse", "death", "second_malignancy"]


class EfsDefinition(StrictModel):
    origin: Literal["enrollment", "randomization", "infusion"] = "enrollment"
    events: list[EfsEvent] = Field(default_factory=lambda: ["no_response", "relapse", "death"])
    no_response_time: Literal["day_1", "assessment"] = "assessment"
    censor_at_hsct: bool = False


class OsDefinition(StrictModel):
    origin: Literal["enrollment", "randomization", "infusion"] = "enrollment"


class ResponseDefinition(StrictModel):
    """Best response is taken over the named assessments (all response assessments when empty)."""

    assessments: list[str] = Field(default_factory=list)
    blast_threshold_percent: float = Field(default=5.0, gt=0, le=25)


class Endpoints(StrictModel):
    """Endpoint definitions; ``reference_arm`` is the control arm of hazard ratios (default: the last arm)."""

    efs: EfsDefinition = Field(default_factory=EfsDefinition)
    os: OsDefinition = Field(default_factory=OsDefinition)
    response: ResponseDefinition = Field(default_factory=ResponseDefinition)
    reference_arm: str | None = None


class Group(StrictModel):
    """A subgroup of an arm's patients: assessed at every one of ``assessed``, meeting every condition of
    ``all`` (each names its assessment), in none of the groups ``excluding`` (defined earlier) and, when
    ``late_relapse`` is given, whose first relapse is late (true) or early (false)."""

    assessed: list[str] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list, alias="all")
    excluding: list[str] = Field(default_factory=list)
    late_relapse: bool | None = None

    @model_validator(mode="after")
    def _non_empty(self) -> Group:
        if not (self.assessed or self.conditions or self.excluding or self.late_relapse is not None):
            raise ValueError("expected at least one of assessed, all, excluding, late_relapse")
        return self


TargetEndpoint = Literal[
    "cr_or_cri", "mrd_negative", "hsct", "sos_vod", "relapse",
    "crs_any_grade", "crs_grade_3", "crs_grade_4", "crs_grade_3_plus",
    "icans_any_grade", "icans_grade_3_plus", "tocilizumab", "corticosteroids",
    "first_event_relapse", "first_event_death", "first_event_no_response",
    "efs", "os", "median_efs", "median_os",
    "cd19_negative_relapse_fraction", "group_share", "cr",
    "car_cmax_geomean", "car_auc28_geomean", "car_tmax_geomean",
    "car_cmax_gmr_responders", "car_auc28_gmr_responders", "car_persistence_geomean", "crs_onset_median",
    "blinatumomab_css_mean", "inotuzumab_cmax_mean",
]
#: Endpoints whose value is a quantity in a unit, not a proportion: survival medians, cellular kinetics (CAR
#: transgene by qPCR; ``gmr``: geometric-mean ratio of responders to non-responders among infused patients;
#: ``persistence``: transgene level at ``assessment`` over the patient's Cmax, among patients with a quantifiable
#: level), the median day of CRS onset and drug exposure.
QUANTITY_ENDPOINTS: dict[str, str] = {
    "median_efs": "days", "median_os": "days",
    "car_cmax_geomean": "copies/ug gDNA", "car_auc28_geomean": "copies/ug gDNA x day", "car_tmax_geomean": "days",
    "car_cmax_gmr_responders": "ratio", "car_auc28_gmr_responders": "ratio", "car_persistence_geomean": "ratio",
    "crs_onset_median": "days",
    "blinatumomab_css_mean": "ng/mL", "inotuzumab_cmax_mean": "ng/mL",
}
#: Subgroups every protocol has (a protocol's own ``groups:`` add to them).
BUILTIN_GROUPS = ("responders", "car_infused", "relapsed", "with_crs")
_TIMEPOINT_ENDPOINTS = ("efs", "os")
_SPREAD_ENDPOINTS = tuple(e for e in QUANTITY_ENDPOINTS if not e.startswith("median") and e != "crs_onset_median")


class Target(StrictModel):
    """A published value to compare with (validation and calibration; never an input to the simulation).

    ``endpoint`` is a proportion of the arm's analysed patients (or of the subgroup ``among``), a Kaplan-Meier
    estimate at ``timepoint_days`` (efs, os), or a quantity in the unit of :data:`QUANTITY_ENDPOINTS` (medians in
    days, kinetics, exposure). ``group_share`` is the share of patients in ``group``; ``relapse`` with
    ``timepoint_days`` counts relapses up to that day; ``tocilizumab`` and ``corticosteroids`` are the shares
    given at least one dose. Built-in subgroups: ``responders`` (CR or CRi), ``car_infused``, ``relapsed``,
    ``with_crs`` (CRS of any grade). ``sd`` (a mean's endpoint) or ``log_sd`` (a geometric
    mean's or ratio's: SD of the log values, e.g. sqrt(omega^2) of a population model) with ``n`` give a
    quantity its reference interval when no CI is published. ``calibrate: false`` shows a target without
    fitting to it (scale or definition differs from the simulator's, or the source is secondary); the reason
    belongs in ``definition``. ``out_of_sample: true`` (with ``calibrate: false``) marks a prediction: a published
    result outside the calibration set, which validation scores on its own."""

    endpoint: TargetEndpoint
    arm: str | None = None
    assessment: str | None = None
    timepoint_days: float | None = Field(default=None, gt=0)
    among: str | None = None
    group: str | None = None
    value: float
    ci: tuple[float, float] | None = None
    ci_level: float = Field(default=0.95, gt=0, lt=1)
    n: int | None = Field(default=None, gt=0)
    sd: float | None = Field(default=None, gt=0)
    log_sd: float | None = Field(default=None, gt=0)
    calibrate: bool = True
    out_of_sample: bool = False
    definition: str = ""
    source: str

    @model_validator(mode="after")
    def _check(self) -> Target:
        if self.ci is not None and not self.ci[0] <= self.value <= self.ci[1]:
            raise _invalid(f"expected ci [low, high] around the value {self.value:g}, got {_show(self.ci)}",
                           "ci")
        if self.endpoint in _TIMEPOINT_ENDPOINTS and self.timepoint_days is None:
            raise _invalid(f"expected timepoint_days (days from the endpoint's origin) for {self.endpoint}",
                           "timepoint_days")
        if self.endpoint == "car_persistence_geomean" and self.assessment is None:
            raise _invalid("expected assessment (the transgene sample) for car_persistence_geomean", "assessment")
        if (self.endpoint == "group_share") != (self.group is not None):
            raise _invalid("expected group (a subgroup name) with endpoint group_share, and only there", "group")
        if self.endpoint in QUANTITY_ENDPOINTS:
            if self.value <= 0.0:
                raise _invalid(f"expected a value > 0 ({QUANTITY_ENDPOINTS[self.endpoint]}) for {self.endpoint}, "
                               f"got {self.value:g}", "value")
        elif not 0.0 <= self.value <= 1.0:
            raise _invalid(f"expected a proportion in [0, 1] for {self.endpoint}, got {self.value:g}", "value")
        for name in ("sd", "log_sd"):
            if getattr(self, name) is not None and self.endpoint not in _SPREAD_ENDPOINTS:
                raise _invalid(f"expected {name} only for a mean, geometric mean or ratio endpoint "
                               f"({', '.join(_SPREAD_ENDPOINTS)}), got it for {self.endpoint}", name)
        if self.sd is not None and self.log_sd is not None:
            raise _invalid("expected sd (of a mean) or log_sd (of a geometric mean), not both", "log_sd")
        if self.out_of_sample and self.calibrate:
            raise _invalid("expected calibrate: false with out_of_sample: true (a prediction is never fitted)",
                           "calibrate")
        return self

    @property
    def role(self) -> str:
        """How validation treats the target: "calibration" (fitted), "not fitted" (shown) or "prediction"."""
        return "prediction" if self.out_of_sample else ("calibration" if self.calibrate else "not fitted")


class Protocol(StrictModel):
    """A trial protocol: who is treated, how, what is measured and what counts as an event."""

    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9\-]*$")
    title: str
    description: str = ""
    references: list[str] = Field(default_factory=list)
    population: Population
    arms: list[Arm] = Field(min_length=1)
    management: list[ManagementRule] = Field(default_factory=list)
    # up to 15 years: the long-term follow-up of relapse trials (ALL-REZ BFM 87, 15-year pEFS and pOS)
    follow_up_days: int = Field(default=730, gt=0, le=5480)
    endpoints: Endpoints = Field(default_factory=Endpoints)
    groups: dict[str, Group] = Field(default_factory=dict)
    targets: list[Target] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_arms(self) -> Protocol:
        names = [arm.name for arm in self.arms]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise _invalid(f"expected unique arm names, got {name!r} twice", "arms", index, "name")
        by_name = {arm.name: arm for arm in self.arms}
        if any(arm.randomizes() for arm in self.arms):
            for index, arm in enumerate(self.arms):
                if not arm.randomizes():
                    raise _invalid(f"expected a phase with randomization: true in every arm, as in "
                                   f"{next(a.name for a in self.arms if a.randomizes())!r} (patients are "
                                   "analysed from randomisation)", "arms", index, "phases")
        every_assessment = {name for arm in self.arms for name in arm.assessment_names()}
        if self.endpoints.reference_arm not in (None, *names):
            raise _invalid(f"expected an arm of the protocol ({', '.join(names)}), got "
                           f"{self.endpoints.reference_arm!r}", "endpoints", "reference_arm")
        for k, name in enumerate(self.endpoints.response.assessments):
            if name not in every_assessment:
                raise _invalid(f"expected an assessment of the protocol "
                               f"({', '.join(sorted(every_assessment))}), got {name!r}",
                               "endpoints", "response", "assessments", k)
        defined: list[str] = list(BUILTIN_GROUPS)
        for group, definition in self.groups.items():
            if group in BUILTIN_GROUPS:
                raise _invalid(f"expected a group name other than the built-in {', '.join(BUILTIN_GROUPS)}",
                               "groups", group)
            named = [("assessed", k, name) for k, name in enumerate(definition.assessed)]
            named += [("all", k, c.assessment) for k, c in enumerate(definition.conditions)]
            for key, k, name in named:
                if name not in every_assessment:
                    raise _invalid(f"expected an assessment of the protocol ({', '.join(sorted(every_assessment))}),"
                                   f" got {name!r}", "groups", group, key, k,
                                   *(("assessment",) if key == "all" else ()))
            for k, other in enumerate(definition.excluding):
                if other not in defined:
                    raise _invalid(f"expected a group defined above ({', '.join(defined)}), got {other!r}",
                                   "groups", group, "excluding", k)
            defined.append(group)
        known_groups = (*BUILTIN_GROUPS, *self.groups)
        for index, target in enumerate(self.targets):
            for key in ("among", "group"):
                if getattr(target, key) not in (None, *known_groups):
                    raise _invalid(f"expected a subgroup ({', '.join(known_groups)}), got {getattr(target, key)!r}",
                                   "targets", index, key)
            if target.arm is not None and target.arm not in names:
                raise _invalid(f"expected an arm of the protocol ({', '.join(names)}), got {target.arm!r}",
                               "targets", index, "arm")
            if target.assessment is not None:
                if target.arm is not None:
                    known, owner = set(by_name[target.arm].assessment_names()), f"arm {target.arm!r}"
                else:
                    known, owner = every_assessment, "the protocol"
                if target.assessment not in known:
                    raise _invalid(f"expected an assessment of {owner} ({', '.join(sorted(known))}), "
                                   f"got {target.assessment!r}", "targets", index, "assessment")
            if target.timepoint_days is not None and target.timepoint_days > self.follow_up_days:
                raise _invalid(f"expected a timepoint within follow_up_days ({self.follow_up_days}), got "
                               f"{target.timepoint_days:g}", "targets", index, "timepoint_days")
        return self
