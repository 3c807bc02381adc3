"""SBML export against leukosim's own solution of the same deterministic model.

For three virtual patients of every bundled protocol (first arm, its complete-responder path: every dose the
export writes), the exported SBML is checked by libsbml (no errors, units checks included: the unit warnings of
ln/exp terms remain) and simulated by libRoadRunner (CVODE, relative tolerance 1e-10, absolute 1e-12). The same
patients are solved by leukosim's reference solver (``engine.reference.solve_patient``: the engine's compiled
right-hand side, boluses and blinatumomab re-anchoring, SciPy LSODA at relative 1e-10, absolute 1e-12), with the
stochastic layers switched off as in the export. The compiled engine's own tolerances are fixed (1e-5 on ln cell
counts); ``tests/test_reference_solver.py`` ties it to the reference solver, and the last test here ties its final
state to libRoadRunner, at the same tolerance (``engine_tolerance.py``: 1e-3 ln plus 1e-4 of the state's change).

Every state is compared daily (at day + 0.37, off the dose breakpoints, and at the end of the path):

* cell numbers and Kendall's K (ln states) as a relative difference of the counts, |exp(ln a - ln b) - 1|, at any
  size: on the log scale both solvers control the relative error of the count, so there is no noise floor;
* linear states (inotuzumab mg, liver injury, cumulative hazards) as a relative difference where the reference is
  above 1e-8 in magnitude (roadrunner's absolute tolerance 1e-12 is 1e-4 of that floor).

Largest relative differences seen (seed 3, patients 0-2; python-libsbml 5.21.2, libroadrunner 2.10.0):
eliana 1.6e-7, blina-rr-peds 7.8e-6, aall1621 4.6e-8, aall1331 5.7e-7, aieop-bfm-2000 5.7e-8.
"""

from __future__ import annotations

from pathlib import Path

import libsbml
import numpy as np
import pytest
from numpy.typing import NDArray
from typer.testing import CliRunner

from leukosim.cli import app
from leukosim.engine.integrator import N_RECORD, N_RULE_COLUMNS, integrate_batch
from leukosim.engine.reference import DeterministicCourse, deterministic_course, solve_patient
from leukosim.interop.sbml import ANNOTATION_NAMESPACE, course_sbml, patient_sbml
from leukosim.model.layout import B_HSCT, N_STATES, S_CAR_EXHAUSTED, S_LEUKEMIA, STATE_NAMES
from leukosim.model.registry import PARAMETERS
from leukosim.population.streams import Stream
from leukosim.protocol.load import bundled_protocols, load_protocol

from engine_tolerance import ln_tolerance

roadrunner = pytest.importorskip("roadrunner")

SEED = 3
PATIENTS = (0, 1, 2)
PROTOCOLS = bundled_protocols()
RTOL = 1.0e-10
ATOL = 1.0e-12
TOLERANCE = 1.0e-4  # relative
LINEAR_FLOOR = 1.0e-8  # linear states smaller than this in the reference are not compared
LOG_STATES = np.arange(S_LEUKEMIA, S_CAR_EXHAUSTED + 1)
LINEAR_STATES = np.arange(S_CAR_EXHAUSTED + 1, N_STATES)


@pytest.fixture(scope="module", params=PROTOCOLS)
def course(request: pytest.FixtureRequest) -> DeterministicCourse:
    return deterministic_course(load_protocol(request.param), PATIENTS, SEED)


def sample_times(course: DeterministicCourse) -> NDArray[np.float64]:
    return np.append(np.arange(0.37, course.t_end, 1.0), course.t_end)


def roadrunner_states(sbml: str, times: NDArray[np.float64]) -> NDArray[np.float64]:
    """States (len(times) x N_STATES) of libRoadRunner's simulation from day 0."""
    runner = roadrunner.RoadRunner(sbml)
    runner.integrator.relative_tolerance = RTOL
    runner.integrator.absolute_tolerance = ATOL
    runner.integrator.maximum_num_steps = 200_000
    runner.timeCourseSelections = ["time", *STATE_NAMES]
    result = np.asarray(runner.simulate(times=np.concatenate([[0.0], times])))
    assert np.allclose(result[1:, 0], times)
    return result[1:, 1:]


def reference_states(course: DeterministicCourse, row: int, times: NDArray[np.float64]) -> NDArray[np.float64]:
    states = np.full((times.size, N_STATES), np.nan)
    solve_patient(course.y0[row], course.p[row], course.c0[row], course.times, course.drive[row],
                  course.bolus[row], course.t_end, "LSODA", RTOL, ATOL, times, states)
    return states


def relative_differences(exported: NDArray[np.float64], reference: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per sample and state: relative difference of counts for ln states, of values above the floor otherwise."""
    difference = np.zeros_like(reference)
    difference[:, LOG_STATES] = np.abs(np.expm1(exported[:, LOG_STATES] - reference[:, LOG_STATES]))
    linear = reference[:, LINEAR_STATES]
    compared = np.abs(linear) > LINEAR_FLOOR
    difference[:, LINEAR_STATES] = np.where(
        compared, np.abs(exported[:, LINEAR_STATES] - linear) / np.where(compared, np.abs(linear), 1.0), 0.0)
    return difference


def consistency_errors(sbml: str) -> tuple[list[str], int]:
    """libsbml's consistency errors (units checks on) and the number of warnings."""
    document = libsbml.readSBMLFromString(sbml)
    document.setConsistencyChecks(libsbml.LIBSBML_CAT_UNITS_CONSISTENCY, True)
    problems = [document.getError(i) for i in range(document.checkConsistency())]
    problems += [document.getError(i) for i in range(document.getNumErrors())]
    errors = [f"{p.getSeverityAsString()}: {p.getMessage()}" for p in problems
              if p.getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
    return errors, sum(p.getSeverity() == libsbml.LIBSBML_SEV_WARNING for p in problems)


def test_roadrunner_reproduces_leukosim(course: DeterministicCourse) -> None:
    times = sample_times(course)
    worst = 0.0
    for row in range(len(PATIENTS)):
        sbml = course_sbml(course, row)
        errors, _ = consistency_errors(sbml)
        assert not errors, errors[:3]
        exported = roadrunner_states(sbml, times)
        reference = reference_states(course, row, times)
        assert np.isfinite(reference).all()
        difference = relative_differences(exported, reference)
        sample, state = np.unravel_index(np.argmax(difference), difference.shape)
        assert difference.max() <= TOLERANCE, (
            f"{course.protocol}: {STATE_NAMES[state]} of patient {PATIENTS[row]} at day {times[sample]:g} differs "
            f"by {difference.max():.3g} (relative); roadrunner {exported[sample, state]:.10g}, "
            f"leukosim {reference[sample, state]:.10g}")
        worst = max(worst, float(difference.max()))
    assert worst > 0.0  # the comparison compared something


def test_engine_final_state_matches_roadrunner(course: DeterministicCourse) -> None:
    """The compiled engine (its own tolerances) ends where libRoadRunner ends on the export."""
    y, c = course.y0.copy(), course.c0.copy()
    n, breakpoints = y.shape[0], course.times.size
    integrate_batch(y, course.p, c, np.ascontiguousarray(np.broadcast_to(course.times, (n, breakpoints))),
                    course.drive.copy(), course.bolus.copy(), np.full(n, breakpoints, dtype=np.int64),
                    np.full(n, course.t_end), np.zeros((0, N_RULE_COLUMNS)), SEED, course.patient_id,
                    Stream.block("extinction"), np.empty(0), np.empty((n, 0, N_RECORD)))
    exported = np.array([roadrunner_states(course_sbml(course, row), np.array([course.t_end]))[0]
                         for row in range(n)])
    error = np.abs(y[:, LOG_STATES] - exported[:, LOG_STATES])
    assert np.all(error <= ln_tolerance(exported[:, LOG_STATES], course.y0[:, LOG_STATES]))


def test_export_documents_every_parameter_and_dose() -> None:
    protocol = load_protocol("aall1621")
    course = deterministic_course(protocol, [4], SEED)
    document = libsbml.readSBMLFromString(course_sbml(course))
    model = document.getModel()
    assert model.getLevel() == 3 and model.getVersion() == 2
    assert model.getTimeUnits() == "day"
    defined_units = {model.getUnitDefinition(i).getId() for i in range(model.getNumUnitDefinitions())}
    registry = {parameter.name: parameter for parameter in PARAMETERS}
    constants = [model.getParameter(i) for i in range(model.getNumParameters()) if model.getParameter(i).getConstant()]
    for parameter in constants:
        assert parameter.getUnits() in defined_units | {"dimensionless"}, parameter.getId()
        if parameter.getId().startswith("alive_"):
            continue
        annotation = parameter.getAnnotation().getChild(0)
        assert (annotation.getURI(), annotation.getName()) == (ANNOTATION_NAMESPACE, "parameter"), parameter.getId()
        assert annotation.getAttrValue("source"), parameter.getId()
        if parameter.getId() in registry:
            assert annotation.getAttrValue("source") == registry[parameter.getId()].source
            assert annotation.getAttrValue("unit") == registry[parameter.getId()].unit
    assert {"gvl_kill_max", "ino_kill_max", "car_kill_max", "blin_kill_rate"} <= {p.getId() for p in constants}
    # every state has exactly one rate rule
    rated = [model.getRule(i).getVariable() for i in range(model.getNumRules()) if model.getRule(i).isRate()]
    assert sorted(rated) == sorted(STATE_NAMES)
    # one event per dose breakpoint (inotuzumab days 1, 8, 15 of two cycles, transplant) and the SOS window end
    events = [model.getEvent(i) for i in range(model.getNumEvents())]
    assert len(events) == np.count_nonzero(course.bolus[0].any(axis=1)) + 1 == 7 + 1
    assert all(e.getTrigger().getPersistent() and not e.getTrigger().getInitialValue() and not e.isSetDelay()
               for e in events)
    hsct = [e for e in events if any(e.getEventAssignment(j).getVariable() == "hsct_time"
                                     for j in range(e.getNumEventAssignments()))]
    assert len(hsct) == 1 and course.bolus[0, :, B_HSCT].sum() == 1


def test_bad_input_raises_located_errors() -> None:
    protocol = load_protocol("eliana")
    with pytest.raises(ValueError, match="patient id"):
        patient_sbml(protocol, -1)
    with pytest.raises(ValueError, match="no arm 'chemo'"):
        patient_sbml(protocol, 0, arm="chemo")
    with pytest.raises(ValueError, match="no phase 'induction'.*lymphodepletion"):
        patient_sbml(protocol, 0, phases=["lymphodepletion", "induction"])


def test_cli_writes_valid_sbml(tmp_path: Path) -> None:
    out = tmp_path / "patient.xml"
    result = CliRunner().invoke(app, ["export", "sbml", "--protocol", "blina-rr-peds", "--patient", "5", "--seed",
                                      "2", "--phases", "cycle-1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    sbml = out.read_text()
    assert consistency_errors(sbml)[0] == []
    assert sbml == patient_sbml(load_protocol("blina-rr-peds"), 5, 2, phases=["cycle-1"])
    runner = roadrunner.RoadRunner(sbml)
    assert runner.model.getNumEvents() == 3  # 5 ug/m2/day from day 1, 15 ug/m2/day from day 8, stop after day 28


@pytest.mark.parametrize(("arguments", "message"), [
    (["--protocol", "no-such-trial", "--patient", "0"], "unknown protocol 'no-such-trial'"),
    (["--protocol", "eliana", "--patient", "-3"], "--patient must be a virtual patient id >= 0, got -3"),
    (["--protocol", "eliana", "--patient", "0", "--phases", "cycle-9"], "no phase 'cycle-9'"),
])
def test_cli_bad_input_fails_with_a_message(tmp_path: Path, arguments: list[str], message: str) -> None:
    out = tmp_path / "model.xml"
    result = CliRunner().invoke(app, ["export", "sbml", *arguments, "--out", str(out)])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not out.exists()
