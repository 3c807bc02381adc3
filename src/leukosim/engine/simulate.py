"""Run the patients of one arm through the protocol: phases in order, the compiled engine between
assessments, assays and decisions at assessments, then follow-up to the horizon.

Patients in the same phase are integrated together; each patient keeps its own clock, so phases
that branch or repeat are fine. Nothing here depends on which other patients are in the batch."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ..model.layout import (
    C_CAR_INFUSION, C_CAR_PRESENT, C_EVENT, C_EVENT_TIME, C_REMISSION, C_STATUS, EVENT_NONE, EVENT_RELAPSE,
    N_BOLUS, N_DRIVE, STATUS_OK,
)
from ..model.readouts import (
    R_CAR_COPIES_PER_UG, R_CLASS_FRACTION, R_COUNT_RECOVERY, R_MARROW_FRACTION, readouts_batch,
)
from ..model.registry import INDEX, ParameterSet
from ..observe.assays import measure_blast_percent, measure_mrd
from ..observe.grading import RESPONSE_CR, RESPONSE_CRI, RESPONSE_NR, response_categories
from ..population.covariates import Covariates
from ..population.streams import Stream, uniforms
from ..protocol.schema import Arm, Assessment, Condition, Protocol
from ..protocol.schedule import compile_phase
from .initial import initial_state
from .integrator import (
    ACTION_INTERRUPT, ACTION_STEROID, ACTION_TOCILIZUMAB, N_RECORD, N_RULE_COLUMNS, R_ACTION, R_DAYS, R_GRADE,
    R_NEEDS_BLINATUMOMAB, R_TRIGGER, integrate_batch,
)

__all__ = ["ArmCourse", "AssessmentResult", "simulate_arm", "management_rules", "event_rows", "origin_days",
           "post_progression_survival"]

FOLLOW_UP = -1
DONE = -2
_ASSAY_DRAWS = 2  # uniforms per assessment: MRD assay and morphology
_RESPONSE_CODES = {"CR": (RESPONSE_CR,), "CRi": (RESPONSE_CRI,), "CR_or_CRi": (RESPONSE_CR, RESPONSE_CRI),
                   "NR": (RESPONSE_NR,)}


@dataclass
class AssessmentResult:
    """Results of one named assessment (NaN / -1 where a patient was not assessed)."""

    day: NDArray[np.float64]
    mrd: NDArray[np.float64]
    blasts_percent: NDArray[np.float64]
    response: NDArray[np.int64]
    true_fraction: NDArray[np.float64]
    car_copies: NDArray[np.float64]  # blood CAR transgene, copies/ug gDNA (NaN before any CAR-T infusion)


@dataclass
class ArmCourse:
    """Everything that happened to the patients of one arm (arrays over patients, days since enrollment)."""

    arm: str
    covariates: Covariates
    parameters: NDArray[np.float64]
    state: NDArray[np.float64]
    context: NDArray[np.float64]
    assessments: dict[str, AssessmentResult] = field(default_factory=dict)
    no_response_day: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    off_protocol_day: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    #: day of randomisation: 0 (enrollment) unless the arm randomises on starting a phase; NaN if never
    randomization_day: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    progression_day: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    death_after_progression_day: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    horizon_day: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    events: list[dict[str, NDArray]] = field(default_factory=list)
    record_times: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    records: NDArray[np.float64] = field(default_factory=lambda: np.empty((0, 0, N_RECORD)))

    def add_events(self, index: NDArray[np.int64], day: NDArray[np.float64] | float, event: str,
                   detail: str = "", value: NDArray[np.float64] | float = np.nan,
                   duration: NDArray[np.float64] | float = np.nan) -> None:
        """Record one event for each patient of ``index`` (positions in this arm)."""
        if index.size:
            self.events.append(event_rows(self.covariates.patient_id[index], day, event, detail, value, duration))


def event_rows(patient_id: NDArray[np.int64], day: NDArray[np.float64] | float, event: str, detail: str = "",
               value: NDArray[np.float64] | float = np.nan,
               duration: NDArray[np.float64] | float = np.nan) -> dict[str, NDArray]:
    """Columns of event rows, one per patient id (``duration``: days a dose was given over, 0 for a bolus)."""
    count = patient_id.size
    return {
        "patient_id": patient_id,
        "day": np.broadcast_to(np.asarray(day, dtype=np.float64), (count,)).copy(),
        "event": np.full(count, event, dtype=object),
        "detail": np.full(count, detail, dtype=object),
        "value": np.broadcast_to(np.asarray(value, dtype=np.float64), (count,)).copy(),
        "duration": np.broadcast_to(np.asarray(duration, dtype=np.float64), (count,)).copy(),
    }


def management_rules(protocol: Protocol) -> NDArray[np.float64]:
    """The protocol's management rules as the engine's rule table."""
    rules = np.zeros((len(protocol.management), N_RULE_COLUMNS))
    for row, rule in zip(rules, protocol.management):
        trigger = rule.when
        row[R_TRIGGER] = 0.0 if trigger.crs_grade_at_least is not None else 1.0
        row[R_GRADE] = trigger.crs_grade_at_least or trigger.icans_grade_at_least or 1
        row[R_NEEDS_BLINATUMOMAB] = 1.0 if trigger.drug_running == "blinatumomab" else 0.0
        if rule.interrupt is not None:
            row[R_ACTION] = ACTION_INTERRUPT
            row[R_DAYS] = rule.interrupt_days
        else:
            row[R_ACTION] = ACTION_TOCILIZUMAB if rule.give.drug == "tocilizumab" else ACTION_STEROID
    return rules


def _integrate(course: ArmCourse, index: NDArray[np.int64], start: NDArray[np.float64], times: NDArray,
               drive: NDArray, bolus: NDArray, stop: NDArray[np.float64], rules: NDArray, seed: int) -> None:
    """Advance patients ``index`` from ``start`` to ``stop`` (absolute days) through breakpoints ``times``
    (relative to ``start``)."""
    if index.size == 0:
        return
    y = np.ascontiguousarray(course.state[index])
    c = np.ascontiguousarray(course.context[index])
    absolute = np.ascontiguousarray(start[:, None] + times[None, :])
    records = np.ascontiguousarray(course.records[index])
    integrate_batch(y, np.ascontiguousarray(course.parameters[index]), c, absolute,
                    np.ascontiguousarray(np.broadcast_to(drive, (index.size, times.size, N_DRIVE))),
                    np.ascontiguousarray(np.broadcast_to(bolus, (index.size, times.size, N_BOLUS))),
                    np.full(index.size, times.size, dtype=np.int64), np.ascontiguousarray(stop), rules, seed,
                    course.covariates.patient_id[index], Stream.block("extinction"), course.record_times, records)
    course.state[index] = y
    course.context[index] = c
    if course.record_times.size:
        course.records[index] = records


def _running(course: ArmCourse, index: NDArray[np.int64]) -> NDArray[np.int64]:
    """Patients of ``index`` with neither a terminal event nor a solver failure."""
    c = course.context[index]
    return index[(c[:, C_EVENT] == EVENT_NONE) & (c[:, C_STATUS] == STATUS_OK)]


def _assess(course: ArmCourse, index: NDArray[np.int64], day: NDArray[np.float64], assessment: Assessment,
            counter: NDArray[np.int64], blast_threshold: float, recovery_fraction: float, seed: int) -> None:
    """Marrow morphology (response) and the assessment's MRD assay for patients ``index``; MRD is not
    measured (NaN) when the assay is morphology. ``counter`` numbers each patient's assessments so every
    assessment draws its own uniforms."""
    result = course.assessments.get(assessment.name)
    n = len(course.covariates)
    if result is None:
        missing = np.full(n, np.nan)
        result = AssessmentResult(missing.copy(), missing.copy(), missing.copy(), np.full(n, -1, dtype=np.int64),
                                  missing.copy(), missing.copy())
        course.assessments[assessment.name] = result
    ids = course.covariates.patient_id[index]
    values = readouts_batch(course.state[index], course.parameters[index], course.context[index])
    fraction = values[:, R_MARROW_FRACTION]
    if assessment.sample == "blood":
        fraction = fraction * course.parameters[index, INDEX["blood_to_marrow_mrd_ratio"]]
    first = Stream.block("assays") + _ASSAY_DRAWS * counter[index]
    u_mrd = uniforms(seed, ids, first)
    u_morph = uniforms(seed, ids, first + 1)
    counter[index] += 1
    blasts = measure_blast_percent(values[:, R_MARROW_FRACTION], u_morph)
    response = response_categories(blasts, values[:, R_COUNT_RECOVERY] >= recovery_fraction,
                                   blast_threshold).astype(np.int64)
    result.day[index] = day
    if assessment.assay != "morphology":
        result.mrd[index] = measure_mrd(fraction, assessment.assay, u_mrd)
    result.blasts_percent[index] = blasts
    result.response[index] = response
    result.true_fraction[index] = fraction
    infused = course.context[index, C_CAR_PRESENT] > 0.5
    result.car_copies[index] = np.where(infused, values[:, R_CAR_COPIES_PER_UG], np.nan)
    in_remission = response != RESPONSE_NR
    course.context[index, C_REMISSION] = np.where(in_remission, 1.0, course.context[index, C_REMISSION])
    course.add_events(index, day, "assessment", assessment.name, result.mrd[index])
    course.add_events(index, day, "response", assessment.name, response.astype(np.float64))


def _holds(condition: Condition, course: ArmCourse, index: NDArray[np.int64], default: str) -> NDArray[np.bool_]:
    result = course.assessments[condition.assessment or default]
    ok = np.ones(index.size, dtype=bool)
    response = result.response[index]
    if condition.response is not None:
        ok &= np.isin(response, _RESPONSE_CODES[condition.response])
    if condition.response_not is not None:
        ok &= ~np.isin(response, _RESPONSE_CODES[condition.response_not])
    mrd = result.mrd[index]
    if condition.mrd_at_least is not None:
        ok &= mrd >= condition.mrd_at_least
    if condition.mrd_below is not None:
        ok &= mrd < condition.mrd_below
    if condition.prior_hsct is not None:
        ok &= course.covariates.prior_hsct[index] == condition.prior_hsct
    return ok


def simulate_arm(protocol: Protocol, arm: Arm, covariates: Covariates, p: NDArray[np.float64],
                 parameters: ParameterSet, seed: int,
                 record_times: NDArray[np.float64] | None = None) -> ArmCourse:
    """Simulate the patients ``covariates`` (individual parameters ``p``) on ``arm`` of ``protocol``,
    recording trajectories at ``record_times`` (days since enrollment) if given."""
    n = len(covariates)
    y, c = initial_state(p, covariates, seed)
    times = np.empty(0) if record_times is None else np.sort(np.asarray(record_times, dtype=np.float64))
    course = ArmCourse(arm.name, covariates, p, y, c,
                       no_response_day=np.full(n, np.nan), off_protocol_day=np.full(n, np.nan),
                       randomization_day=np.full(n, np.nan) if arm.randomizes() else np.zeros(n),
                       progression_day=np.full(n, np.nan), death_after_progression_day=np.full(n, np.nan),
                       horizon_day=np.full(n, np.nan), record_times=times,
                       records=np.full((n, times.size, N_RECORD), np.nan))
    rules = management_rules(protocol)
    clock = np.zeros(n)
    phase = np.zeros(n, dtype=np.int64)
    counter = np.zeros(n, dtype=np.int64)
    names = [ph.name for ph in arm.phases]
    blast_threshold = protocol.endpoints.response.blast_threshold_percent
    recovery = parameters["count_recovery_fraction"]
    cap = protocol.follow_up_days + sum(ph.days for ph in arm.phases) * 4  # guard against endless loops

    while True:
        pending = phase[(phase >= 0)]
        if pending.size == 0:
            break
        q = int(pending.min())
        current = arm.phases[q]
        index = np.flatnonzero(phase == q)
        schedule = compile_phase(current, arm.phases, covariates.take(index), parameters)
        start = clock[index].copy()
        course.add_events(index, start, "phase_start", current.name)
        if current.randomization:
            course.randomization_day[index] = start
            course.add_events(index, start, "randomization")
        stops = sorted({a.day - 1.0 for a in current.assess} | {float(current.days)})
        position = np.arange(index.size)
        previous = 0.0
        for stop in stops:
            running = _running(course, index)
            keep = np.isin(index, running)
            times, drive, bolus = schedule.window(previous, stop)
            _integrate(course, index[keep], start[keep] + previous, times - previous, drive[position[keep]],
                       bolus[position[keep]], start[keep] + stop, rules, seed)
            for assessment in (a for a in current.assess if a.day - 1.0 == stop):
                running = _running(course, index)
                sel = np.isin(index, running)
                _assess(course, index[sel], start[sel] + stop, assessment, counter, blast_threshold, recovery,
                        seed)
            previous = stop
        ended = course.context[index, C_EVENT] != EVENT_NONE
        last_day = np.where(ended, course.context[index, C_EVENT_TIME], np.inf)
        for dose in schedule.doses:  # doses given before the patient's course ended (infusions stop there)
            given = (start + dose.day <= last_day) & (dose.amount > 0.0)
            duration = np.minimum(dose.duration, last_day[given] - start[given] - dose.day)
            course.add_events(index[given], start[given] + dose.day, "dose", dose.drug, dose.amount[given], duration)
        clock[index] = start + current.days
        running = _running(course, index)
        phase[index] = DONE
        default_next = q + 1 if q + 1 < len(arm.phases) else FOLLOW_UP
        undecided = running.copy()
        last = current.assess[-1].name if current.assess else None
        for decision in current.then:
            if undecided.size == 0:
                break
            if decision.when is None:
                chosen = undecided
            else:
                chosen = undecided[_holds(decision.when, course, undecided, last)]  # type: ignore[arg-type]
            target = decision.target
            if target == "off_protocol":
                _off_protocol(course, chosen, clock[chosen], phase)
            elif target == "follow_up":
                phase[chosen] = FOLLOW_UP
            else:
                phase[chosen] = names.index(target)
            undecided = np.setdiff1d(undecided, chosen)
        phase[undecided] = default_next
        over = (phase >= 0) & (clock > cap)
        phase[over] = FOLLOW_UP

    _refractory_at_completion(course, clock, phase)
    _follow_up(protocol, course, np.flatnonzero(phase == FOLLOW_UP), clock, seed)
    _finish(protocol, course, seed)
    return course


def _refractory_at_completion(course: ArmCourse, clock: NDArray[np.float64], phase: NDArray[np.int64]) -> None:
    """Patients who complete the protocol after a response assessment without ever being in remission are
    treatment failures, as if taken off protocol (a protocol without response assessments judges no one)."""
    finished = np.flatnonzero(phase == FOLLOW_UP)
    assessed = np.zeros(finished.size, dtype=bool)
    for result in course.assessments.values():
        assessed |= result.response[finished] >= 0
    never = finished[assessed & (course.context[finished, C_REMISSION] < 0.5)]
    _off_protocol(course, never, clock[never], phase)


def _off_protocol(course: ArmCourse, index: NDArray[np.int64], day: NDArray[np.float64],
                  phase: NDArray[np.int64]) -> None:
    """Treatment failure: patients never in remission progress (refractory); others are followed up."""
    never = course.context[index, C_REMISSION] < 0.5
    refractory = index[never]
    course.off_protocol_day[index] = day
    course.no_response_day[refractory] = day[never]
    course.progression_day[refractory] = day[never]
    phase[refractory] = DONE
    phase[index[~never]] = FOLLOW_UP
    course.add_events(index, day, "off_protocol")


def origin_days(origin: str, course: ArmCourse) -> NDArray[np.float64]:
    """Day (since enrollment) of an endpoint origin: enrollment is day 0; randomization the day of
    randomisation (day 0 for patients never randomised, who are not analysed); infusion the CAR-T infusion day
    (day 0 for patients never infused)."""
    if origin == "infusion":
        infusion = course.context[:, C_CAR_INFUSION]
        return np.where(infusion >= 0.0, infusion, 0.0)
    if origin == "randomization":
        return np.nan_to_num(course.randomization_day, nan=0.0)
    return np.zeros(course.context.shape[0])


def _horizon(protocol: Protocol, course: ArmCourse) -> NDArray[np.float64]:
    """End of follow-up: ``follow_up_days`` after the later of the EFS and OS origins."""
    endpoints = protocol.endpoints
    return np.maximum(origin_days(endpoints.efs.origin, course),
                      origin_days(endpoints.os.origin, course)) + protocol.follow_up_days


def _follow_up(protocol: Protocol, course: ArmCourse, index: NDArray[np.int64], clock: NDArray[np.float64],
               seed: int) -> None:
    horizon = _horizon(protocol, course)
    running = _running(course, index)
    todo = running[clock[running] < horizon[running]]
    zero_drive = np.zeros((todo.size, 1, N_DRIVE))
    zero_bolus = np.zeros((todo.size, 1, N_BOLUS))
    _integrate(course, todo, clock[todo], np.zeros(1), zero_drive, zero_bolus, horizon[todo],
               np.zeros((0, N_RULE_COLUMNS)), seed)


def post_progression_survival(parameters: NDArray[np.float64], relapsed: NDArray[np.bool_],
                              refractory: NDArray[np.bool_], u: NDArray[np.float64]) -> NDArray[np.float64]:
    """Days from progression (relapse or refractory disease) to death for uniforms ``u``: a mixture cure law.
    Salvage cures a fraction (``post_progression_cure_newly_diagnosed`` after first-line therapy,
    ``post_progression_cure_relapsed`` after therapy for ``relapsed`` disease): u below it gives inf (no
    leukemia death). The others die after a Weibull time with shape k (``post_progression_survival_shape``) and
    median ln 2 / ``post_progression_death_rate`` (k = 1: exponential with that rate), divided by
    ``post_progression_refractory_factor`` for ``refractory`` disease (never in remission), by inversion of the
    rescaled uniform v = (u - cure) / (1 - cure): t = median (ln(1/v) / ln 2)^(1/k)."""
    cure = np.where(relapsed, parameters[:, INDEX["post_progression_cure_relapsed"]],
                    parameters[:, INDEX["post_progression_cure_newly_diagnosed"]])
    median = np.log(2.0) / parameters[:, INDEX["post_progression_death_rate"]]
    median = np.where(refractory, median / parameters[:, INDEX["post_progression_refractory_factor"]], median)
    shape = parameters[:, INDEX["post_progression_survival_shape"]]
    rescaled = np.clip((u - cure) / (1.0 - cure), np.finfo(float).tiny, 1.0)
    return np.where(u <= cure, np.inf, median * (-np.log(rescaled) / np.log(2.0)) ** (1.0 / shape))


def _finish(protocol: Protocol, course: ArmCourse, seed: int) -> None:
    """Relapse and death events from the engine, and death after progression (post-progression hazard)."""
    horizon = _horizon(protocol, course)
    course.horizon_day[:] = horizon
    c = course.context
    relapsed = np.flatnonzero(c[:, C_EVENT] == EVENT_RELAPSE)
    course.progression_day[relapsed] = c[relapsed, C_EVENT_TIME]
    progressed = np.flatnonzero(np.isfinite(course.progression_day))
    u = uniforms(seed, course.covariates.patient_id[progressed], Stream.block("post_progression"))
    course.death_after_progression_day[progressed] = (
        course.progression_day[progressed]
        + post_progression_survival(course.parameters[progressed], course.covariates.relapsed[progressed],
                                    np.isfinite(course.no_response_day[progressed]), u))
    values = readouts_batch(course.state[relapsed], course.parameters[relapsed], c[relapsed])
    course.add_events(relapsed, c[relapsed, C_EVENT_TIME], "relapse", "", values[:, R_CLASS_FRACTION])
