"""Decision-quality study: are the refresh's promotions and drift alarms right, on simulations with a known truth?

    python refresh_assets_tests/benchmarks/decision_study.py [--quick] [--seeds N] [--players N]
                                                             [--out data/bench] [--tiny]

Why here and not in ``refresh_assets/core``: it is a measurement harness, like bench_drift.py beside it, not
something the pipeline runs; it only calls the core functions the pipeline calls (simulate ->
features.build_dataset on DuckDB -> models.tune -> evaluate.decide with the guardrail gates, and
drift.check_drift), without Dagster, so a seed costs seconds instead of a run.

Per seed, one simulated game (``--players`` installs in the window, plus warm-up) is run once per truth:
plain, covariate drift (60% of new installs from a weaker new channel; the churn relation unchanged) and
concept drift (the churn relation reversed). Drift knobs never touch the days before ``CHANGE_DATE``, so the
three share their history and ONE champion, trained at ``CHAMPION_DATE`` (before the change), serves every
scenario of that seed. The refresh at ``REFRESH_DATE`` trains challengers on snapshots that all lie after
the change (``LOOKBACK_DAYS``), decides against that champion on its out-of-time holdout, and checks drift of
its scoring population against the champion's training rows. Scenarios:

* no_change -- the plain game: a promotion is false unless the challenger is truly better;
* covariate_drift -- the features drift, the model still holds (drift alarms should fire);
* concept_drift -- the champion goes stale: the challenger should be promoted at this first refresh;
* label_noise -- the plain game, but LABEL_NOISE of the refresh's training and holdout labels flipped
  (a tracking bug; the label is computed by SQL, so the noise is put on the query's output);
* small_population -- a plain game with a quarter of the players (tiny holdout, tiny slices).

Broken columns (``run_broken_columns_seed``, on the drift seeds): the no_change game's scoring population is
checked again with one seeded-random feature NULL for 30-90% of its rows, and with one categorical feature
collapsed onto its most common value for 30-90% of its rows, against the same champion training rows; the
drift check must name the broken column (``broken_column_detection_rate``, ``collapse_detection_rate``).

The truth: each model's ROC AUC on a LARGE fresh sample (another seed, ``truth_players`` players) of the same
game, snapshots from the refresh date on (the weeks the decision is in force), labels clean. A promotion
is "false" when the promoted challenger's true AUC is not above the champion's; regret is the true AUC of
the best model available (champion or any challenger) minus that of the model in force after the decision.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from refresh_assets.core import evaluate
from refresh_assets.core.drift import DriftSettings, check_drift
from refresh_assets.core.features import DatasetFrames, DatasetSpec, build_dataset
from refresh_assets.core.simulate import SimulationConfig, simulate

SIM_START = dt.date(2026, 1, 5)
CHANGE_DATE = dt.date(2026, 4, 6)  # drift knobs act from this day on
CHAMPION_DATE = CHANGE_DATE - dt.timedelta(days=1)  # the champion's refresh sees nothing of the change
LOOKBACK_DAYS = 49  # train snapshots D-49, D-42, D-35; holdout D-21, D-14 (horizon 14, weekly snapshots)
REFRESH_DATE = CHANGE_DATE + dt.timedelta(days=LOOKBACK_DAYS)  # first refresh trained wholly after the change
TRUTH_DATES = (REFRESH_DATE, REFRESH_DATE + dt.timedelta(days=7), REFRESH_DATE + dt.timedelta(days=14))
LABEL_HORIZON_DAYS = 14
COVARIATE_DRIFT = 0.6
CONCEPT_DRIFT = 1.0
LABEL_NOISE = 0.1
SMALL_POPULATION_SHARE = 0.25

SCENARIOS = ("no_change", "covariate_drift", "concept_drift", "label_noise", "small_population")
#: Scenarios whose scoring population has NOT drifted (false alarms) and that has (detection).
UNDRIFTED = ("no_change", "small_population")
DRIFTED = ("covariate_drift", "concept_drift")  # concept drift moves the features too: who churns changes

TARGETS = {
    "false_promotion_rate": ("<=", 0.05),
    "promotion_within_one_refresh": (">=", 0.90),
    # the refresh's real rule: four tuned candidates, the challenger chosen by CV score, gated on the holdout
    "false_promotion_rate_all_candidates": ("<=", 0.05),
    "promotion_within_one_refresh_all_candidates": (">=", 0.90),
    # the same decisions had the challenger been the best on the holdout that gates it (the rule before)
    "false_promotion_rate_all_candidates_holdout_pick": ("report", None),
    "promotion_within_one_refresh_all_candidates_holdout_pick": ("report", None),
    "mean_regret_auc": ("<=", 0.005),
    "drift_false_alarm_rate": ("<=", 0.10),
    "drift_detection_rate": (">=", 0.90),
    # a broken column (see run_broken_columns_seed): detected by the drift check, and by Evidently's distance alone
    "broken_column_detection_rate": (">=", 0.95),
    "broken_column_detection_rate_distance_only": ("report", None),
    "collapse_detection_rate": (">=", 0.95),
    "collapse_detection_rate_distance_only": ("report", None),
}


@dataclass(frozen=True)
class SelectionSettings:
    """The refresh's own decision, measured apart: all four default candidates tuned (the ensemble over the
    three others), the challenger chosen by CV score and gated on the holdout -- and, on the same models, the
    rule before it (the best on the holdout that then gates it), so the difference is measured."""

    seeds: int = 20  # no-change seeds: the false-promotion rows
    concept_seeds: int = 10  # concept-drift seeds (the first ones): the promotion-within-one-refresh rows
    players: int = 3000
    tuning_budget: int = 1
    max_training_rows: int = 6000


@dataclass(frozen=True)
class StudySettings:
    """Sizes and budgets of one study run; ``quick`` and ``tiny`` are presets of it."""

    seeds: int = 30
    players: int = 3000
    truth_players: int = 40_000
    algorithms: tuple[str, ...] = ("logreg", "hist_gb")
    tuning_budget: int = 2
    cv_splits: int = 2
    max_training_rows: int = 8000
    n_boot: int = 1000
    alpha: float = 0.05
    min_improvement: float = 0.0
    guardrails: evaluate.GuardrailSettings = field(default_factory=evaluate.GuardrailSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    scenarios: tuple[str, ...] = SCENARIOS
    #: Scenarios other than no_change run on the first this-many seeds only (None: every seed). The
    #: false-promotion target needs many no-change seeds; the drift scenarios' effects are large.
    other_scenario_seeds: int | None = None
    #: Drift is checked on the first this-many seeds only (None: every seed); Evidently costs ~3 s a check.
    drift_seeds: int | None = None
    #: The all-candidates part (None: skipped).
    selection: SelectionSettings | None = field(default_factory=SelectionSettings)
    #: Faults put on one column of the no-change scoring population, on the drift seeds (empty: skipped).
    broken_column_faults: tuple[str, ...] = ("null", "collapse")


FULL = StudySettings(seeds=24, players=3000, tuning_budget=1, algorithms=("logreg",))
#: players=3000 keeps the scoring population (~1,500 rows) above DriftSettings.min_column_values, so drift
#: is judged; 20 no-change seeds for the false-promotion target, 10 seeds of each drift scenario.
QUICK = StudySettings(seeds=20, players=3000, truth_players=15_000, n_boot=500, tuning_budget=1,
                      algorithms=("logreg",), scenarios=("no_change", "covariate_drift", "concept_drift"),
                      other_scenario_seeds=10, selection=SelectionSettings(seeds=3, concept_seeds=2))
TINY = StudySettings(seeds=2, players=1500, truth_players=3000, n_boot=200, tuning_budget=1,
                     algorithms=("logreg",), scenarios=("no_change", "covariate_drift", "concept_drift"),
                     selection=SelectionSettings(seeds=1, concept_seeds=1, players=1500, max_training_rows=3000))
#: drift_share values the report sweeps over (the pipeline's default is DriftSettings().drift_share).
DRIFT_SHARE_SWEEP = (0.05, 0.1, 0.2, 0.3, 0.5)


# --------------------------------------------------------------------------------------------------- data


def _simulation(players: int, seed: int, covariate: float = 0.0, concept: float = 0.0,
                end: dt.date = REFRESH_DATE) -> SimulationConfig:
    return SimulationConfig(
        n_players=players, days=(end - SIM_START).days + 1, start_date=SIM_START, seed=seed,
        drift_date=CHANGE_DATE if covariate or concept else None,
        covariate_drift=covariate, concept_drift=concept,
    )


def _dataset(tables: dict[str, pd.DataFrame], as_of: dt.date) -> DatasetFrames:
    """The refresh's dataset for ``as_of``, built by the packaged SQL on an in-memory DuckDB of the tables."""
    import duckdb

    con = duckdb.connect()
    try:
        for name, frame in tables.items():
            con.register(name, frame)
        return build_dataset(con, DatasetSpec(as_of_date=as_of, lookback_days=LOOKBACK_DAYS,
                                              label_horizon_days=LABEL_HORIZON_DAYS))
    finally:
        con.close()


def _truth_frame(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Labelled rows of the weeks after the refresh (clean labels), on which every model's true AUC is taken."""
    import duckdb

    from refresh_assets.core.features import load_query, run_query

    sql, _ = load_query()
    con = duckdb.connect()
    try:
        for name, frame in tables.items():
            con.register(name, frame)
        last = TRUTH_DATES[-1] + dt.timedelta(days=LABEL_HORIZON_DAYS)
        rows = run_query(con, sql, last, list(TRUTH_DATES), LABEL_HORIZON_DAYS)
    finally:
        con.close()
    rows["label"] = rows["label"].astype("int8")
    return rows


def _flip_labels(frame: pd.DataFrame, share: float, rng: np.random.Generator) -> pd.DataFrame:
    noisy = frame.copy()
    flip = rng.random(len(noisy)) < share
    noisy.loc[flip, "label"] = (1 - noisy.loc[flip, "label"]).astype("int8")
    return noisy


# --------------------------------------------------------------------------------------------------- models


def _train(frames: DatasetFrames, settings: StudySettings, seed: int) -> dict[str, Any]:
    """Tune every study algorithm on the dataset's training rows, with the pipeline's tune() and a small budget."""
    from refresh_assets.core.models import tune

    train = frames.train
    return {
        algorithm: tune(
            algorithm, train, train["label"], train["as_of_date"], n_iter=settings.tuning_budget,
            n_splits=settings.cv_splits, seed=seed, max_rows=settings.max_training_rows, importance_rows=0,
        ).pipeline
        for algorithm in settings.algorithms
    }


def _scores(models: dict[str, Any], frame: pd.DataFrame) -> dict[str, np.ndarray]:
    from refresh_assets.core.models import predict_scores

    return {name: predict_scores(model, frame) for name, model in models.items()}


def _true_aucs(models: dict[str, Any], truth: pd.DataFrame) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    return {name: float(roc_auc_score(truth["label"], p)) for name, p in _scores(models, truth).items()}


@dataclass
class Outcome:
    """One refresh decision of one scenario and seed, with what the truth says about it."""

    scenario: str
    seed: int
    promoted: bool
    challenger: str
    deciding_gate: str
    true_auc_champion: float
    true_auc_challenger: float
    true_auc_best: float
    regret: float
    false_promotion: bool
    holdout_rows: int
    observed_gain: float
    ci_lower: float
    delong_p: float | None
    brier_upper: float | None  # the calibration gate's figure
    worst_slice_lower: float | None  # the lowest gated slice figure (lower bound of the AUC gain)
    slices_gated: int
    slices_reported: int
    drift_share: float | None = None
    drift_alarm: bool | None = None
    drifted_columns: tuple[str, ...] = ()
    unjudged_columns: int = 0  # columns with too few values to count (DriftSettings.min_column_values)
    scoring_rows: int = 0
    seconds: float = 0.0


def _refresh_decision(scenario: str, seed: int, champion: Any, challengers: dict[str, Any],
                      frames: DatasetFrames, truth: pd.DataFrame, settings: StudySettings) -> Outcome:
    """The comparison step's decision at REFRESH_DATE (same decide() call and gates), judged by the truth."""
    holdout = frames.holdout
    predictions = {**_scores(challengers, holdout), "champion": _scores({"c": champion}, holdout)["c"]}
    decision = evaluate.decide(
        holdout["label"].to_numpy(), predictions, "champion", min_improvement=settings.min_improvement,
        n_boot=settings.n_boot, alpha=settings.alpha, seed=seed,
        extra_gates=evaluate.guardrail_gates(settings.guardrails, holdout),
    )
    true_auc = _true_aucs({**challengers, "champion": champion}, truth)
    in_force = decision.challenger if decision.promote else "champion"
    brier = [gate.figure for gate in decision.gates if gate.name == "calibration_brier"]
    slices = [gate for gate in decision.gates if gate.name.startswith("slice_")]
    gated_figures = [gate.figure for gate in slices if gate.gated]
    best = max(true_auc.values())
    return Outcome(
        scenario=scenario, seed=seed, promoted=bool(decision.promote), challenger=str(decision.challenger),
        deciding_gate=decision.deciding_gate, true_auc_champion=true_auc["champion"],
        true_auc_challenger=true_auc[decision.challenger], true_auc_best=best,
        regret=best - true_auc[in_force],
        false_promotion=bool(decision.promote and true_auc[decision.challenger] <= true_auc["champion"]),
        holdout_rows=int(len(holdout)), observed_gain=float(decision.bootstrap.observed_diff),
        ci_lower=float(decision.bootstrap.lower),
        delong_p=None if decision.delong is None else float(decision.delong.p_value),
        brier_upper=brier[0] if brier else None,
        worst_slice_lower=min(gated_figures) if gated_figures else None,
        slices_gated=len(gated_figures), slices_reported=len(slices) - len(gated_figures),
    )


def _check_drift(outcome: Outcome, reference: pd.DataFrame, current: pd.DataFrame,
                 settings: StudySettings) -> None:
    result = check_drift(reference.drop(columns=["label"]), current, settings=settings.drift)
    outcome.drift_share, outcome.drift_alarm = float(result.drift_share), bool(result.dataset_drift)
    outcome.drifted_columns, outcome.scoring_rows = result.drifted_columns, int(len(current))
    outcome.unjudged_columns = len(result.unjudged_columns)


# --------------------------------------------------------------------------------------------------- broken columns
#
# The most common production data failure is not a population drift but a broken column: its feed fails and it
# goes NULL for part of the rows, or a category silently becomes one value. Evidently's distances ignore NULLs,
# so drift.check_drift runs a NULL-share and a top-value-share check beside them. Here, per seed, the no-change
# game's scoring population is checked three times against the champion's training rows (the same frames as
# the no_change drift check): clean, with one random feature NULL for a random 30-90% of its rows, and with one
# random categorical feature collapsed onto its most common value for a random 30-90% of its rows.

BROKEN_SHARE_RANGE = (0.3, 0.9)
BROKEN_FAULTS = ("null", "collapse")


@dataclass
class BrokenColumnOutcome:
    """One check of a scoring population with one column broken on purpose (fault "clean": none)."""

    seed: int
    fault: str  # "clean" | "null" | "collapse"
    column: str | None
    broken_share: float  # share of the scoring rows broken
    detected: bool  # dataset drift, with the broken column among the drifted ones
    drifted_by: tuple[str, ...]  # the broken column's checks that fired (e.g. ("null_share",))
    distance_alone: bool  # Evidently's distance alone flagged (and counted) the broken column
    share_reference: float | None  # the fault's share (NULL share / top-value share) in the reference ...
    share_current: float | None  # ... and in the broken scoring population
    other_drifted: tuple[str, ...]  # other columns flagged (should be none: the population is undrifted)
    dataset_drift: bool
    share_flagged: tuple[str, ...] = ()  # columns a share check (NULL share / top-value share) flagged
    # the largest change of any judged column's NULL share (absolute) / top-value share (up) in this check
    max_null_share_change: float | None = None
    max_top_value_change: float | None = None
    seconds: float = 0.0


def break_column(frame: pd.DataFrame, fault: str, rng: np.random.Generator) -> tuple[pd.DataFrame, str, float]:
    """A copy of ``frame`` with one seeded-random feature broken for a seeded-random 30-90% of its rows:
    NULL ("null"), or set to its most common value ("collapse", categorical features only)."""
    from refresh_assets.core.drift import CATEGORICAL, drift_columns

    kinds = drift_columns(frame)
    candidates = sorted(kinds) if fault == "null" else sorted(c for c, kind in kinds.items() if kind == CATEGORICAL)
    column = str(rng.choice(candidates))
    share = float(rng.uniform(*BROKEN_SHARE_RANGE))
    rows = rng.choice(len(frame), size=int(round(share * len(frame))), replace=False)
    broken = frame.copy()
    series = broken[column]
    if fault == "null":
        if pd.api.types.is_extension_array_dtype(series.dtype):
            series = series.copy()
            series.iloc[rows] = pd.NA
        elif pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
            series = series.astype(np.float64)  # an int column with NULLs comes out of DuckDB as a float/Int64
            series.iloc[rows] = np.nan
        else:
            series = series.astype(object)
            series.iloc[rows] = None
    elif fault == "collapse":
        counts = series.value_counts(dropna=True)
        top = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))[0][0]
        series = series.copy()
        series.iloc[rows] = top
    else:
        raise ValueError(f"unknown fault {fault!r}")
    broken[column] = series
    return broken, column, share


def _broken_check(seed: int, fault: str, reference: pd.DataFrame, current: pd.DataFrame, column: str | None,
                  share: float, settings: StudySettings) -> BrokenColumnOutcome:
    from refresh_assets.core.drift import NULL_SHARE, TOP_VALUE_SHARE

    started = time.perf_counter()
    result = check_drift(reference.drop(columns=["label"]), current, settings=settings.drift)
    columns = {c.column: c for c in result.columns}
    changes = {NULL_SHARE: [], TOP_VALUE_SHARE: []}
    for c in result.columns:
        for check in c.checks:
            if check.judged:
                changes[check.method].append(abs(check.change) if check.method == NULL_SHARE else check.change)
    broken = columns.get(column) if column else None
    check = None
    if broken is not None:
        check = broken.check(NULL_SHARE if fault == "null" else TOP_VALUE_SHARE)
    return BrokenColumnOutcome(
        seed=seed, fault=fault, column=column, broken_share=share,
        detected=bool(broken is not None and result.dataset_drift and column in result.drifted_columns),
        drifted_by=broken.drifted_by if broken is not None else (),
        distance_alone=bool(broken is not None and broken.distance_drifted and broken.distance_judged),
        share_reference=None if check is None else float(check.reference),
        share_current=None if check is None else float(check.current),
        other_drifted=tuple(c for c in result.drifted_columns if c != column),
        dataset_drift=bool(result.dataset_drift),
        share_flagged=tuple(c.column for c in result.columns
                            if c.judged and set(c.drifted_by) & {NULL_SHARE, TOP_VALUE_SHARE}),
        max_null_share_change=max(changes[NULL_SHARE], default=None),
        max_top_value_change=max(changes[TOP_VALUE_SHARE], default=None),
        seconds=time.perf_counter() - started,
    )


def run_broken_columns_seed(seed: int, settings: StudySettings, log=print) -> list[BrokenColumnOutcome]:
    """The no-change game of ``seed`` (the same frames as its no_change drift check), its scoring population
    checked clean and once per fault in ``settings.broken_column_faults``."""
    tables = simulate(_simulation(settings.players, seed))
    reference = _dataset(tables, CHAMPION_DATE).train
    scoring = _dataset(tables, REFRESH_DATE).scoring
    rng = np.random.default_rng([seed, 2])  # [seed, 1] flips the label-noise scenario's labels
    outcomes = [_broken_check(seed, "clean", reference, scoring, None, 0.0, settings)]
    for fault in settings.broken_column_faults:
        broken, column, share = break_column(scoring, fault, rng)
        outcomes.append(_broken_check(seed, fault, reference, broken, column, share, settings))
    for o in outcomes:
        what = "clean" if o.column is None else f"{o.fault} {o.column} {o.broken_share:.0%} of rows"
        figures = ("" if o.share_reference is None else
                   f" share {o.share_reference:.3f} -> {o.share_current:.3f}")
        natural = ("" if o.column is not None else f"largest change: NULL share {_figure(o.max_null_share_change)}, "
                   f"top-value share {_figure(o.max_top_value_change)}; ")
        verdict = ("alarm" if o.dataset_drift else "no alarm") if o.column is None else (
            "DETECTED" if o.detected else "missed")
        log(f"seed {seed:3d} broken column {what:40s} {verdict:8s} by {','.join(o.drifted_by) or '-'}{figures} "
            f"others {','.join(o.other_drifted) or '-'} ({natural}{o.seconds:.1f}s)")
    return outcomes


def summarise_broken_columns(outcomes: list[BrokenColumnOutcome]) -> tuple[dict[str, Any], list[dict]]:
    """Detection of each fault (and by the distance alone), and the largest natural share changes of the clean
    checks, which the checks' minimum change must clear."""
    detail: dict[str, Any] = {}
    rows = []
    for fault, name in (("null", "broken_column_detection_rate"), ("collapse", "collapse_detection_rate")):
        runs = [o for o in outcomes if o.fault == fault]
        if not runs:
            continue
        changes = [abs(o.share_current - o.share_reference) for o in runs if o.share_reference is not None]
        detail[fault] = {
            "runs": len(runs),
            "detection_rate": _rate([o.detected for o in runs]),
            "distance_alone_rate": _rate([o.distance_alone for o in runs]),
            "caught_by": {method: sum(method in o.drifted_by for o in runs)
                          for method in sorted({m for o in runs for m in o.drifted_by})},
            "min_share_change": _min(changes), "max_share_change": _max(changes),
            "with_other_columns_flagged": sum(bool(o.other_drifted) for o in runs),
            "missed": [f"seed {o.seed}: {o.column} {o.broken_share:.2f}" for o in runs if not o.detected],
        }
        rows.append(_row(name, runs, detail[fault]["detection_rate"]))
        rows.append(_row(f"{name}_distance_only", runs, detail[fault]["distance_alone_rate"]))
    clean = [o for o in outcomes if o.fault == "clean"]
    if clean:
        detail["clean"] = {
            "runs": len(clean),
            "alarm_rate": _rate([o.dataset_drift for o in clean]),
            "share_check_alarm_rate": _rate([bool(o.share_flagged) for o in clean]),
            "max_null_share_change": _max([o.max_null_share_change for o in clean]),
            "max_top_value_change": _max([o.max_top_value_change for o in clean]),
        }
    return detail, rows


def broken_columns_markdown(document: dict) -> list[str]:
    """The broken-column section of the Markdown report (empty when the study did not run it)."""
    detail = document.get("broken_columns") or {}
    if not detail:
        return []
    drift = document["settings"]["drift"]
    low, high = BROKEN_SHARE_RANGE
    lines = ["", f"Broken columns (no-change scoring population of each seed; one seeded-random feature NULL, or one "
             f"categorical feature collapsed onto its most common value, for a random {low:.0%}-{high:.0%} of the "
             f"rows; share checks: NULL share moved by >= {drift['null_share_delta']}, top-value share up by >= "
             f"{drift['top_value_delta']}, z-test p < {drift['share_alpha']}). Detected = dataset drift naming the "
             "broken column; *distance alone* = Evidently's distance flagged it (and had enough values to count):",
             "",
             "| fault | runs | detected | distance alone | caught by | share change (min / max) "
             "| other columns flagged | missed |",
             "| --- | ---: | ---: | ---: | --- | --- | ---: | --- |"]
    for fault in BROKEN_FAULTS:
        d = detail.get(fault)
        if not d:
            continue
        caught = ", ".join(f"{method} {count}" for method, count in d["caught_by"].items())
        lines.append(f"| {fault} | {d['runs']} | {_figure(d['detection_rate'])} | {_figure(d['distance_alone_rate'])} "
                     f"| {caught} | {_figure(d['min_share_change'])} / {_figure(d['max_share_change'])} "
                     f"| {d['with_other_columns_flagged']} | {'; '.join(d['missed']) or '-'} |")
    clean = detail.get("clean")
    if clean:
        lines += ["", f"The same {clean['runs']} scoring populations clean: alarm rate {_figure(clean['alarm_rate'])} "
                  f"(by a share check: {_figure(clean['share_check_alarm_rate'])}); "
                  f"largest natural change of a judged column's NULL share {_figure(clean['max_null_share_change'])}, "
                  f"of a top-value share (up) {_figure(clean['max_top_value_change'])} -- the margin under the "
                  "checks' minimum change."]
    return lines


# --------------------------------------------------------------------------------------------------- study


def run_seed(seed: int, settings: StudySettings, truths: dict[str, pd.DataFrame], log=print) -> list[Outcome]:
    """Every scenario of one seed; the plain, covariate and concept games share one champion."""
    outcomes: list[Outcome] = []
    wanted = set(settings.scenarios)
    if settings.other_scenario_seeds is not None and seed > settings.other_scenario_seeds:
        wanted &= {"no_change"}
    knobs = {"no_change": (0.0, 0.0), "covariate_drift": (COVARIATE_DRIFT, 0.0),
             "concept_drift": (0.0, CONCEPT_DRIFT)}
    champion = champion_frames = None
    plain_frames = None
    for scenario, (covariate, concept) in knobs.items():
        needs = scenario in wanted or (scenario == "no_change" and "label_noise" in wanted)
        if not needs:
            continue
        started = time.perf_counter()
        tables = simulate(_simulation(settings.players, seed, covariate, concept))
        if champion is None:  # history before CHANGE_DATE is the same in every game of this seed
            champion_frames = _dataset(tables, CHAMPION_DATE)
            first = _train(champion_frames, settings, seed)
            best = evaluate.decide(champion_frames.holdout["label"].to_numpy(),
                                   _scores(first, champion_frames.holdout), None).challenger
            champion = first[best]
        frames = _dataset(tables, REFRESH_DATE)
        if scenario == "no_change":
            plain_frames = frames
        if scenario in wanted:
            outcome = _refresh_decision(scenario, seed, champion, _train(frames, settings, seed), frames,
                                        truths[scenario], settings)
            if settings.drift_seeds is None or seed <= settings.drift_seeds:
                _check_drift(outcome, champion_frames.train, frames.scoring, settings)
            outcome.seconds = time.perf_counter() - started
            outcomes.append(outcome)
    if "label_noise" in wanted:
        started = time.perf_counter()
        rng = np.random.default_rng([seed, 1])
        noisy = replace(plain_frames, train=_flip_labels(plain_frames.train, LABEL_NOISE, rng),
                        holdout=_flip_labels(plain_frames.holdout, LABEL_NOISE, rng))
        outcome = _refresh_decision("label_noise", seed, champion, _train(noisy, settings, seed), noisy,
                                    truths["no_change"], settings)
        outcome.seconds = time.perf_counter() - started
        outcomes.append(outcome)
    if "small_population" in wanted:
        started = time.perf_counter()
        small = max(200, int(settings.players * SMALL_POPULATION_SHARE))
        tables = simulate(_simulation(small, seed))
        small_reference = _dataset(tables, CHAMPION_DATE)
        first = _train(small_reference, settings, seed)
        best = evaluate.decide(small_reference.holdout["label"].to_numpy(),
                               _scores(first, small_reference.holdout), None).challenger
        frames = _dataset(tables, REFRESH_DATE)
        outcome = _refresh_decision("small_population", seed, first[best], _train(frames, settings, seed),
                                    frames, truths["no_change"], settings)
        if settings.drift_seeds is None or seed <= settings.drift_seeds:
            _check_drift(outcome, small_reference.train, frames.scoring, settings)
        outcome.seconds = time.perf_counter() - started
        outcomes.append(outcome)
    for outcome in outcomes:
        log(f"seed {seed:3d} {outcome.scenario:17s} {'PROMOTE' if outcome.promoted else 'keep   '} "
            f"by {outcome.deciding_gate:32s} true AUC champion {outcome.true_auc_champion:.4f} "
            f"challenger {outcome.true_auc_challenger:.4f} regret {outcome.regret:.4f} "
            f"drift {'-' if outcome.drift_share is None else f'{outcome.drift_share:.2f}'} "
            f"{','.join(outcome.drifted_columns)} "
            f"({outcome.seconds:.1f}s)")
    return outcomes


# ------------------------------------------------------------------------------- all candidates (the real rule)

ALL_CANDIDATES = ("logreg", "random_forest", "hist_gb", "ensemble")


def _train_candidates(frames: DatasetFrames, settings: StudySettings, seed: int) -> tuple[dict[str, Any], dict[str, float]]:
    """Every default candidate as the refresh trains it (tune, then tune_ensemble over the three others): the
    pipelines and their out-of-time CV ROC AUC (what the comparison step selects by)."""
    from refresh_assets.core.models import feature_columns, tune, tune_ensemble

    selection = settings.selection
    train = frames.train
    numeric, categorical = feature_columns(train)
    X, y, dates = train[numeric + categorical], train["label"].to_numpy(), train["as_of_date"].to_numpy()
    tuned = {algorithm: tune(algorithm, X, y, dates, n_iter=selection.tuning_budget, n_splits=settings.cv_splits,
                             seed=seed, max_rows=selection.max_training_rows, importance_rows=0)
             for algorithm in ALL_CANDIDATES if algorithm != "ensemble"}
    tuned["ensemble"] = tune_ensemble({name: t.pipeline for name, t in tuned.items()}, X, y, dates,
                                      n_iter=selection.tuning_budget, n_splits=settings.cv_splits, seed=seed,
                                      max_rows=selection.max_training_rows, importance_rows=0)
    return ({name: t.pipeline for name, t in tuned.items()}, {name: float(t.cv_score) for name, t in tuned.items()})


@dataclass
class SelectionOutcome:
    """One refresh decision over four candidates, made by both rules on the same models, judged by the truth."""

    scenario: str
    seed: int
    cv_scores: dict[str, float]
    holdout_aucs: dict[str, float]
    true_aucs: dict[str, float]  # every candidate's and the champion's ("champion")
    # by CV score (the refresh's rule) / by the holdout (the rule before)
    challenger: str
    promoted: bool
    false_promotion: bool
    regret: float
    challenger_holdout_pick: str
    promoted_holdout_pick: bool
    false_promotion_holdout_pick: bool
    regret_holdout_pick: float
    seconds: float = 0.0

    def optimism(self, holdout_pick: bool) -> float:
        """Holdout gain over the champion minus true gain, of the picked challenger (the winner's curse)."""
        name = self.challenger_holdout_pick if holdout_pick else self.challenger
        return ((self.holdout_aucs[name] - self.holdout_aucs["champion"])
                - (self.true_aucs[name] - self.true_aucs["champion"]))


def _both_rules(scenario: str, seed: int, champion: Any, challengers: dict[str, Any], cv: dict[str, float],
                frames: DatasetFrames, truth: pd.DataFrame, settings: StudySettings) -> SelectionOutcome:
    from sklearn.metrics import roc_auc_score

    holdout = frames.holdout
    y = holdout["label"].to_numpy()
    predictions = {**_scores(challengers, holdout), "champion": _scores({"c": champion}, holdout)["c"]}
    common = dict(min_improvement=settings.min_improvement, n_boot=settings.n_boot, alpha=settings.alpha, seed=seed,
                  extra_gates=evaluate.guardrail_gates(settings.guardrails, holdout))
    by_cv = evaluate.decide(y, predictions, "champion", selection_scores=cv, **common)
    by_holdout = evaluate.decide(y, predictions, "champion", **common)
    true_auc = _true_aucs({**challengers, "champion": champion}, truth)
    best = max(true_auc.values())

    def judged(decision):
        in_force = decision.challenger if decision.promote else "champion"
        false = bool(decision.promote and true_auc[decision.challenger] <= true_auc["champion"])
        return decision.challenger, bool(decision.promote), false, best - true_auc[in_force]

    picked, promoted, false, regret = judged(by_cv)
    picked_h, promoted_h, false_h, regret_h = judged(by_holdout)
    return SelectionOutcome(
        scenario=scenario, seed=seed, cv_scores=cv,
        holdout_aucs={name: float(roc_auc_score(y, p)) for name, p in predictions.items()}, true_aucs=true_auc,
        challenger=picked, promoted=promoted, false_promotion=false, regret=regret,
        challenger_holdout_pick=picked_h, promoted_holdout_pick=promoted_h, false_promotion_holdout_pick=false_h,
        regret_holdout_pick=regret_h)


def run_selection_seed(seed: int, settings: StudySettings, truths: dict[str, pd.DataFrame],
                       log=print) -> list[SelectionOutcome]:
    """No change (and, on the first concept_seeds seeds, concept drift) with all four candidates; the champion
    is the CV-best of the four trained before the change, shared by both games of the seed."""
    selection = settings.selection
    games = [("no_change", 0.0)] + ([("concept_drift", CONCEPT_DRIFT)] if seed <= selection.concept_seeds else [])
    champion = None
    outcomes = []
    for scenario, concept in games:
        started = time.perf_counter()
        tables = simulate(_simulation(selection.players, seed, 0.0, concept))
        if champion is None:
            first, first_cv = _train_candidates(_dataset(tables, CHAMPION_DATE), settings, seed)
            champion = first[max(sorted(first_cv), key=lambda name: first_cv[name])]
        frames = _dataset(tables, REFRESH_DATE)
        challengers, cv = _train_candidates(frames, settings, seed)
        outcome = _both_rules(scenario, seed, champion, challengers, cv, frames, truths[scenario], settings)
        outcome.seconds = time.perf_counter() - started
        outcomes.append(outcome)
        log(f"seed {seed:3d} {scenario:13s} 4 candidates: by CV {outcome.challenger:13s} "
            f"{'PROMOTE' if outcome.promoted else 'keep   '} | by holdout {outcome.challenger_holdout_pick:13s} "
            f"{'PROMOTE' if outcome.promoted_holdout_pick else 'keep   '} | true AUC champion "
            f"{outcome.true_aucs['champion']:.4f} best challenger "
            f"{max(v for k, v in outcome.true_aucs.items() if k != 'champion'):.4f} ({outcome.seconds:.1f}s)")
    return outcomes


def summarise_selection(outcomes: list[SelectionOutcome]) -> tuple[dict[str, Any], list[dict]]:
    """The all-candidates rows (both rules) and, per rule, how optimistic the picked challenger's holdout gain was."""
    no_change = [o for o in outcomes if o.scenario == "no_change"]
    concept = [o for o in outcomes if o.scenario == "concept_drift"]
    values = {
        "false_promotion_rate_all_candidates": (no_change, _rate([o.false_promotion for o in no_change])),
        "promotion_within_one_refresh_all_candidates": (concept, _rate([o.promoted for o in concept])),
        "false_promotion_rate_all_candidates_holdout_pick":
            (no_change, _rate([o.false_promotion_holdout_pick for o in no_change])),
        "promotion_within_one_refresh_all_candidates_holdout_pick":
            (concept, _rate([o.promoted_holdout_pick for o in concept])),
    }
    rows = [_row(name, runs, value) for name, (runs, value) in values.items()]
    detail = {}
    for scenario, runs in (("no_change", no_change), ("concept_drift", concept)):
        if not runs:
            continue
        detail[scenario] = {
            "runs": len(runs),
            **{f"{rule}_{what}": value for rule, holdout_pick in (("by_cv", False), ("by_holdout", True))
               for what, value in (
                   ("promotion_rate", _rate([o.promoted_holdout_pick if holdout_pick else o.promoted for o in runs])),
                   ("false_promotion_rate", _rate([o.false_promotion_holdout_pick if holdout_pick else o.false_promotion
                                                   for o in runs])),
                   ("mean_regret_auc", float(np.mean([o.regret_holdout_pick if holdout_pick else o.regret
                                                      for o in runs]))),
                   ("mean_optimism_auc", float(np.mean([o.optimism(holdout_pick) for o in runs]))))},
            "same_challenger": _rate([o.challenger == o.challenger_holdout_pick for o in runs]),
            "picked": {name: sum(o.challenger == name for o in runs) for name in ALL_CANDIDATES},
            "picked_holdout": {name: sum(o.challenger_holdout_pick == name for o in runs) for name in ALL_CANDIDATES},
        }
    return detail, rows


def build_truths(settings: StudySettings, log=print) -> dict[str, pd.DataFrame]:
    """One large fresh sample per game (seed 10_000+, never a study seed), shared by all seeds."""
    truths = {}
    end = TRUTH_DATES[-1] + dt.timedelta(days=LABEL_HORIZON_DAYS)
    games = {"no_change": (0.0, 0.0), "covariate_drift": (COVARIATE_DRIFT, 0.0), "concept_drift": (0.0, CONCEPT_DRIFT)}
    for game, (covariate, concept) in games.items():
        if game == "no_change" or game in settings.scenarios:
            started = time.perf_counter()
            tables = simulate(_simulation(settings.truth_players, 10_000, covariate, concept, end=end))
            truths[game] = _truth_frame(tables)
            log(f"truth sample {game}: {len(truths[game])} rows, label rate "
                f"{truths[game]['label'].mean():.3f} ({time.perf_counter() - started:.1f}s)")
    return truths


def _max(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(max(present)) if present else None


def _min(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(min(present)) if present else None


def _rate(values: list[bool]) -> float | None:
    return float(np.mean(values)) if values else None


def _row(name: str, runs: list, value: float | None) -> dict:
    """A headline row; a "report" row stands beside a target row (the rule before) and has no target."""
    op, target = TARGETS[name]
    if op == "report":
        return {"name": name, "value": value, "target": "reported", "met": None, "runs": len(runs)}
    met = value is not None and (value <= target if op == "<=" else value >= target)
    return {"name": name, "value": value, "target": f"{op} {target}", "met": bool(met), "runs": len(runs)}


def summarise(outcomes: list[Outcome]) -> tuple[dict[str, dict], list[dict]]:
    """Per-scenario figures and the five headline rows with their targets."""
    scenarios: dict[str, dict] = {}
    for scenario in SCENARIOS:
        runs = [o for o in outcomes if o.scenario == scenario]
        if not runs:
            continue
        promoted = [o for o in runs if o.promoted]
        drift = [o.drift_alarm for o in runs if o.drift_alarm is not None]
        gates: dict[str, int] = {}
        for o in runs:
            gates[o.deciding_gate] = gates.get(o.deciding_gate, 0) + 1
        scenarios[scenario] = {
            "runs": len(runs),
            "promotion_rate": _rate([o.promoted for o in runs]),
            "false_promotion_rate": _rate([o.false_promotion for o in runs]),
            "truly_better_share": _rate([o.true_auc_challenger > o.true_auc_champion for o in runs]),
            "mean_true_gain_when_promoted": (
                float(np.mean([o.true_auc_challenger - o.true_auc_champion for o in promoted])) if promoted else None
            ),
            "mean_regret_auc": float(np.mean([o.regret for o in runs])),
            "max_regret_auc": float(np.max([o.regret for o in runs])),
            "drift_alarm_rate": _rate(drift),
            "mean_drift_share": float(np.mean([o.drift_share for o in runs if o.drift_share is not None]))
            if drift else None,
            "mean_unjudged_columns": float(np.mean([o.unjudged_columns for o in runs if o.drift_share is not None]))
            if drift else None,
            "mean_scoring_rows": float(np.mean([o.scoring_rows for o in runs if o.drift_share is not None]))
            if drift else None,
            "mean_holdout_rows": float(np.mean([o.holdout_rows for o in runs])),
            "max_brier_upper": _max([o.brier_upper for o in runs]),
            "min_worst_slice_lower": _min([o.worst_slice_lower for o in runs]),
            "mean_slices_gated": float(np.mean([o.slices_gated for o in runs])),
            "mean_slices_reported": float(np.mean([o.slices_reported for o in runs])),
            "delong_agrees": _rate([(o.delong_p < 0.05 and o.observed_gain > 0) == (o.ci_lower > 0)
                                    for o in runs if o.delong_p is not None]),
            "deciding_gates": gates,
        }

    row = _row

    no_change = [o for o in outcomes if o.scenario == "no_change"]
    concept = [o for o in outcomes if o.scenario == "concept_drift"]
    undrifted = [o for o in outcomes if o.scenario in UNDRIFTED and o.drift_alarm is not None]
    drifted = [o for o in outcomes if o.scenario in DRIFTED and o.drift_alarm is not None]
    rows = [
        row("false_promotion_rate", no_change, _rate([o.false_promotion for o in no_change])),
        row("promotion_within_one_refresh", concept, _rate([o.promoted for o in concept])),
        row("mean_regret_auc", outcomes, float(np.mean([o.regret for o in outcomes])) if outcomes else None),
        row("drift_false_alarm_rate", undrifted, _rate([bool(o.drift_alarm) for o in undrifted])),
        row("drift_detection_rate", drifted, _rate([bool(o.drift_alarm) for o in drifted])),
    ]
    return scenarios, rows


def drift_share_sweep(outcomes: list[Outcome]) -> list[dict]:
    """False-alarm and detection rates had the dataset rule been share >= t, for each t of the sweep (the
    per-column verdicts, at Evidently's 0.1 distance threshold, do not depend on t)."""
    def shares(scenarios: tuple[str, ...]) -> list[float]:
        return [o.drift_share for o in outcomes if o.scenario in scenarios and o.drift_share is not None]

    # share > 0 guards the "no judged column" case, which check_drift never calls drift
    return [
        {"drift_share": t,
         "false_alarm_rate": _rate([0 < share >= t for share in shares(UNDRIFTED)]),
         "false_alarm_rate_no_change": _rate([0 < share >= t for share in shares(("no_change",))]),
         "detection_rate": _rate([0 < share >= t for share in shares(DRIFTED)]),
         "detection_rate_covariate": _rate([0 < share >= t for share in shares(("covariate_drift",))]),
         "detection_rate_concept": _rate([0 < share >= t for share in shares(("concept_drift",))])}
        for t in DRIFT_SHARE_SWEEP
    ]


def _versions() -> dict[str, str]:
    names = ("numpy", "pandas", "scikit-learn", "scipy", "duckdb", "evidently")
    return {"python": platform.python_version(), **{name: metadata.version(name) for name in names}}


def run_study(settings: StudySettings, out_dir: Path, docs_path: Path | None = None, log=print) -> dict:
    """Run every seed, write ``decisions.json`` (and the Markdown report), return the JSON document."""
    started = time.perf_counter()
    truths = build_truths(settings, log)
    outcomes: list[Outcome] = []
    for seed in range(1, settings.seeds + 1):
        outcomes.extend(run_seed(seed, settings, truths, log))
    scenarios, rows = summarise(outcomes)
    selection_detail, selection_outcomes = {}, []
    if settings.selection is not None:
        if settings.selection.concept_seeds and "concept_drift" not in truths:
            truths.update({k: v for k, v in build_truths(replace(settings, scenarios=("concept_drift",)), log).items()
                           if k == "concept_drift"})
        for seed in range(1, settings.selection.seeds + 1):
            selection_outcomes.extend(run_selection_seed(seed, settings, truths, log))
        selection_detail, selection_rows = summarise_selection(selection_outcomes)
        rows = rows[:2] + selection_rows + rows[2:]
    broken_detail, broken_outcomes = {}, []
    if settings.broken_column_faults:
        for seed in range(1, min(settings.seeds, settings.drift_seeds or settings.seeds) + 1):
            broken_outcomes.extend(run_broken_columns_seed(seed, settings, log))
        broken_detail, broken_rows = summarise_broken_columns(broken_outcomes)
        rows = rows + broken_rows
    document = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "seconds": round(time.perf_counter() - started, 1)},
        "versions": _versions(),
        "settings": _json(asdict(settings)),
        "design": {"change_date": str(CHANGE_DATE), "champion_date": str(CHAMPION_DATE),
                   "refresh_date": str(REFRESH_DATE), "truth_dates": [str(d) for d in TRUTH_DATES],
                   "lookback_days": LOOKBACK_DAYS, "covariate_drift": COVARIATE_DRIFT,
                   "concept_drift": CONCEPT_DRIFT, "label_noise": LABEL_NOISE,
                   "small_population_share": SMALL_POPULATION_SHARE,
                   "truth_rows": {game: int(len(frame)) for game, frame in truths.items()}},
        "scenarios": scenarios,
        "rows": rows,
        "drift_share_sweep": drift_share_sweep(outcomes),
        "selection": selection_detail,
        "outcomes": [_json(asdict(o)) for o in outcomes],
        "selection_outcomes": [_json(asdict(o)) for o in selection_outcomes],
        "broken_columns": broken_detail,
        "broken_column_outcomes": [_json(asdict(o)) for o in broken_outcomes],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "decisions.json").write_text(json.dumps(document, indent=2) + "\n")
    if docs_path is not None:
        write_measured_section(docs_path, markdown_report(document))
    for r in rows:
        log(f"{r['name']:30s} {r['value']!s:>22} target {r['target']:8s} met={r['met']} runs={r['runs']}")
    log(f"study done in {document['machine']['seconds']}s -> {out_dir / 'decisions.json'}")
    return document


MEASURED_BEGIN = "<!-- decision study: measured figures (written by `make decisions`) -->"
MEASURED_END = "<!-- end of measured figures -->"


def write_measured_section(path: Path, tables: str) -> None:
    """Replace the measured part of the docs page between its markers (the prose around it is hand-written);
    a page without the markers is created holding just the tables."""
    block = f"{MEASURED_BEGIN}\n{tables}{MEASURED_END}"
    text = path.read_text() if path.exists() else ""
    if MEASURED_BEGIN in text and MEASURED_END in text:
        head, rest = text.split(MEASURED_BEGIN, 1)
        text = head + block + rest.split(MEASURED_END, 1)[1]
    else:
        text = block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda item: list(item) if isinstance(item, tuple) else str(item)))


def _figure(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown_report(document: dict) -> str:
    """The figures of decisions.json as Markdown tables (the measured part of docs/DECISIONS.md)."""
    settings = document["settings"]
    lines = [
        f"Measured {document['machine']['seconds']} s on {document['machine']['cpus']} CPUs "
        f"({document['machine']['platform']}); {settings['seeds']} seeds, {settings['players']} players per game, "
        f"algorithms {', '.join(settings['algorithms'])} (budget {settings['tuning_budget']}), "
        f"{settings['n_boot']} bootstrap replicates, truth samples "
        f"{document['design']['truth_rows']} rows.",
        "",
        "| row | value | target | met | runs |",
        "| --- | ---: | --- | --- | ---: |",
    ]
    for r in document["rows"]:
        met = "-" if r["met"] is None else "yes" if r["met"] else "NO"
        lines.append(f"| `{r['name']}` | {_figure(r['value'], 4)} | {r['target']} | {met} | {r['runs']} |")
    selection = document.get("selection") or {}
    if selection:
        chosen = settings.get("selection") or {}
        lines += ["", f"All four candidates ({', '.join(ALL_CANDIDATES)}; budget {chosen.get('tuning_budget')}, "
                  f"{chosen.get('players')} players) decided by both rules on the same models: *by CV* (the refresh's "
                  "rule: the challenger with the best out-of-time CV ROC AUC, gated on the holdout) and *by holdout* "
                  "(the best on the holdout that then gates it). Optimism: the picked challenger's holdout gain over "
                  "the champion minus its true gain (mean; > 0 is the winner's curse).", "",
                  "| scenario | runs | rule | promoted | false promotions | mean regret | mean optimism | picked |",
                  "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |"]
        for scenario, d in selection.items():
            for rule, key, picked in (("by CV", "by_cv", d["picked"]), ("by holdout", "by_holdout", d["picked_holdout"])):
                names = ", ".join(f"{name} {count}" for name, count in picked.items() if count)
                lines.append(f"| {scenario} | {d['runs']} | {rule} | {_figure(d[f'{key}_promotion_rate'])} | "
                             f"{_figure(d[f'{key}_false_promotion_rate'])} | {_figure(d[f'{key}_mean_regret_auc'], 4)} | "
                             f"{_figure(d[f'{key}_mean_optimism_auc'], 4)} | {names} |")
    lines += ["", "| scenario | runs | promoted | false promotions | truly better | mean regret | max regret "
              "| drift alarms | mean drift share | holdout rows | max Brier upper | min slice lower | slices gated / reported "
              "| DeLong agrees | deciding gates |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, s in document["scenarios"].items():
        gates = ", ".join(f"{gate} {count}" for gate, count in sorted(s["deciding_gates"].items()))
        lines.append(
            f"| {name} | {s['runs']} | {_figure(s['promotion_rate'])} | {_figure(s['false_promotion_rate'])} | "
            f"{_figure(s['truly_better_share'])} | {_figure(s['mean_regret_auc'], 4)} | "
            f"{_figure(s['max_regret_auc'], 4)} | {_figure(s['drift_alarm_rate'])} | "
            f"{_figure(s['mean_drift_share'])} | {s['mean_holdout_rows']:.0f} | {_figure(s['max_brier_upper'], 4)} | "
            f"{_figure(s['min_worst_slice_lower'], 4)} | {s['mean_slices_gated']:.1f} / {s['mean_slices_reported']:.1f} | "
            f"{_figure(s['delong_agrees'])} | {gates} |"
        )
    lines += ["", f"Drift alarms had the dataset rule been `share of drifted columns >= t` (pipeline default "
              f"t = {settings['drift']['drift_share']}); undrifted = {', '.join(UNDRIFTED)}; drifted = {', '.join(DRIFTED)}:",
              "",
              "| t | false alarms (undrifted) | false alarms (no_change) | detected (drifted) | detected (covariate) "
              "| detected (concept) |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in document["drift_share_sweep"]:
        lines.append(f"| {r['drift_share']} | {_figure(r['false_alarm_rate'])} | "
                     f"{_figure(r['false_alarm_rate_no_change'])} | {_figure(r['detection_rate'])} | "
                     f"{_figure(r['detection_rate_covariate'])} | {_figure(r['detection_rate_concept'])} |")
    lines += broken_columns_markdown(document)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="20 no-change + 10 drift seeds, one algorithm, 3 scenarios (< 5 min on 2 cores)")
    parser.add_argument("--tiny", action="store_true", help="a smoke run of a few seconds (CI); targets not meaningful")
    parser.add_argument("--seeds", type=int, help="override the number of seeds")
    parser.add_argument("--players", type=int, help="override the players per game")
    parser.add_argument("--out", default="data/bench", help="folder for decisions.json")
    parser.add_argument("--docs", default=None, help="also write the Markdown tables to this file")
    parser.add_argument("--selection-seeds", type=int,
                        help="no-change seeds of the all-candidates part (0: skip it; concept seeds: at most half)")
    args = parser.parse_args(argv)
    settings = TINY if args.tiny else QUICK if args.quick else FULL
    if args.seeds:
        settings = replace(settings, seeds=args.seeds)
    if args.players:
        settings = replace(settings, players=args.players)
    if args.selection_seeds is not None:
        chosen = settings.selection or SelectionSettings()
        settings = replace(settings, selection=None if args.selection_seeds == 0 else replace(
            chosen, seeds=args.selection_seeds, concept_seeds=min(chosen.concept_seeds, max(1, args.selection_seeds // 2))))
    document = run_study(settings, Path(args.out), Path(args.docs) if args.docs else None)
    return 0 if args.tiny or all(r["met"] is not False for r in document["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
