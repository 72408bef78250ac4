"""Unit tests for the seeded player-activity simulator and the atomic DuckDB warehouse writer."""

from __future__ import annotations

import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from refresh_assets.core import simulate as simulate_module
from refresh_assets.core.simulate import (
    CHANNELS,
    COUNTRIES,
    MAX_LIFETIME_DAYS,
    PLATFORMS,
    SimulationConfig,
    simulate,
    simulate_to_duckdb,
    simulate_with_truth,
    write_warehouse,
)

START = datetime.date(2026, 1, 5)
HORIZON_DAYS = 14
FEATURES = [
    "days_since_last_session",
    "minutes_7d",
    "minutes_28d",
    "active_days_7d",
    "active_days_28d",
    "minutes_trend",
    "tenure_days",
    "level",
    "level_gain_28d",
    "log_spend_total",
    "is_android",
]


def day(offset: int) -> datetime.date:
    return START + datetime.timedelta(days=offset)


def snapshot(tables: dict[str, pd.DataFrame], as_of: datetime.date, horizon: int = HORIZON_DAYS) -> pd.DataFrame:
    """Features and churn label at one snapshot, computed independently of the simulator's internals with
    the dataset definition of common.md (population: installed and a session in [t-27, t])."""
    t = pd.Timestamp(as_of)
    players, sessions, purchases = tables["players"], tables["sessions"], tables["purchases"]
    past = sessions[sessions.session_date <= t]
    last_28 = past[past.session_date > t - pd.Timedelta(days=28)]
    last_7 = last_28[last_28.session_date > t - pd.Timedelta(days=7)]
    frame = players[players.player_id.isin(last_28.player_id) & (players.install_date <= t)].set_index("player_id")

    def per_player(values: pd.Series, fill: float = 0.0) -> pd.Series:
        return values.reindex(frame.index).fillna(fill)

    frame["days_since_last_session"] = (t - past.groupby("player_id").session_date.max().reindex(frame.index)).dt.days
    frame["minutes_7d"] = per_player(last_7.groupby("player_id").minutes.sum())
    frame["minutes_28d"] = per_player(last_28.groupby("player_id").minutes.sum())
    frame["active_days_7d"] = per_player(last_7.groupby("player_id").size())
    frame["active_days_28d"] = per_player(last_28.groupby("player_id").size())
    frame["minutes_trend"] = frame.minutes_7d * 4 / (frame.minutes_28d + 1)
    frame["tenure_days"] = (t - frame.install_date).dt.days
    frame["level"] = past.groupby("player_id")["level"].max().reindex(frame.index)
    level_before = past[past.session_date <= t - pd.Timedelta(days=28)].groupby("player_id")["level"].max()
    frame["level_gain_28d"] = frame.level - per_player(level_before, fill=1)
    spend = purchases[purchases.purchase_date <= t].groupby("player_id").amount.sum()
    frame["log_spend_total"] = np.log1p(per_player(spend))
    frame["is_android"] = (frame.platform == "android").astype(float)
    future = sessions[(sessions.session_date > t) & (sessions.session_date <= t + pd.Timedelta(days=horizon))]
    frame["label"] = (~frame.index.isin(future.player_id)).astype(int)
    return frame


def fit_logistic(frame: pd.DataFrame):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(frame[FEATURES], frame.label)


def auc_on(model, frame: pd.DataFrame) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(frame.label, model.predict_proba(frame[FEATURES])[:, 1]))


def drift_auc_gap(config: SimulationConfig, train_pre: int, train_post: int, test: int) -> float:
    """AUC on a post-drift snapshot of a model trained after the drift minus one trained before it."""
    tables = simulate(config)
    pre_model = fit_logistic(snapshot(tables, day(train_pre)))
    post_model = fit_logistic(snapshot(tables, day(train_post)))
    test_frame = snapshot(tables, day(test))
    return auc_on(post_model, test_frame) - auc_on(pre_model, test_frame)


@pytest.fixture(scope="module")
def small_run() -> tuple[SimulationConfig, dict[str, pd.DataFrame], pd.DataFrame]:
    config = SimulationConfig(n_players=3_000, days=100, seed=11)
    tables, truth = simulate_with_truth(config)
    return config, tables, truth


# --- config -----------------------------------------------------------------------------------------------


def test_end_date_is_inclusive_last_day() -> None:
    assert SimulationConfig(days=1).end_date() == START
    # 2026-01-05 + 181 days: 26 days left in January, then 28 + 31 + 30 + 31 + 30 = 150 -> 5 July.
    assert SimulationConfig(days=182).end_date() == datetime.date(2026, 7, 5)
    assert SimulationConfig(days=182, warmup_days=120).end_date() == datetime.date(2026, 7, 5)  # window only


def test_history_start_and_player_count_follow_the_warmup() -> None:
    assert SimulationConfig().warmup_days >= MAX_LIFETIME_DAYS  # the default window is steady (see below)
    assert SimulationConfig(warmup_days=120).history_start() == datetime.date(2025, 9, 7)
    assert SimulationConfig(warmup_days=0).history_start() == START
    # n_players installs in the window; the warm-up adds installs at the same daily rate.
    assert SimulationConfig(n_players=1_000, days=100, warmup_days=150).total_players() == 2_500
    assert SimulationConfig(n_players=1_000, days=100, warmup_days=0).total_players() == 1_000


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"n_players": 0}, "n_players"),
        ({"days": 0}, "days"),
        ({"warmup_days": -1}, "warmup_days"),
        ({"warmup_days": 30.0}, "warmup_days"),
        ({"warmup_days": True}, "warmup_days"),
        ({"covariate_drift": 1.5, "drift_date": day(10)}, "covariate_drift"),
        ({"concept_drift": -0.1, "drift_date": day(10)}, "concept_drift"),
        ({"concept_drift": 0.5, "drift_date": None}, "drift_date"),
        ({"covariate_drift": 0.5, "drift_date": day(200)}, "drift_date"),
        ({"concept_drift": 0.5, "drift_date": day(-1)}, "drift_date"),
    ],
)
def test_validate_names_the_bad_field(overrides: dict, field: str) -> None:
    config = SimulationConfig(**{"days": 100, **overrides})
    with pytest.raises(ValueError, match=field):
        config.validate()
    with pytest.raises(ValueError, match=field):
        simulate(config)


def test_validate_accepts_edges_of_the_window() -> None:
    SimulationConfig(days=100, drift_date=day(0), concept_drift=1.0).validate()
    SimulationConfig(days=100, drift_date=day(99), covariate_drift=0.0, concept_drift=1.0).validate()
    SimulationConfig(days=100, drift_date=day(500)).validate()  # knobs at 0: the date is unused
    SimulationConfig(days=100, warmup_days=0).validate()
    # the warm-up is history, not window: a drift date inside it is still refused (test above, day(-1))


# --- determinism and schema -------------------------------------------------------------------------------


def test_same_seed_same_tables_and_different_seed_differs() -> None:
    config = SimulationConfig(n_players=500, days=40, seed=3)
    first, second = simulate(config), simulate(config)
    for name in ("players", "sessions", "purchases"):
        pd.testing.assert_frame_equal(first[name], second[name])
    other = simulate(SimulationConfig(n_players=500, days=40, seed=4))
    assert not first["sessions"].equals(other["sessions"])


def test_schema_and_dtypes(small_run) -> None:
    _, tables, _ = small_run
    expected = {
        "players": {
            "player_id": "int64",
            "install_date": "datetime64[ns]",
            "platform": "object",
            "country": "object",
            "channel": "object",
        },
        "sessions": {
            "player_id": "int64",
            "session_date": "datetime64[ns]",
            "sessions": "int32",
            "minutes": "float64",
            "level": "int32",
        },
        "purchases": {"player_id": "int64", "purchase_date": "datetime64[ns]", "amount": "float64"},
    }
    assert set(tables) == set(expected)
    for name, columns in expected.items():
        assert {col: str(dtype) for col, dtype in tables[name].dtypes.items()} == columns
        assert list(tables[name].columns) == list(columns)
    config, _, _ = small_run
    players = tables["players"]
    assert players.player_id.is_unique and len(players) == config.total_players()
    assert (players.install_date >= pd.Timestamp(config.start_date)).sum() == 3_000  # n_players: window installs
    assert set(players.platform) == set(PLATFORMS)
    assert set(players.country) == set(COUNTRIES)
    assert set(players.channel) == set(CHANNELS)  # no 'influencer' without covariate drift
    for frame, column in ((tables["sessions"], "session_date"), (tables["purchases"], "purchase_date")):
        assert (frame[column] == frame[column].dt.normalize()).all()  # day resolution


def test_activity_invariants(small_run) -> None:
    config, tables, truth = small_run
    players, sessions, purchases = tables["players"], tables["sessions"], tables["purchases"]
    assert not sessions.duplicated(["player_id", "session_date"]).any()  # one row per active day
    assert (sessions.sessions >= 1).all() and (sessions.minutes > 0).all()
    history = (pd.Timestamp(config.history_start()), pd.Timestamp(config.end_date()))
    assert sessions.session_date.between(*history).all()
    assert purchases.purchase_date.between(*history).all()
    ordered = sessions.sort_values(["player_id", "session_date"])
    assert (ordered.groupby("player_id")["level"].diff().dropna() >= 0).all()
    assert ordered["level"].min() >= 1 and ordered["level"].max() > 1

    with_install = sessions.merge(players[["player_id", "install_date"]], on="player_id")
    assert (with_install.session_date >= with_install.install_date).all()

    assert len(purchases) > 0 and (purchases.amount > 0).all()
    on_play_days = purchases.merge(
        sessions[["player_id", "session_date"]],
        left_on=["player_id", "purchase_date"],
        right_on=["player_id", "session_date"],
        how="left",
    )
    assert on_play_days.session_date.notna().all()


def test_history_starts_warmup_days_before_the_window_with_a_steady_inflow() -> None:
    config = SimulationConfig(n_players=600, days=40, warmup_days=60, seed=4)
    tables = simulate(config)
    players, sessions, purchases = tables["players"], tables["sessions"], tables["purchases"]
    history_start = pd.Timestamp(START - datetime.timedelta(days=60))
    assert players.install_date.min() == sessions.session_date.min() == history_start
    assert purchases.purchase_date.min() >= history_start
    assert sessions.session_date.max() == pd.Timestamp(config.end_date())
    assert len(players) == 600 + 900
    in_window = players.install_date >= pd.Timestamp(START)
    assert in_window.sum() == 600 and (~in_window).sum() == 900
    # player_id still follows install order across the warm-up / window boundary
    assert players.install_date.is_monotonic_increasing
    # one steady inflow, no launch spike: ~15 installs a day everywhere, also on history start and start_date
    per_day = players.groupby("install_date").size().reindex(pd.date_range(history_start, config.end_date()))
    assert per_day.max() <= 35 and per_day.loc[[history_start, pd.Timestamp(START)]].max() <= 35

    launch = simulate(SimulationConfig(n_players=600, days=40, warmup_days=0, seed=4))["players"]
    assert launch.install_date.min() == pd.Timestamp(START) and len(launch) == 600
    assert 0.18 <= (launch.install_date == pd.Timestamp(START)).mean() <= 0.32  # the old launch cohort


def test_every_life_is_bounded(small_run) -> None:
    """What makes a warm-up of MAX_LIFETIME_DAYS enough for a steady window: nobody outlives it."""
    config, tables, truth = small_run
    install = tables["players"].set_index("player_id").install_date
    lifetime = (truth.set_index("player_id").quit_date - install).dt.days
    assert lifetime.max() < MAX_LIFETIME_DAYS
    still_alive = lifetime.isna()
    assert ((pd.Timestamp(config.end_date()) - install[still_alive]).dt.days < MAX_LIFETIME_DAYS).all()
    last_session = tables["sessions"].groupby("player_id").session_date.max()
    assert ((last_session - install.reindex(last_session.index)).dt.days < MAX_LIFETIME_DAYS).all()
    assert lifetime.max() > 0.8 * MAX_LIFETIME_DAYS  # long-lived players exist: the bound is not a short cap


def _activity_means(tables: dict[str, pd.DataFrame], offset: int) -> dict[str, float]:
    frame = snapshot(tables, day(offset))
    return {
        "active_days_28d": frame.active_days_28d.mean(),  # how much the active players play
        "spender_share": (frame.log_spend_total > 0).mean(),  # share of active players who ever paid
        "level": frame.level.mean(),
    }


def test_no_drift_means_a_steady_active_population_unlike_a_launch() -> None:
    """With the warm-up, the active population four months apart looks the same; a launch keeps ageing.

    Measured over 8 seeds (4,000 window players, days 21 vs 140): with the warm-up the relative change was at
    most 0.028 (active days), 0.057 (spender share), 0.030 (level); with warmup_days=0 it was at least
    0.16, 1.10 and 0.77.
    """
    steady = simulate(SimulationConfig(n_players=4_000, days=150, seed=3))
    launch = simulate(SimulationConfig(n_players=4_000, days=150, seed=3, warmup_days=0))
    for tables, steady_expected in ((steady, True), (launch, False)):
        early, late = _activity_means(tables, 21), _activity_means(tables, 140)
        change = {name: abs(late[name] - early[name]) / early[name] for name in early}
        if steady_expected:
            assert max(change.values()) <= 0.08, change
        else:
            assert change["active_days_28d"] >= 0.12 and change["spender_share"] >= 0.5, change
            assert change["level"] >= 0.4, change


def test_nothing_happens_on_or_after_quitting(small_run) -> None:
    _, tables, truth = small_run
    quit_dates = truth.set_index("player_id").quit_date
    assert quit_dates.notna().mean() > 0.2  # a real share quits, so the check below is not vacuous
    for frame, column in ((tables["sessions"], "session_date"), (tables["purchases"], "purchase_date")):
        quit_date = frame.player_id.map(quit_dates)
        assert not (frame[column] >= quit_date).any()


def test_activity_and_churn_rates_are_plausible(small_run) -> None:
    _, tables, truth = small_run
    players, sessions = tables["players"], tables["sessions"]
    for offset in (30, 60, 85):
        t = pd.Timestamp(day(offset))
        alive = (players.install_date <= t) & ~(truth.quit_date <= t)
        active = sessions.session_date.eq(t).sum()
        assert 0.40 <= active / alive.sum() <= 0.70
        label_rate = snapshot(tables, day(offset)).label.mean()
        assert 0.10 <= label_rate <= 0.35


# --- learnability and drift -------------------------------------------------------------------------------


def test_churn_is_learnable_on_a_later_snapshot(small_run) -> None:
    _, tables, _ = small_run
    model = fit_logistic(snapshot(tables, day(40)))
    assert auc_on(model, snapshot(tables, day(75))) >= 0.70


def test_drift_knobs_leave_the_history_before_the_drift_date_untouched() -> None:
    plain = simulate(SimulationConfig(n_players=1_000, days=60, seed=5))
    drifted = simulate(
        SimulationConfig(n_players=1_000, days=60, seed=5, drift_date=day(30), concept_drift=1.0, covariate_drift=0.5)
    )
    before = pd.Timestamp(day(30))
    for name, column in (("sessions", "session_date"), ("purchases", "purchase_date"), ("players", "install_date")):
        pd.testing.assert_frame_equal(
            plain[name][plain[name][column] < before].reset_index(drop=True),
            drifted[name][drifted[name][column] < before].reset_index(drop=True),
        )
    assert not plain["sessions"].equals(drifted["sessions"])


def test_concept_drift_makes_a_pre_drift_model_measurably_worse() -> None:
    # drift on day 50; pre-drift model on day 30 (labels end day 44), post-drift model on day 60, test day 78.
    # Seeds 20-29 measured: drifted gap 0.043-0.059 (mean 0.050); stable gap within +-0.002. The steady
    # population makes the no-drift gap ~10x tighter than the launch simulator's (up to 0.024).
    common = {"n_players": 5_000, "days": 100, "seed": 21}
    drifted_gap = drift_auc_gap(
        SimulationConfig(**common, drift_date=day(50), concept_drift=1.0), train_pre=30, train_post=60, test=78
    )
    stable_gap = drift_auc_gap(SimulationConfig(**common), train_pre=30, train_post=60, test=78)
    assert drifted_gap >= 0.035
    assert abs(stable_gap) <= 0.01
    assert drifted_gap - stable_gap >= 0.03


def test_covariate_drift_adds_influencer_installs_at_the_requested_share_and_a_model_still_holds() -> None:
    config = SimulationConfig(n_players=5_000, days=100, seed=8, drift_date=day(50), covariate_drift=0.4)
    tables = simulate(config)
    players = tables["players"]
    is_influencer = players.channel == "influencer"
    after = players.install_date >= pd.Timestamp(config.drift_date)
    assert not (is_influencer & ~after).any()
    # 2_500 installs after the drift: the share's standard error is ~0.01, so +-0.05 is > 4 sigma.
    assert abs(is_influencer[after].mean() - 0.4) <= 0.05
    test_frame = snapshot(tables, day(78))
    assert (test_frame.channel == "influencer").mean() > 0.1  # the drifted segment is really in the test set
    pre_model = fit_logistic(snapshot(tables, day(30)))
    post_model = fit_logistic(snapshot(tables, day(60)))
    assert auc_on(pre_model, test_frame) >= 0.70
    assert auc_on(post_model, test_frame) - auc_on(pre_model, test_frame) <= 0.03


# --- warehouse ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_tables() -> dict[str, pd.DataFrame]:
    return simulate(SimulationConfig(n_players=200, days=30, seed=2))


def test_write_warehouse_round_trip(tiny_tables, tmp_path: Path) -> None:
    target = tmp_path / "nested" / "warehouse.duckdb"
    assert write_warehouse(tiny_tables, target) == target
    with duckdb.connect(str(target), read_only=True) as connection:
        types = dict(
            connection.execute(
                "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
            ).fetchall()
        )
        counts = {
            name: connection.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            for name in ("players", "sessions", "purchases")
        }
        first_session = connection.execute(
            "SELECT player_id, session_date, sessions, minutes, level FROM sessions "
            "ORDER BY player_id, session_date LIMIT 1"
        ).fetchone()
    assert types == {
        "players.player_id": "BIGINT",
        "players.install_date": "DATE",
        "players.platform": "VARCHAR",
        "players.country": "VARCHAR",
        "players.channel": "VARCHAR",
        "sessions.player_id": "BIGINT",
        "sessions.session_date": "DATE",
        "sessions.sessions": "INTEGER",
        "sessions.minutes": "DOUBLE",
        "sessions.level": "INTEGER",
        "purchases.player_id": "BIGINT",
        "purchases.purchase_date": "DATE",
        "purchases.amount": "DOUBLE",
    }
    assert counts == {name: len(frame) for name, frame in tiny_tables.items()}
    expected = tiny_tables["sessions"].sort_values(["player_id", "session_date"]).iloc[0]
    assert first_session == (
        expected.player_id,
        expected.session_date.date(),
        expected.sessions,
        expected.minutes,
        expected.level,
    )
    assert sorted(p.name for p in target.parent.iterdir()) == ["warehouse.duckdb"]


def test_write_warehouse_is_atomic(tiny_tables, tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "warehouse.duckdb"
    real_write_table = simulate_module._write_table

    def fail_on_sessions(connection, name, frame):
        if name == "sessions":  # players already written into the temp file: a real mid-write failure
            raise RuntimeError("disk full")
        real_write_table(connection, name, frame)

    monkeypatch.setattr(simulate_module, "_write_table", fail_on_sessions)
    with pytest.raises(RuntimeError, match="disk full"):
        write_warehouse(tiny_tables, target)
    assert list(tmp_path.iterdir()) == []  # no target and no temp file left behind

    monkeypatch.setattr(simulate_module, "_write_table", real_write_table)
    old_tables = {name: frame.head(5) for name, frame in tiny_tables.items()}
    write_warehouse(old_tables, target)
    monkeypatch.setattr(simulate_module, "_write_table", fail_on_sessions)
    with pytest.raises(RuntimeError):
        write_warehouse(tiny_tables, target)
    assert [p.name for p in tmp_path.iterdir()] == ["warehouse.duckdb"]
    with duckdb.connect(str(target), read_only=True) as connection:  # the previous warehouse is intact
        assert connection.execute("SELECT count(*) FROM sessions").fetchone()[0] == 5


def test_write_warehouse_requires_all_tables(tiny_tables, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="purchases"):
        write_warehouse({k: v for k, v in tiny_tables.items() if k != "purchases"}, tmp_path / "w.duckdb")
    assert list(tmp_path.iterdir()) == []


def test_simulate_to_duckdb_summary_matches_the_file(tmp_path: Path) -> None:
    config = SimulationConfig(n_players=300, days=20, seed=9, warmup_days=30)
    summary = simulate_to_duckdb(config, tmp_path / "w.duckdb")
    with duckdb.connect(summary["path"], read_only=True) as connection:
        assert summary["players"] == connection.execute("SELECT count(*) FROM players").fetchone()[0] == 750
        assert summary["session_rows"] == connection.execute("SELECT count(*) FROM sessions").fetchone()[0]
        assert summary["purchase_rows"] == connection.execute("SELECT count(*) FROM purchases").fetchone()[0]
        first, last = connection.execute("SELECT min(session_date), max(session_date) FROM sessions").fetchone()
    assert (summary["history_start"], summary["start"], summary["end"]) == ("2025-12-06", "2026-01-05", "2026-01-24")
    assert first == config.history_start() and last == config.end_date()
    assert summary["seconds"] >= 0
