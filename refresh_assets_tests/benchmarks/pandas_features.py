"""The dataset benchmark's baseline: ``churn_features.sql`` written in pandas, the way a data scientist would.

Same inputs (the raw ``players``, ``sessions`` and ``purchases`` frames), same parameters, same output
(columns, dtypes up to int/float widths, row order); ``refresh_assets_tests/unit/test_benchmark_baselines.py``
checks that both give identical frames, so the benchmark compares equal work. Vectorised per snapshot date
(one boolean window and one ``groupby`` per date), no Python loop over rows.
"""

from __future__ import annotations

import datetime as dt


import pandas as pd

FEATURE_ORDER = [
    "entity_id", "as_of_date", "tenure_days", "platform", "country", "channel", "days_since_last_session",
    "sessions_7d", "sessions_28d", "minutes_7d", "minutes_28d", "active_days_7d", "active_days_28d",
    "minutes_trend", "level", "level_gain_28d", "purchases_28d", "spend_28d", "spend_total",
    "days_since_last_purchase", "label",
]


def _days(delta: pd.Series) -> pd.Series:
    return delta.dt.days


def _one_snapshot(players: pd.DataFrame, sessions: pd.DataFrame, purchases: pd.DataFrame, t: pd.Timestamp,
                  as_of: pd.Timestamp, horizon: int) -> pd.DataFrame:
    day = pd.Timedelta(days=1)
    window = sessions[(sessions["session_date"] > t - 28 * day) & (sessions["session_date"] <= t)
                      & (sessions["session_date"] <= as_of)]
    last7 = window["session_date"] > t - 7 * day
    recent = window.assign(
        sessions_7d=window["sessions"].where(last7),
        minutes_7d=window["minutes"].where(last7),
        active_7d=last7.astype("int64"),
    ).groupby("player_id").agg(
        sessions_7d=("sessions_7d", "sum"),
        sessions_28d=("sessions", "sum"),
        minutes_7d=("minutes_7d", "sum"),
        minutes_28d=("minutes", "sum"),
        active_days_7d=("active_7d", "sum"),
        active_days_28d=("session_date", "size"),
        last_session_date=("session_date", "max"),
        level=("level", "max"),
        level_min=("level", "min"),
    )
    recent["level_gain_28d"] = recent["level"] - recent.pop("level_min")

    bought = purchases[(purchases["purchase_date"] <= t) & (purchases["purchase_date"] <= as_of)]
    in28 = bought["purchase_date"] > t - 28 * day
    spend = bought.assign(amount_28d=bought["amount"].where(in28), in28=in28.astype("int64")).groupby(
        "player_id").agg(purchases_28d=("in28", "sum"), spend_28d=("amount_28d", "sum"),
                         spend_total=("amount", "sum"), last_purchase_date=("purchase_date", "max"))

    ahead = sessions[(sessions["session_date"] > t) & (sessions["session_date"] <= t + horizon * day)
                     & (sessions["session_date"] <= as_of)]
    future = ahead.groupby("player_id").size().rename("future_active_days")

    rows = recent.join(players, how="inner")
    rows = rows[rows["install_date"] <= t].join(spend, how="left").join(future, how="left")
    out = pd.DataFrame(index=rows.index)
    out["entity_id"] = rows.index.to_numpy()
    out["as_of_date"] = t
    out["tenure_days"] = _days(t - rows["install_date"])
    out["platform"] = rows["platform"]
    out["country"] = rows["country"]
    out["channel"] = rows["channel"]
    out["days_since_last_session"] = _days(t - rows["last_session_date"])
    out["sessions_7d"] = rows["sessions_7d"]
    out["sessions_28d"] = rows["sessions_28d"]
    out["minutes_7d"] = rows["minutes_7d"]
    out["minutes_28d"] = rows["minutes_28d"]
    out["active_days_7d"] = rows["active_days_7d"]
    out["active_days_28d"] = rows["active_days_28d"]
    out["minutes_trend"] = rows["minutes_7d"] * 4 / (rows["minutes_28d"] + 1)
    out["level"] = rows["level"]
    out["level_gain_28d"] = rows["level_gain_28d"]
    out["purchases_28d"] = rows["purchases_28d"].fillna(0).astype("int64")
    out["spend_28d"] = rows["spend_28d"].fillna(0.0)
    out["spend_total"] = rows["spend_total"].fillna(0.0)
    out["days_since_last_purchase"] = _days(t - rows["last_purchase_date"])  # NaN: never purchased
    if t + horizon * day > as_of:
        out["label"] = pd.array([pd.NA] * len(out), dtype="Int8")
    else:
        out["label"] = (rows["future_active_days"].fillna(0) == 0).astype("int8").astype("Int8")
    return out.reset_index(drop=True)


def build_features(players: pd.DataFrame, sessions: pd.DataFrame, purchases: pd.DataFrame,
                   as_of_date: dt.date, snapshot_dates: list[dt.date], label_horizon_days: int) -> pd.DataFrame:
    """Every snapshot's rows, sorted by (as_of_date, entity_id) like the SQL's ORDER BY."""
    players = players.set_index("player_id")
    as_of = pd.Timestamp(as_of_date)
    parts = [_one_snapshot(players, sessions, purchases, pd.Timestamp(t), as_of, label_horizon_days)
             for t in snapshot_dates]
    out = pd.concat(parts, ignore_index=True)[FEATURE_ORDER]
    return out.sort_values(["as_of_date", "entity_id"], kind="stable").reset_index(drop=True)


def load_raw(con) -> dict[str, pd.DataFrame]:
    """The raw tables as pandas frames with datetime64 dates (what the baseline starts from)."""
    tables = {name: con.execute(f"SELECT * FROM {name}").df() for name in ("players", "sessions", "purchases")}
    for name, column in (("players", "install_date"), ("sessions", "session_date"),
                         ("purchases", "purchase_date")):
        tables[name][column] = pd.to_datetime(tables[name][column])
    return tables


def normalised(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame with numeric columns as float64 and dates as datetime64[ns], for an exact comparison."""
    out = frame.copy()
    for column in out.columns:
        if column == "as_of_date":
            out[column] = pd.to_datetime(out[column]).astype("datetime64[ns]")
        elif column in ("platform", "country", "channel"):
            out[column] = out[column].astype(object)
        else:
            out[column] = pd.to_numeric(out[column]).astype("float64")
    return out.reset_index(drop=True)



