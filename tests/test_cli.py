"""The ``leukosim`` command: bad protocol files fail cleanly (non-zero exit, the file, the field as written in
the YAML and what was expected, no traceback); a run writes a complete run directory; ``protocols``,
``params`` and ``schema`` print what they promise.

Rich wraps console output at the terminal width (80 columns when the output is not a terminal), folding
long words such as file paths, so messages are compared with all whitespace removed."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import leukosim
from leukosim import ProtocolError, default_parameters, load_protocol
from leukosim.cli import app
from leukosim.model.registry import PARAMETERS
from leukosim.protocol.load import bundled_protocols, protocol_hash, protocol_json_schema

BUNDLED = bundled_protocols()  # the literal list is pinned in test_protocols.py
REQUIRED_COLUMNS = [
    "patient_id", "arm", "age_years", "weight_kg", "bsa_m2", "status", "best_response", "crs_max_grade",
    "icans_max_grade", "efs_days", "efs_event", "efs_event_type", "os_days", "os_event", "relapse_phenotype",
    "hsct",
]
RUN_PATIENTS = 20
RUN_SEED = 3

runner = CliRunner()


def squeeze(text: str) -> str:
    """``text`` without any whitespace (undoes Rich's line wrapping and folding)."""
    return "".join(text.split())


def eliana_data() -> dict[str, Any]:
    """The bundled ELIANA protocol as plain data (each bad-input case changes one thing in it)."""
    text = resources.files("leukosim").joinpath("protocols", "eliana.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


Change = Callable[[dict[str, Any]], None]


def _set(*path: str | int, value: object) -> Change:
    def change(data: dict[str, Any]) -> None:
        node: Any = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change



DRUG_0 = ("arms", 0, "phases", 1, "drugs", 0)  # tisagenlecleucel

# (case, change to eliana, field as written in the YAML, what the message must say was expected)
BAD_INPUTS = [
    pytest.param(_set("arms", 0, "phases", 1, "dosage", value=3), "arms[0].phases[1].dosage",
                 "unknown field 'dosage'; expected one of: name, days", id="unknown-field"),
    pytest.param(_set(*DRUG_0, "unit", value="mg/m2"), "arms[0].phases[1].drugs[0].unit",
                 "expected a unit for tisagenlecleucel of cells/kg or cells, got mg/m2", id="wrong-unit"),
    pytest.param(_set("arms", 0, "phases", 0, "drugs", 0, "dose", value=-30),  # fludarabine
                 "arms[0].phases[0].drugs[0].dose",
                 "expected a dose > 0, got -30", id="negative-dose"),
    pytest.param(_set("population", "age_years", value={"distribution": "uniform", "range": [3, 95]}),
                 "population.age_years.range", "expected age_years within [0, 90], got [3, 95]",
                 id="age-range-beyond-30"),
    pytest.param(_set("population", "age_years", value={"distribution": "uniform", "range": [24, 3]}),
                 "population.age_years.range", "expected range [low, high] with low < high, got [24, 3]",
                 id="age-range-reversed"),
    pytest.param(_set(*DRUG_0, "drug", value="axicabtagene_ciloleucel"),
                 "arms[0].phases[1].drugs[0].drug", "expected one of: blinatumomab, inotuzumab_ozogamicin",
                 id="unknown-drug"),
    pytest.param(_set(*DRUG_0, "drug", value="[/car]"),
                 "arms[0].phases[1].drugs[0].drug", "expected one of: blinatumomab, inotuzumab_ozogamicin",
                 id="unknown-drug-looking-like-markup"),
]


def write_bad(tmp_path: Path, change: Change) -> Path:
    data = copy.deepcopy(eliana_data())
    change(data)
    path = tmp_path / "bad-protocol.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("change", "field", "expected"), BAD_INPUTS)
def test_run_rejects_bad_protocol(tmp_path: Path, change: Change, field: str, expected: str) -> None:
    path = write_bad(tmp_path, change)
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    assert info.value.field == field  # the fixture breaks what it means to break

    result = runner.invoke(app, ["run", str(path), "--patients", "2", "--out", str(tmp_path / "run")])

    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    output = squeeze(result.output)
    assert "Traceback" not in result.output
    assert squeeze(str(path)) in output
    assert squeeze(field) in output
    assert squeeze(expected) in output
    for where, message in info.value.errors:  # every problem, exactly as the loader words it
        assert squeeze(f"{where}: {message}") in output
    assert not (tmp_path / "run").exists()


def test_run_rejects_unknown_protocol_name(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "elianna", "--out", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    output = squeeze(result.output)
    assert "'elianna'" in output and all(name in output for name in BUNDLED)


def test_run_prints_any_title(tmp_path: Path) -> None:
    data = eliana_data()
    data["title"] = "ELIANA [/draft] re-analysis"
    path = tmp_path / "titled.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    result = runner.invoke(app, ["run", str(path), "--patients", "2", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, repr(result.exception)
    assert "ELIANA [/draft] re-analysis" in result.output


def test_console_script_fails_cleanly_on_bad_input(tmp_path: Path) -> None:
    """The installed ``leukosim`` entry point, in a real process: non-zero exit, message, no traceback."""
    script = shutil.which("leukosim", path=str(Path(sys.executable).parent)) or shutil.which("leukosim")
    assert script is not None, "the leukosim console script is not installed"
    path = write_bad(tmp_path, _set(*DRUG_0, "drug", value="axicabtagene_ciloleucel"))

    done = subprocess.run([script, "run", str(path), "--patients", "2"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)

    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    stderr = squeeze(done.stderr)
    assert squeeze(str(path)) in stderr
    assert "arms[0].phases[1].drugs[0].drug" in stderr
    assert squeeze("expected one of: blinatumomab") in stderr
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------------------------- run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "eliana-run"
    result = runner.invoke(app, ["run", "eliana", "--patients", str(RUN_PATIENTS), "--seed", str(RUN_SEED),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return out


def test_run_writes_run_directory(run_dir: Path) -> None:
    assert {"manifest.json", "patients.parquet", "events.parquet"} <= {p.name for p in run_dir.iterdir()}
    assert not list(run_dir.glob("*.partial"))


def test_run_patient_table(run_dir: Path) -> None:
    patients = pd.read_parquet(run_dir / "patients.parquet")
    protocol = load_protocol("eliana")
    assessments = list(dict.fromkeys(assessment.name for arm in protocol.arms for phase in arm.phases
                                     for assessment in phase.assess))
    assert assessments == ["day-28", "month-3"]
    mrd = [f"mrd_{name.replace('-', '_')}" for name in assessments]

    assert set(REQUIRED_COLUMNS + mrd) <= set(patients.columns)
    assert sorted(c for c in patients.columns if c.startswith("mrd_")) == sorted(mrd)  # one per assessment
    assert len(patients) == RUN_PATIENTS
    assert patients["patient_id"].tolist() == list(range(RUN_PATIENTS))
    assert set(patients["arm"]) == {"tisagenlecleucel"}
    assert patients["status"].notna().all()
    assert (patients["weight_kg"] > 0).all() and (patients["bsa_m2"] > 0).all()

    events = pd.read_parquet(run_dir / "events.parquet")
    assert {"patient_id", "arm", "day", "event"} <= set(events.columns)
    assert set(events["patient_id"]) == set(range(RUN_PATIENTS))


def test_run_manifest(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["seed"] == RUN_SEED
    assert manifest["n_patients"] == RUN_PATIENTS
    assert manifest["protocol"] == "eliana"
    assert manifest["protocol_hash"] == protocol_hash(load_protocol("eliana"))
    assert manifest["chunk_size"] > 0 and manifest["resumed"] is False
    assert manifest["parameter_set_hash"] == default_parameters().hash()
    assert manifest["leukosim_version"] == leukosim.__version__
    versions = manifest["versions"]
    assert {"numpy", "scipy", "numba", "pandas"} <= set(versions)
    assert all(isinstance(v, str) and v for v in versions.values())
    timings = manifest["timings_s"]  # seconds
    assert timings["simulate"] > 0.0


# --------------------------------------------------------------------------------------------- listings


def table_rows(output: str) -> dict[str, str]:
    """Body rows of a Rich table by their first cell (continuation lines of wrapped rows have it empty)."""
    return {line.split("│")[1].strip(): line for line in output.splitlines() if line.count("│") >= 2}


def test_protocols_lists_bundled_names() -> None:
    result = runner.invoke(app, ["protocols"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    names = [line.split("│")[1].strip() for line in result.output.splitlines() if line.count("│") >= 2]
    assert [name for name in names if name] == BUNDLED


def test_params_prints_name_unit_and_source_of_every_parameter() -> None:
    result = runner.invoke(app, ["params"], env={"COLUMNS": "1000"})  # wide enough for one line per parameter
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert len(PARAMETERS) > 100
    for parameter in PARAMETERS:
        row = rows[parameter.name]
        assert parameter.unit in row and parameter.source in row, parameter.name


def test_params_keeps_full_names_when_output_is_narrow() -> None:
    result = runner.invoke(app, ["params"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    output = squeeze(result.output)
    missing = [parameter.name for parameter in PARAMETERS if parameter.name not in output]
    assert not missing, f"{len(missing)} of {len(PARAMETERS)} names cut, e.g. {missing[:3]}"


def test_params_calibratable_lists_only_calibratable() -> None:
    result = runner.invoke(app, ["params", "--calibratable"], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    calibratable = {parameter.name for parameter in PARAMETERS if parameter.calibrate}
    assert 0 < len(calibratable) < len(PARAMETERS)
    assert set(table_rows(result.output)) - {""} == calibratable


def test_schema_prints_valid_json(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema == protocol_json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"name", "title", "population", "arms"} <= set(schema["required"])

    out = tmp_path / "protocol.schema.json"
    assert runner.invoke(app, ["schema", "--out", str(out)]).exit_code == 0
    assert json.loads(out.read_text()) == schema
