"""Summary and report of a run read only what they use (issue 5: a million patients under 2 GiB).

``summary.json`` is computed from the statistics columns of ``patients.parquet`` with text as categoricals
(:func:`leukosim.io.rundir.read_statistics_patients`), once: the run returns the tables and the report takes
them. ``report.html`` reads only those columns and the events of the swimmer plot's and the recorded patients
(only the row groups that hold them), and draws Kaplan-Meier curves at a bounded number of times. These tests
check that the results are the same as from the whole tables: every statistics table equal
(``assert_frame_equal``, exact), ``summary.json`` equal to the document of the whole patient table, the report
page byte-identical to the one rendered from everything in the run directory, and the curves exact where drawn.
No timing or memory is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lifelines import KaplanMeierFitter

from leukosim.endpoints.summary import STATISTICS_COLUMNS, statistics_columns, trial_statistics
from leukosim.io.parquet import to_arrow
from leukosim.io.rundir import (
    EVENTS, PATIENTS, SUMMARY, read_events, read_run, read_statistics_patients, summary_document,
)
from leukosim.endpoints.statistics import DAYS_PER_MONTH
from leukosim.report import render_report, write_report
from leukosim.report.figures import KM_CURVE_POINTS, kaplan_meier_figure
from leukosim.runner import run_trial


@pytest.fixture(scope="module", params=[("aall1331", 120), ("eliana", 90)], ids=lambda p: p[0])
def streamed_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    name, n = request.param
    out = tmp_path_factory.mktemp(name)
    run_trial(name, n, out, seed=5, chunk_size=37, trajectory_patients=12)
    return out


def assert_same_tables(expected: dict[str, pd.DataFrame], actual: dict[str, pd.DataFrame]) -> None:
    assert list(expected) == list(actual)
    for name in expected:
        pd.testing.assert_frame_equal(expected[name], actual[name], check_exact=True, obj=name)


def test_statistics_from_the_compact_columns_equal_those_of_the_whole_table(streamed_run: Path) -> None:
    protocol = read_run(streamed_run).protocol
    whole = pd.read_parquet(streamed_run / PATIENTS)
    compact = read_statistics_patients(streamed_run / PATIENTS)
    assert list(compact.columns) == statistics_columns(list(whole.columns))
    assert len(compact.columns) < len(whole.columns)
    assert isinstance(compact["arm"].dtype, pd.CategoricalDtype)
    assert isinstance(compact["best_response"].dtype, pd.CategoricalDtype)
    assert_same_tables(trial_statistics(protocol, whole), trial_statistics(protocol, compact))
    written = json.loads((streamed_run / SUMMARY).read_text())
    assert written == json.loads(json.dumps(summary_document(protocol, trial_statistics(protocol, whole)),
                                            allow_nan=False))


def test_failed_simulations_are_left_out_the_same_way(streamed_run: Path, tmp_path: Path) -> None:
    protocol = read_run(streamed_run).protocol
    whole = pd.read_parquet(streamed_run / PATIENTS)
    whole.loc[whole.index[::9], "status"] = "max_steps"
    path = tmp_path / PATIENTS
    pq.write_table(to_arrow(whole), path)
    assert_same_tables(trial_statistics(protocol, whole), trial_statistics(protocol, read_statistics_patients(path)))


def test_every_column_the_statistics_name_exists() -> None:
    import leukosim

    patients = leukosim.simulate_trial("eliana", 3, seed=1, trajectory_patients=0).patients
    assert set(STATISTICS_COLUMNS) <= set(patients.columns)


def test_events_are_read_for_the_named_patients_only(streamed_run: Path) -> None:
    whole = pd.read_parquet(streamed_run / EVENTS)
    ids = [3, 0, 41, 41, 77]
    expected = whole[whole["patient_id"].isin(ids)].reset_index(drop=True)
    pd.testing.assert_frame_equal(read_events(streamed_run / EVENTS, np.array(ids)), expected)
    assert read_events(streamed_run / EVENTS, []).empty


def test_report_reads_a_part_and_shows_the_same_page(streamed_run: Path) -> None:
    everything = read_run(streamed_run)
    page = write_report(streamed_run).read_text(encoding="utf-8")
    assert page == render_report(everything)  # also: rendering is deterministic (fixed SVG id salt)
    light = read_run(streamed_run, statistics_only=True,
                     event_patients=lambda patients, trajectories: trajectories["patient_id"].unique())
    assert light.events["patient_id"].nunique() == 12


def test_events_are_read_from_the_row_groups_that_hold_the_patients(tmp_path: Path) -> None:
    frame = pd.DataFrame({"patient_id": np.repeat(np.arange(500), 3), "event": ["dose", "response", "death"] * 500,
                          "day": np.arange(1500, dtype=float)})
    for statistics in (True, False):  # without statistics every row group is read and filtered
        path = tmp_path / f"events-{statistics}.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=100,
                       write_statistics=statistics)
        for ids in ([0], [33, 34, 499], [2, 250, 250, 498, 1000], [1000], []):
            expected = frame[frame["patient_id"].isin(ids)].reset_index(drop=True)
            pd.testing.assert_frame_equal(read_events(path, np.array(ids, dtype=np.int64)), expected)


def test_the_run_returns_its_summary_tables_and_the_report_uses_them(tmp_path: Path) -> None:
    outcome = run_trial("eliana", 40, tmp_path, seed=2, chunk_size=15, trajectory_patients=6)
    protocol = read_run(tmp_path).protocol
    assert outcome.statistics is not None
    assert_same_tables(trial_statistics(protocol, pd.read_parquet(tmp_path / PATIENTS)), outcome.statistics)
    page = write_report(tmp_path, outcome.statistics).read_text(encoding="utf-8")
    assert page == render_report(read_run(tmp_path))
    resumed = run_trial("eliana", 40, tmp_path, seed=2, trajectory_patients=6, resume=True)
    assert resumed.computed_chunks == 0 and resumed.statistics is None  # complete already: nothing computed


def test_kaplan_meier_curves_of_many_patients_are_drawn_at_a_bounded_number_of_times() -> None:
    rng = np.random.default_rng(4)
    n = 20 * KM_CURVE_POINTS
    days = rng.exponential(400.0, n)
    patients = pd.DataFrame({"arm": "a", "status": "ok", "os_days": days, "os_event": rng.random(n) < 0.7})
    figure = kaplan_meier_figure(patients, "os", "OS")
    curve = figure.axes[0].get_lines()[0]
    months, survival = curve.get_xdata(), curve.get_ydata()
    assert len(months) == KM_CURVE_POINTS
    exact = KaplanMeierFitter().fit(days / DAYS_PER_MONTH, patients["os_event"])
    np.testing.assert_array_equal(survival, exact.survival_function_at_times(months).to_numpy())
