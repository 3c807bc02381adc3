"""Protocol files: the bundled protocols load, the schema exports, the hash is canonical, and every kind of
bad input gives a ProtocolError naming the file, the field (as written in the YAML) and what was expected."""

from __future__ import annotations

import copy
import json
import pickle
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import yaml

from leukosim.model.layout import U_INFECTION, U_LEUKEMIA_KILL, U_LEUKEMIA_KILL_OTHER
from leukosim.model.registry import default_parameters
from leukosim.population.covariates import draw_covariates
from leukosim.protocol.load import (
    ProtocolError,
    bundled_protocols,
    load_protocol,
    parse_protocol,
    protocol_hash,
    protocol_json_schema,
)
from leukosim.protocol.schedule import compile_phase
from leukosim.protocol.schema import Protocol

BUNDLED = ["aall1331", "aall1621", "aieop-bfm-2000", "all-rez-bfm-87", "blina-hr-first-relapse", "blina-rr-peds",
           "chop-ctl019", "cibmtr-tisagenlecleucel", "eliana", "ino-vate"]

# A small valid protocol; each bad-input test changes one thing in it.
MINIMAL = """\
name: mini
title: Minimal blinatumomab protocol
population:
  disease: relapsed_refractory
  age_years: {distribution: uniform, range: [3, 21]}
  male_fraction: 0.5
  marrow_blasts_percent: {distribution: uniform, range: [5, 100]}
  wbc_per_uL: {distribution: lognormal, median: 3000, cv: 1.0, range: [200, 100000]}
  cd19_negative_fraction: {distribution: fixed, value: 1.0e-4}
  cd22_low_fraction: {distribution: fixed, value: 0.01}
  lineage_switch_fraction: {distribution: fixed, value: 1.0e-5}
  t_cell_fitness: {distribution: fixed, value: 1}
  chemosensitivity: {distribution: fixed, value: 1}
arms:
  - name: blinatumomab
    phases:
      - name: cycle-1
        days: 42
        drugs:
          - {drug: blinatumomab, dose: 15, unit: ug/m2/day, infusion: continuous, days: [1, 28]}
        assess:
          - {name: end-of-cycle-1, day: 29}
        then:
          - if: {response: NR}
            go: off_protocol
          - else: cycle-2
      - name: cycle-2
        days: 42
        same_as: cycle-1
"""


def write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def variant(old: str, new: str) -> str:
    assert old in MINIMAL, f"test fixture does not contain {old!r}"
    return MINIMAL.replace(old, new, 1)


def load_error(tmp_path: Path, text: str) -> ProtocolError:
    path = write(tmp_path, text)
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    error = info.value
    assert error.path == str(path)
    assert "bad.yaml" in str(error)
    return error


# --------------------------------------------------------------------------------------------- bundled


def test_bundled_protocols_lists_every_file() -> None:
    assert bundled_protocols() == BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_protocol_loads(name: str) -> None:
    protocol = load_protocol(name)
    assert isinstance(protocol, Protocol)
    assert protocol.name == name
    assert protocol.references and protocol.targets and protocol.arms
    for target in protocol.targets:
        assert target.source


def test_minimal_fixture_is_valid(tmp_path: Path) -> None:
    protocol = load_protocol(write(tmp_path, MINIMAL, "mini.yaml"))
    assert [phase.name for phase in protocol.arms[0].phases] == ["cycle-1", "cycle-2"]
    assert parse_protocol(MINIMAL) == protocol


def test_eliana_encodes_lymphodepletion_then_infusion() -> None:
    arm = load_protocol("eliana").arms[0]
    lymphodepletion, infusion = arm.phases
    assert lymphodepletion.days == 7
    doses = {drug.drug: (drug.dose, drug.unit, drug.days) for drug in lymphodepletion.drugs}
    assert doses == {"fludarabine": (30, "mg/m2", [1, 2, 3, 4]), "cyclophosphamide": (500, "mg/m2", [1, 2])}
    car = infusion.drugs[0]
    assert (car.drug, car.dose, car.unit, car.days) == ("tisagenlecleucel", 3.0e6, "cells/kg", [1])
    assert (
        car.weight_band is not None and car.weight_band.min_weight_kg == 50 and car.weight_band.dose == 1.0e8
    )


def test_blinatumomab_caps_and_weight_bands() -> None:
    cycle_1 = load_protocol("blina-rr-peds").arms[0].phases[0]
    steps = [(d.dose, d.days, d.max_dose.value, d.weight_band.dose) for d in cycle_1.drugs]  # type: ignore[union-attr]
    assert steps == [(5, [1, 7], 9, 9), (15, [8, 28], 28, 28)]
    assert all(d.weight_band.min_weight_kg == 45 for d in cycle_1.drugs)  # type: ignore[union-attr]


def test_aall1621_branches_cycle_2_dose_on_response() -> None:
    phases = {phase.name: phase for phase in load_protocol("aall1621").arms[0].phases}
    assert [d.target for d in phases["cycle-1"].then] == ["cycle-2-responder", "cycle-2-nonresponder"]
    total = {
        name: sum(d.dose * len(d.days) for d in phases[name].drugs)  # type: ignore[operator]
        for name in ("cycle-1", "cycle-2-responder", "cycle-2-nonresponder")
    }
    assert total == pytest.approx({"cycle-1": 1.8, "cycle-2-responder": 1.5, "cycle-2-nonresponder": 1.8})


def test_aieop_bfm_time_points_and_two_year_therapy() -> None:
    phases = {phase.name: phase for phase in load_protocol("aieop-bfm-2000").arms[0].phases}
    assert phases["protocol-IA"].assess[0].day == 33
    assert phases["protocol-IA"].days + phases["protocol-IB"].assess[0].day == 78
    standard = ["protocol-IA", "protocol-IB", "protocol-M", "protocol-II", "maintenance"]
    high_risk = [
        "protocol-IA",
        "protocol-IB",
        "hr-block-1",
        "hr-block-2",
        "hr-block-3",
        "hr-protocol-II",
        "hr-protocol-II-repeat",
        "hr-maintenance",
    ]
    assert sum(phases[name].days for name in standard) == 730
    assert sum(phases[name].days for name in high_risk) == 730


def test_leukemia_kill_of_induction_class_regimens_and_of_the_others_drive_separate_columns() -> None:
    """Induction-class regimens (prephase, induction, protocol IB's consolidation, reinduction) kill through the
    column scaled by the patient's chemosensitivity; high-dose methotrexate, high-risk blocks, maintenance and
    lymphodepleting agents through the one scaled by its shared power; every regimen's other effects are
    unchanged."""
    parameters = default_parameters()
    for name, phase_name, induction_class in (("aieop-bfm-2000", "protocol-IA", True),
                                              ("aieop-bfm-2000", "protocol-IB", True),
                                              ("aieop-bfm-2000", "protocol-M", False),
                                              ("aieop-bfm-2000", "hr-block-1", False),
                                              ("eliana", "lymphodepletion", False)):
        protocol = load_protocol(name)
        phases = protocol.arms[0].phases
        covariates = draw_covariates(protocol.population, 1, np.arange(3), parameters)
        drive = compile_phase(next(p for p in phases if p.name == phase_name), phases, covariates,
                              parameters).drive
        kill, other = drive[..., U_LEUKEMIA_KILL], drive[..., U_LEUKEMIA_KILL_OTHER]
        assert (kill.max() > 0.0, other.max() > 0.0) == (induction_class, not induction_class), phase_name
        assert drive[..., U_INFECTION].max() > 0.0


def test_aieop_bfm_protocol_m_kills_at_its_own_regimen_rate_not_protocol_ib() -> None:
    """Protocol IB (cyclophosphamide, cytarabine, mercaptopurine) and protocol M (high-dose methotrexate) are
    separate regimens: each phase's leukemia kill is its own regimen's parameter (IB's on the induction-class
    column, M's on the other-class one)."""
    parameters = default_parameters().replace(name="split", chemo_consolidation_leukemia_kill=0.3,
                                              chemo_high_dose_methotrexate_leukemia_kill=0.7)
    protocol = load_protocol("aieop-bfm-2000")
    phases = protocol.arms[0].phases
    covariates = draw_covariates(protocol.population, 1, np.arange(3), parameters)
    for phase_name, column, expected in (("protocol-IB", U_LEUKEMIA_KILL, 0.3),
                                         ("protocol-M", U_LEUKEMIA_KILL_OTHER, 0.7)):
        drive = compile_phase(next(p for p in phases if p.name == phase_name), phases, covariates,
                              parameters).drive
        assert drive[..., column].max() == pytest.approx(expected), phase_name


# --------------------------------------------------------------------------------------------- schema, hash


def test_json_schema_is_valid_json_with_protocol_properties() -> None:
    schema = json.loads(json.dumps(protocol_json_schema()))
    assert schema["$id"] and schema["title"]
    assert set(schema["properties"]) == {info.alias or name for name, info in Protocol.model_fields.items()}
    assert {"name", "title", "population", "arms"} <= set(schema["required"])
    # aliases (YAML key names) rather than Python names
    decision = schema["$defs"]["Decision"]["properties"]
    assert {"if", "go", "else"} == set(decision)


def test_bundled_files_validate_against_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = protocol_json_schema()
    root = resources.files("leukosim").joinpath("protocols")
    for name in BUNDLED:
        jsonschema.validate(yaml.safe_load(root.joinpath(f"{name}.yaml").read_text(encoding="utf-8")), schema)


def test_protocol_hash_is_stable() -> None:
    first = protocol_hash(load_protocol("eliana"))
    assert first == protocol_hash(load_protocol("eliana"))
    assert len(first) == 64 and int(first, 16) >= 0


def test_protocol_hash_ignores_layout_comments_and_key_order(tmp_path: Path) -> None:
    data = yaml.safe_load(MINIMAL)
    reordered = dict(reversed(list(data.items())))
    text = "# a comment\n" + yaml.safe_dump(reordered, sort_keys=False, default_flow_style=False)
    assert protocol_hash(load_protocol(write(tmp_path, text, "b.yaml"))) == protocol_hash(
        parse_protocol(MINIMAL)
    )


def test_protocol_hash_changes_when_a_dose_changes() -> None:
    assert protocol_hash(parse_protocol(variant("dose: 15", "dose: 5"))) != protocol_hash(
        parse_protocol(MINIMAL)
    )


# --------------------------------------------------------------------------------------------- bad input


def test_unknown_field(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        variant("        days: 42\n        drugs:", "        days: 42\n        dosage: 3\n        drugs:"),
    )
    assert error.field == "arms[0].phases[0].dosage"
    assert "arms[0].phases[0].dosage" in str(error)
    assert "unknown field 'dosage'" in str(error)
    assert "expected one of: name, days, same_as, randomization, drugs, procedures, assess, then" in error.expected


def test_wrong_unit(tmp_path: Path) -> None:
    error = load_error(tmp_path, variant("unit: ug/m2/day", "unit: mg/m2"))
    assert error.field == "arms[0].phases[0].drugs[0].unit"
    assert "arms[0].phases[0].drugs[0].unit" in str(error)
    assert "expected a unit for blinatumomab of ug/m2/day or ug/day, got mg/m2" in str(error)


def test_negative_dose(tmp_path: Path) -> None:
    error = load_error(tmp_path, variant("dose: 15", "dose: -5"))
    assert error.field == "arms[0].phases[0].drugs[0].dose"
    assert str(error).startswith(
        f"{error.path}: arms[0].phases[0].drugs[0].dose: expected a dose > 0, got -5"
    )


@pytest.mark.parametrize(
    ("age_range", "expected"),
    [
        ("[10, 5]", "expected range [low, high] with low < high, got [10, 5]"),
        ("[-1, 5]", "expected age_years within [0, 90], got [-1, 5]"),
        ("[1, 95]", "expected age_years within [0, 90], got [1, 95]"),
    ],
)
def test_impossible_age_range(tmp_path: Path, age_range: str, expected: str) -> None:
    error = load_error(tmp_path, variant("range: [3, 21]", f"range: {age_range}"))
    assert error.field == "population.age_years.range"
    assert "population.age_years.range" in str(error)
    assert expected in str(error)


def test_unknown_drug(tmp_path: Path) -> None:
    error = load_error(tmp_path, variant("drug: blinatumomab", "drug: blinatumumab"))
    assert error.field == "arms[0].phases[0].drugs[0].drug"
    assert "arms[0].phases[0].drugs[0].drug" in str(error)
    assert "expected one of: blinatumomab, inotuzumab_ozogamicin, tisagenlecleucel" in str(error)
    assert "got 'blinatumumab'" in str(error) and "did you mean 'blinatumomab'" in str(error)


def test_yaml_syntax_error(tmp_path: Path) -> None:
    error = load_error(tmp_path, variant("  male_fraction: 0.5\n", "  male_fraction: [0.5\n"))
    assert error.field.startswith("line ") and ", column " in error.field
    assert "expected valid YAML" in str(error)


def test_unknown_decision_target(tmp_path: Path) -> None:
    error = load_error(tmp_path, variant("else: cycle-2", "else: cycle-9"))
    assert error.field == "arms[0].phases[0].then[1].else"
    assert "arms[0].phases[0].then[1].else" in str(error)
    assert "expected a phase of arm 'blinatumomab' (cycle-1, cycle-2), off_protocol or follow_up" in str(
        error
    )
    assert "got 'cycle-9'" in str(error)


# --------------------------------------------------------------------------------------------- more errors


def test_several_errors_are_reported_one_per_line(tmp_path: Path) -> None:
    text = variant("dose: 15", "dose: -5").replace("male_fraction: 0.5", "male_fraction: 1.5")
    error = load_error(tmp_path, text)
    fields = [field for field, _ in error.errors]
    assert fields == ["population.male_fraction", "arms[0].phases[0].drugs[0].dose"]
    lines = str(error).splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{error.path}: ") for line in lines)
    assert "expected a fraction <= 1, got 1.5" in lines[0]
    assert error.lines == [6, 20]


def test_duplicate_key(tmp_path: Path) -> None:
    error = load_error(
        tmp_path, variant("  male_fraction: 0.5\n", "  male_fraction: 0.5\n  male_fraction: 0.6\n")
    )
    assert error.field == "population.male_fraction"
    assert "expected each key once" in error.expected


@pytest.mark.parametrize(("text", "got"), [("- a\n- b\n", "got a list"), ("", "got an empty document")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, got: str) -> None:
    error = load_error(tmp_path, text)
    assert error.field == ""
    assert "expected a mapping of protocol fields at the top level" in str(error) and got in str(error)


def test_unknown_bundled_name_lists_bundled_protocols() -> None:
    with pytest.raises(ProtocolError) as info:
        load_protocol("elianna")
    assert "unknown protocol 'elianna'" in str(info.value)
    assert ", ".join(BUNDLED) in str(info.value)


def test_missing_file_lists_bundled_protocols(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError) as info:
        load_protocol(tmp_path / "absent.yaml")
    assert "absent.yaml" in str(info.value) and "file not found" in str(info.value)
    assert ", ".join(BUNDLED) in str(info.value)


def test_an_arm_randomises_at_most_once(tmp_path: Path) -> None:
    text = variant("      - name: cycle-1\n", "      - name: cycle-1\n        randomization: true\n")
    text = text.replace("        same_as: cycle-1\n", "        same_as: cycle-1\n        randomization: true\n")
    error = load_error(tmp_path, text)
    assert error.field == "arms[0].phases[1].randomization"
    assert "expected at most one randomization phase in arm 'blinatumomab', got 'cycle-1' and 'cycle-2'" in str(error)


def test_randomisation_after_a_run_in_is_in_every_arm(tmp_path: Path) -> None:
    data = yaml.safe_load(MINIMAL)
    control = {**copy.deepcopy(data["arms"][0]), "name": "control"}
    data["arms"][0]["phases"][1]["randomization"] = True
    data["arms"].append(control)
    error = load_error(tmp_path, yaml.safe_dump(data, sort_keys=False))
    assert error.field == "arms[1].phases"
    assert "expected a phase with randomization: true in every arm, as in 'blinatumomab'" in str(error)


def test_cross_field_error_points_at_the_field(tmp_path: Path) -> None:
    error = load_error(tmp_path, variant("days: [1, 28]}", "days: [1, 50]}"))
    assert error.field == "arms[0].phases[0].drugs[0].days"
    assert "expected days within the 42-day phase" in error.expected


def test_late_relapse_share_outside_a_first_relapse_points_at_the_field(tmp_path: Path) -> None:
    error = load_error(tmp_path, variant("male_fraction: 0.5", "male_fraction: 0.5\n  late_relapse_fraction: 0.3"))
    assert error.field == "population.late_relapse_fraction"
    assert "expected late_relapse_fraction 0 for disease 'relapsed_refractory'" in str(error)


def test_infinite_dose_is_rejected(tmp_path: Path) -> None:
    error = load_error(tmp_path, variant("dose: 15", "dose: .inf"))
    assert error.field == "arms[0].phases[0].drugs[0].dose" and "finite" in error.expected


def test_protocol_error_pickles() -> None:
    error = ProtocolError("x.yaml", [("a.b", "expected c, got d")], [3])
    clone = pickle.loads(pickle.dumps(error))
    assert str(clone) == str(error) == "x.yaml: a.b: expected c, got d (line 3)"


def test_schema_regimens_match_the_model_regimen_table() -> None:
    """Every regimen a protocol may name has kill rates in the model, and vice versa."""
    from typing import get_args

    from leukosim.model.chemotherapy import REGIMENS
    from leukosim.protocol.schema import ChemoRegimen

    assert set(get_args(ChemoRegimen)) == set(REGIMENS)
