"""NONMEM and ADaM exports of real runs: pharmpy reads the NM-TRAN file as written, doses round-trip to the
protocols' label doses, observations match the events, and the ADTTE reproduces the patient table's survival."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from typer.testing import CliRunner

import leukosim
from leukosim.cli import app
from leukosim.io.adam import adtte, write_adtte
from leukosim.io.nonmem import COLUMNS, nonmem_dataset, write_nonmem
from leukosim.io.rundir import write_run

pharmpy_modeling = pytest.importorskip("pharmpy.modeling")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    return {name: write_run(leukosim.simulate_trial(name, n, seed=11), base / name)
            for name, n in (("eliana", 60), ("aall1331", 120))}


def _patients(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "patients.parquet").set_index("patient_id")


@pytest.mark.parametrize("name", ["eliana", "aall1331"])
def test_pharmpy_reads_the_dataset_as_written(runs: dict[str, Path], tmp_path: Path, name: str) -> None:
    csv, datainfo, dictionary = write_nonmem(runs[name], tmp_path / f"{name}.csv")
    ours = pd.read_csv(csv)
    assert list(ours.columns) == list(COLUMNS)
    assert all(pd.api.types.is_numeric_dtype(ours[c]) for c in ours.columns)
    read = pharmpy_modeling.read_dataset_from_datainfo(datainfo, datatype="nonmem")
    # pharmpy's NONMEM reader drops subjects without observations, as NONMEM estimation would ignore them
    observed = ours[ours["ID"].isin(ours.loc[ours["EVID"] == 0, "ID"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(read.reset_index(drop=True), observed, check_dtype=False)
    model = pharmpy_modeling.create_basic_pk_model("iv", dataset_path=csv)  # finds the .datainfo sidecar
    assert model.datainfo["WT"].variable.properties["descriptor"] == "body weight"
    assert model.datainfo.id_column.name == "ID" and model.datainfo.dv_column.name == "DV"
    checks = pharmpy_modeling.check_dataset(model, dataframe=True, verbose=True)
    assert (checks["result"] == "OK").all(), checks[checks["result"] != "OK"]
    document = json.loads(dictionary.read_text())
    assert document["notice"].startswith("Research use only")
    assert [c["column"] for c in document["columns"]] == list(COLUMNS)


@pytest.mark.parametrize("name", ["eliana", "aall1331"])
def test_records_follow_nm_tran_rules(runs: dict[str, Path], name: str) -> None:
    data = nonmem_dataset(runs[name])
    doses, obs = data[data["EVID"] == 1], data[data["EVID"] == 0]
    assert (doses["MDV"] == 1).all() and (doses["AMT"] > 0).all() and (doses["DV"] == 0).all()
    assert (obs["MDV"] == 0).all() and (obs[["AMT", "RATE"]] == 0).all().all() and (obs["DVID"] > 0).all()
    assert (data.loc[data["EVID"] == 2, ["AMT", "RATE", "CMT"]] == 0).all().all()
    assert data["ID"].is_monotonic_increasing
    assert (data.groupby("ID")["TIME"].diff().dropna() >= 0).all()
    blq = obs[obs["BLQ"] == 1]
    assert len(blq) > 0 and np.allclose(blq["DV"], blq["LLOQ"])
    quantified = obs[(obs["BLQ"] == 0) & (obs["LLOQ"] > 0)]
    assert len(quantified) > 0 and (quantified["DV"] >= quantified["LLOQ"]).all()
    # at equal times, samples come before doses (assessments are pre-dose)
    rank = data["EVID"].map({0: 0, 2: 1, 1: 2})
    same = (data["ID"] == data["ID"].shift()) & (data["TIME"] == data["TIME"].shift())
    assert (rank[same] >= rank.shift()[same]).all()
    patients = _patients(runs[name])
    ok = patients[patients["status"] == "ok"]
    per_id = data.groupby("ID").first()
    assert np.allclose(per_id["WT"], ok.loc[per_id.index - 1, "weight_kg"])
    assert (per_id["SEX"] == (ok.loc[per_id.index - 1, "sex"] == "M").astype(int).to_numpy()).all()


def test_mrd_observations_are_the_assay_results(runs: dict[str, Path]) -> None:
    events = pd.read_parquet(runs["aall1331"] / "events.parquet")
    measured = events[(events["event"] == "assessment") & events["value"].notna()]
    mrd = nonmem_dataset(runs["aall1331"]).query("DVID == 1")
    assert len(mrd) == len(measured)
    assert mrd["BLQ"].sum() == (measured["value"] == 0).sum() > 0
    assert np.allclose(mrd.loc[mrd["BLQ"] == 1, "DV"], 1e-4)  # flow: 10 events in 1e5 cells
    detected = np.sort(measured.loc[measured["value"] > 0, "value"].to_numpy())
    assert np.allclose(np.sort(mrd.loc[mrd["BLQ"] == 0, "DV"].to_numpy()), detected)


def test_baseline_covariates_are_the_patient_table(runs: dict[str, Path]) -> None:
    """One value per patient, equal to the patient table's (AALL1331 enrolls early and late first relapses)."""
    data = nonmem_dataset(runs["aall1331"])
    baseline = data.groupby("ID")[["PHSCT", "LATE", "BLAST"]].nunique()
    assert (baseline == 1).all().all()
    first = data.groupby("ID").first()
    patients = _patients(runs["aall1331"]).loc[first.index - 1]
    assert np.array_equal(first["LATE"].to_numpy(), patients["late_relapse"].astype(int).to_numpy())
    assert np.array_equal(first["PHSCT"].to_numpy(), patients["prior_hsct"].astype(int).to_numpy())
    assert 0 < first["LATE"].sum() < len(first)


def test_car_t_and_lymphodepletion_doses_are_the_label_doses(runs: dict[str, Path]) -> None:
    data = nonmem_dataset(runs["eliana"])
    cart = data[(data["EVID"] == 1) & (data["CMT"] == 3)].set_index("ID")
    assert cart.index.is_unique and len(cart) > 0
    expected = np.where(cart["WT"] >= 50, 1.0e8, 3.0e6 * cart["WT"])  # eliana.yaml: 3e6/kg, 1e8 from 50 kg
    assert np.allclose(cart["AMT"], expected, rtol=1e-9)
    assert np.allclose(cart["TIME"], 7.0) and np.allclose(cart["ORIG"], 7.0)  # infusion = day 1 of phase 2
    flu = data[(data["EVID"] == 1) & (data["CMT"] == 4)]
    doses = flu.groupby("ID").size()
    assert (doses.loc[cart.index] == 4).all() and (doses <= 4).all()  # fewer only for deaths before infusion
    assert np.allclose(flu["AMT"], 30.0 * flu["BSA"], rtol=1e-9)
    cy = data[(data["EVID"] == 1) & (data["CMT"] == 5)]
    assert np.allclose(cy["AMT"], 500.0 * cy["BSA"], rtol=1e-9) and (cy["RATE"] == 0).all()
    car = data[data["DVID"] == 2]
    assert len(car) > 0 and (car["TIME"] >= car["ID"].map(cart["TIME"])).all()


def test_blinatumomab_infusions_match_the_label_rate_and_interruptions(runs: dict[str, Path]) -> None:
    run = runs["aall1331"]
    data = nonmem_dataset(run)
    blin = data[(data["EVID"] == 1) & (data["CMT"] == 1)]
    rate = np.where(blin["WT"] >= 45, 28.0, np.minimum(15.0 * blin["BSA"], 28.0))  # ug/day, aall1331.yaml
    assert np.allclose(blin["RATE"], rate, rtol=1e-9)
    # independent check of the splitting: infused days on a fine grid, scheduled minus interrupted
    events = pd.read_parquet(run / "events.parquet")
    grid = np.arange(0.0, 400.0, 1e-3) + 5e-4
    for pid, group in events.groupby("patient_id"):
        infusions = group[(group["event"] == "dose") & (group["detail"] == "blinatumomab")]
        if infusions.empty:
            continue
        on = np.zeros(grid.size, dtype=bool)
        for day, duration in zip(infusions["day"], infusions["duration"]):
            on |= (grid >= day) & (grid < day + duration)
        for day, duration in group.loc[group["event"] == "interruption", ["day", "duration"]].to_numpy():
            on &= ~((grid >= day) & (grid < day + duration))
        given = blin[blin["ID"] == pid + 1]
        rate = given["RATE"].iloc[0]  # grid error: at most 1e-3 day at each of a few dozen edges
        assert given["AMT"].sum() == pytest.approx(on.sum() * 1e-3 * rate, abs=0.05 * rate)
    complete = blin.groupby("ID")["AMT"].sum() / blin.groupby("ID")["RATE"].first()
    assert (complete <= 56.0 + 1e-9).all() and (complete > 55.9).any()  # at most two 28-day cycles


def test_adtte_is_the_patient_table(runs: dict[str, Path], tmp_path: Path) -> None:
    run = runs["aall1331"]
    patients = _patients(run)
    ok = patients[patients["status"] == "ok"]
    table = adtte(run)
    counts = table.groupby(["SUBJID", "PARAMCD"]).size()
    assert (counts == 1).all() and len(counts) == 3 * len(ok)
    for code, days, event in (("EFS", "efs_days", "efs_event"), ("OS", "os_days", "os_event")):
        rows = table[table["PARAMCD"] == code].set_index("SUBJID")
        assert np.allclose(rows["AVAL"], ok.loc[rows.index, days].astype(float))
        assert (rows["CNSR"] == np.where(ok.loc[rows.index, event].astype(bool), 0, 1)).all()
        assert np.allclose(rows["ADY"] - rows["STARTDY"], rows["AVAL"])
        km_adtte = KaplanMeierFitter().fit(rows["AVAL"], rows["CNSR"] == 0)
        km_table = KaplanMeierFitter().fit(ok[days].astype(float), ok[event].astype(bool))
        pd.testing.assert_frame_equal(km_adtte.survival_function_, km_table.survival_function_,
                                      check_names=False)
        assert ((rows["CNSR"] == 0) == (rows["EVNTDESC"] != "")).all()
    rel = table[table["PARAMCD"] == "REL"].set_index("SUBJID")
    relapsed = ok.loc[rel.index, "relapse"].astype(bool)
    died = ok.loc[rel.index, "os_event"].astype(bool)
    assert (rel["CNSR"] == np.where(relapsed, 0, np.where(died, 2, 1))).all()
    assert np.allclose(rel.loc[relapsed, "AVAL"], ok.loc[relapsed[relapsed].index, "relapse_day"].astype(float))
    shifted = adtte(run, add_one_day=True)
    assert np.allclose(shifted["AVAL"], table["AVAL"] + 1.0)
    out, dictionary = write_adtte(run, tmp_path / "adtte.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(out), table)
    assert json.loads(dictionary.read_text())["notice"].startswith("Research use only")


def test_adtte_origin_is_the_car_t_infusion(runs: dict[str, Path]) -> None:
    table = adtte(runs["eliana"])
    events = pd.read_parquet(runs["eliana"] / "events.parquet")
    infusion = events[events["detail"] == "tisagenlecleucel"].set_index("patient_id")["day"]
    origin = table["SUBJID"].map(infusion).fillna(0.0)  # never infused (died before): enrollment, day 0
    assert np.allclose(table["STARTDY"], origin) and table["SUBJID"].isin(infusion.index).any()


def test_cli_exports_and_reports_bad_input(runs: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["export", "nonmem", str(runs["eliana"]), "--out", str(tmp_path / "nm.csv")])
    assert result.exit_code == 0, result.output
    assert {"nm.csv", "nm.datainfo", "nm.dictionary.json"} <= {p.name for p in tmp_path.iterdir()}
    result = runner.invoke(app, ["export", "adam", str(runs["eliana"]), "--out", str(tmp_path / "adtte.csv")])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "adtte.csv")) == 3 * 60
    for args in (["export", "nonmem", str(tmp_path), "--out", str(tmp_path / "x.csv")],
                 ["export", "adam", str(runs["eliana"]), "--out", str(tmp_path / "x.txt")],
                 ["export", "nonmem", str(runs["eliana"]), "--out", str(tmp_path / "missing" / "x.csv")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output
