"""Validation against published trials: run every bundled protocol that has targets with one parameter set and
compare each target with its published value (see :mod:`leukosim.endpoints.targets` for the intervals).

A target is a *hit* when the simulated value lies inside the published 95% CI, or inside the binomial 95% CI
from the trial's n where no CI is published. Targets are grouped by the therapy class of their arm.

The simulated value has its own Monte Carlo error. So that a hit or a miss reflects the model and not the
virtual cohort, each protocol is simulated with at least ``COHORT_OVERSAMPLING`` times as many patients as the
largest published cohort behind its targets (per arm, scaled by the arm's allocation): a proportion's Monte
Carlo standard error is then at most a quarter of the published one. AIEOP-BFM 2000 (3,184 patients) needs
50,944."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..endpoints.targets import compare_targets
from ..io.jsonsafe import json_safe
from ..model.registry import ParameterSet, default_parameters
from ..protocol.load import bundled_protocols, load_protocol
from ..protocol.schema import Arm, Protocol
from ..trial import simulate_trial

__all__ = ["therapy_class", "cohort_size", "validation_table", "validation_records", "failed_patients",
           "hit_fractions", "VALIDATION_PATIENTS", "COHORT_OVERSAMPLING"]

VALIDATION_PATIENTS = 1000
#: Validation simulates at least this many times each published cohort (see the module docstring).
COHORT_OVERSAMPLING = 16.0
#: The class of an arm is that of its most specific therapy, in this order.
_CLASSES = (("tisagenlecleucel", "CAR-T"), ("inotuzumab_ozogamicin", "inotuzumab"), ("blinatumomab", "blinatumomab"))


def therapy_class(arm: Arm) -> str:
    """CAR-T, inotuzumab, blinatumomab or chemotherapy: the arm's most specific therapy."""
    drugs = {drug.drug for phase in arm.phases for drug in phase.drugs}
    return next((label for drug, label in _CLASSES if drug in drugs), "chemotherapy")


def _protocol_classes(protocol: Protocol) -> dict[str | None, str]:
    classes: dict[str | None, str] = {arm.name: therapy_class(arm) for arm in protocol.arms}
    classes[None] = "/".join(sorted(set(classes.values())))
    return classes


def cohort_size(protocol: Protocol, n_patients: int, oversampling: float = COHORT_OVERSAMPLING) -> int:
    """Virtual patients to simulate for ``protocol``: ``n_patients``, or ``oversampling`` times its largest
    published cohort (a target's ``n``, divided by its arm's allocation share) if that is more."""
    total = sum(arm.allocation for arm in protocol.arms)
    share = {arm.name: arm.allocation / total for arm in protocol.arms}
    published = [target.n / share.get(target.arm, 1.0) for target in protocol.targets if target.n is not None]
    return max(n_patients, int(np.ceil(oversampling * max(published, default=0.0))))


def validation_table(parameters: ParameterSet | None = None, n_patients: int = VALIDATION_PATIENTS, seed: int = 0,
                     protocols: list[Protocol] | None = None,
                     oversampling: float = COHORT_OVERSAMPLING) -> pd.DataFrame:
    """One row per target of every protocol with targets (default: the bundled ones): protocol,
    therapy_class, then the comparison columns of
    :func:`~leukosim.endpoints.targets.compare_targets`, then ``cohort``: the virtual patients simulated for
    the protocol (:func:`cohort_size`; ``oversampling`` 0 simulates ``n_patients`` for every protocol), and
    ``failed_patients``: those of them whose simulation failed (the targets rest on the others)."""
    parameters = parameters or default_parameters()
    if protocols is None:
        protocols = [load_protocol(name) for name in bundled_protocols()]
    frames = []
    for protocol in protocols:
        if not protocol.targets:
            continue
        cohort = cohort_size(protocol, n_patients, oversampling)
        result = simulate_trial(protocol, cohort, seed, parameters=parameters, trajectory_patients=0)
        table = compare_targets(protocol, result.patients)
        classes = _protocol_classes(protocol)
        table.insert(0, "protocol", protocol.name)
        table.insert(1, "therapy_class", [classes[target.arm] for target in protocol.targets])
        table["cohort"] = cohort
        table["failed_patients"] = int((result.patients["status"] != "ok").sum())
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def _interval(low: float, high: float) -> list[float] | None:
    return [float(low), float(high)] if np.isfinite(low) and np.isfinite(high) else None


def validation_records(table: pd.DataFrame) -> list[dict[str, object]]:
    """The table as JSON-ready records with the keys protocol, target, published, published_ci (the reference
    interval), simulated, simulated_ci, hit (None where there is no interval), plus arm, therapy_class,
    reference_kind, n_simulated, calibrate, out_of_sample and source."""
    return [{"protocol": row.protocol, "target": row.target, "arm": row.arm, "therapy_class": row.therapy_class,
             "published": float(row.published), "published_ci": _interval(row.reference_low, row.reference_high),
             "reference_kind": row.reference_kind, "simulated": json_safe(float(row.simulated)),
             "simulated_ci": _interval(row.simulated_ci_low, row.simulated_ci_high),
             "n_simulated": int(row.n_simulated), "hit": None if pd.isna(row.hit) else bool(row.hit),
             "calibrate": bool(row.calibrate), "out_of_sample": bool(row.out_of_sample), "source": row.source}
            for row in table.itertuples()]


def failed_patients(table: pd.DataFrame) -> pd.Series:
    """Failed patients per protocol of a validation table (protocols in table order)."""
    return table.groupby("protocol", sort=False)["failed_patients"].first()


def hit_fractions(table: pd.DataFrame) -> pd.DataFrame:
    """Hits among calibration targets (``calibrate`` true) with a reference interval, per therapy class and
    overall, then among the out-of-sample targets (predictions, never fitted) and overall among all targets.
    Columns: therapy_class, targets, with_interval, hits, hit_fraction."""
    judged = table.assign(judged=table["hit"].notna(), won=table["hit"].fillna(False).astype(bool))
    calibration = judged[judged["calibrate"].astype(bool)]
    predictions = judged[judged["out_of_sample"].astype(bool)]
    groups = [*calibration.groupby("therapy_class", sort=True), ("overall (calibration targets)", calibration),
              *([("out of sample (predictions)", predictions)] if len(predictions) else []),
              ("overall (all targets)", judged)]
    rows = []
    for label, group in groups:
        with_interval = int(group["judged"].sum())
        hits = int(group["won"].sum())
        rows.append({"therapy_class": label, "targets": len(group), "with_interval": with_interval, "hits": hits,
                     "hit_fraction": hits / with_interval if with_interval else np.nan})
    return pd.DataFrame(rows)
