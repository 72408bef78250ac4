"""Seeded simulator of a mobile game's player activity; writes the raw warehouse (players, sessions, purchases).

Why it exists: the pipeline needs a warehouse whose churn is *learnable* from the SQL features (recency,
activity trend, tenure, spend, level progress) and whose behaviour can be made to drift on purpose, so the
refresh logic (retrain, compare, promote) can be exercised end to end without real data.

Mechanics in short: players install at a steady daily rate; each has a latent engagement = baseline
(platform/channel shifted) + per-player slope * tenure (some players decline from the start) - an interest
fade + AR(1) noise. An alive player plays with probability sigmoid(engagement) unless on a short break (3-13
days, so silence alone does not prove churn); sessions ~ 1 + Poisson, minutes ~ gamma, level climbs with
accumulated minutes; spenders buy on play days. Each day an alive player quits for good with a logistic hazard
of the same rolling quantities the SQL computes (7d/28d minutes trend, recency, active days, tenure, spend,
platform, level plateau), plus an unobserved per-player frailty. ``concept_drift`` changes that hazard from
``drift_date`` on (reversing what a pre-drift model relies on); ``covariate_drift`` sends a share of new
installs through a new 'influencer' channel with weaker engagement but the SAME hazard. Drift knobs never
change anything before ``drift_date``: the drifted and plain runs share their history.

A steady population (the no-drift baseline a drift monitor needs; an established game's active players do not
get older, richer or more engaged month after month). Two things give it:

* Every life is bounded. After an interest span (uniform 30-240 days of tenure) a player's engagement fades
  by 0.025-0.08 logit/day -- visibly: falling minutes trend, fewer active days -- and the player uninstalls
  once it has fallen 3 below its earlier course, so nobody is alive ``MAX_LIFETIME_DAYS`` (362) days after
  installing. Without this, the quit hazard alone left ~13% of a cohort alive at 400 days (loyal spenders
  quitting ~0.1%/day) and the active population kept ageing for years: no finite warm-up made it steady.
* A warm-up. The simulation starts ``warmup_days`` (default 365 >= MAX_LIFETIME_DAYS) before
  ``start_date``, with the same steady install inflow and no launch spike, so by ``start_date`` every age a
  player can reach is populated and the active population is stationary from then on. Measured with the
  packaged SQL (100k window installs; reference = snapshots on days 21-42 of the window, compared with days
  56-181): normed Wasserstein distance <= 0.016 for every numeric feature, tenure_days included, and no
  column flagged by Evidently; the old launch-cohort simulator reached 4.7 (tenure), 2.1 (days since last
  purchase), 1.5 (level) and Evidently flagged 28-72% of the columns. A 120-day warm-up is not enough for
  lives of up to a year: tenure 0.45, level 0.27 by the end of the window.
  The warm-up's rows are written too (the warehouse starts at ``history_start()``), so cumulative features
  (spend_total, level, tenure) are exact. ``warmup_days=0`` is the old launch-style run: 25% of the players
  install on day 0 and the population ages through the whole window.

Timing (2-core shared machine; numpy loop over days that only touches the players installed and possibly
still alive): 100_000 window players x 180 days + 365 warm-up days (302_778 players, 10.5 M session rows,
0.44 M purchases) simulate in ~10 s, ~10-11.5 s with the DuckDB write; with a 120-day warm-up ~3-4 s
(5.1 M session rows); with none ~2 s.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PLATFORMS: tuple[str, ...] = ("ios", "android")
PLATFORM_PROBS: tuple[float, ...] = (0.45, 0.55)
COUNTRIES: tuple[str, ...] = ("US", "GB", "DE", "FR", "BR", "IN", "JP")
COUNTRY_PROBS: tuple[float, ...] = (0.30, 0.10, 0.10, 0.08, 0.14, 0.18, 0.10)
CHANNELS: tuple[str, ...] = ("organic", "paid_social", "search", "cross_promo")
CHANNEL_PROBS: tuple[float, ...] = (0.40, 0.30, 0.18, 0.12)
DRIFT_CHANNEL = "influencer"
ALL_CHANNELS: tuple[str, ...] = CHANNELS + (DRIFT_CHANNEL,)

# Baseline engagement shifts (logit scale of the daily play probability).
_PLATFORM_ENGAGEMENT = np.array([0.15, 0.0])  # ios, android
_CHANNEL_ENGAGEMENT = np.array([0.25, -0.15, 0.10, 0.0, -0.45])  # ..., influencer (also more spread, below)
_PRICE_POINTS = np.array([0.99, 2.99, 4.99, 9.99, 19.99, 49.99, 99.99])
_PRICE_PROBS = np.array([0.30, 0.22, 0.20, 0.14, 0.08, 0.045, 0.015])

LAUNCH_COHORT_SHARE = 0.25  # warmup_days=0 only: share of players installing on day 0 (a launch)
_DECLINER_SHARE = 0.2  # players whose engagement trends down with tenure (the visible road to quitting)
_DECLINER_SLOPE = (0.01, 0.03)  # their daily engagement loss, uniform in this range
# Interest fade: full interest for a span of tenure, then engagement falls at a per-player rate until it is
# _FADE_DEPTH below its earlier course, when the player uninstalls (the observable road: falling minutes trend,
# fewer active days, longer gaps). Bounds every life, which is what lets a warm-up make the window stationary.
_INTEREST_SPAN_DAYS = (30.0, 240.0)  # uniform per player
_FADE_RATE = (0.025, 0.08)  # logit units per day, uniform per player
_FADE_DEPTH = 3.0
#: No player is alive (or active) this many days after installing. A warm-up of at least this length makes
#: the active population stationary from start_date on.
#: (+2: the quit is decided from yesterday's state, plus a day of float margin.)
MAX_LIFETIME_DAYS = int(np.ceil(_INTEREST_SPAN_DAYS[1] + _FADE_DEPTH / _FADE_RATE[0])) + 2
_AR_SD = 0.35 / np.sqrt(1 - 0.85**2)  # stationary sd of the AR(1) engagement noise (0.85 * x + 0.35 * eps)
_SPENDER_SHARE = 0.25  # players with a real purchase propensity (the rest buy almost never)
_FRAILTY_SD = 0.5  # unobserved per-player quit propensity (logit sd): churn is learnable, not trivial
_BREAK_INTERCEPT = -3.3  # logit of the daily chance that an average player starts a short break
_ROLLING_WINDOW = 28  # longest feature window of the SQL (sessions_28d, minutes_28d, level_gain_28d)

TABLE_COLUMNS: dict[str, dict[str, str]] = {
    "players": {
        "player_id": "BIGINT",
        "install_date": "DATE",
        "platform": "VARCHAR",
        "country": "VARCHAR",
        "channel": "VARCHAR",
    },
    "sessions": {
        "player_id": "BIGINT",
        "session_date": "DATE",
        "sessions": "INTEGER",
        "minutes": "DOUBLE",
        "level": "INTEGER",
    },
    "purchases": {"player_id": "BIGINT", "purchase_date": "DATE", "amount": "DOUBLE"},
}


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate; frozen so a config can key caches and be logged as-is.

    Player count -- rescaled, not "installs over the whole history": ``n_players`` counts the installs
    WITHIN the window [start_date, end_date()], exactly. The warm-up adds installs at the same daily rate
    before it (``round(n_players * warmup_days / days)`` more players; the players table holds
    ``total_players()`` rows), so the active population per day does not shrink as the warm-up grows and
    stays close to what the same ``n_players`` gave before warm-ups existed: with 182 days, ~0.53 *
    n_players players with a session in the last 28 days on any window day (0.36-0.44 * n_players before,
    growing through the window).
    """

    n_players: int = 20_000  # players installing within the window [start_date, end_date()] (see below)
    days: int = 182  # simulated calendar days from start_date (inclusive start)
    start_date: datetime.date = datetime.date(2026, 1, 5)
    warmup_days: int = 365  # days simulated and written before start_date; >= MAX_LIFETIME_DAYS: steady window
    seed: int = 7
    drift_date: datetime.date | None = None  # from this date on, the drift knobs apply
    covariate_drift: float = 0.0  # share of installs on/after drift_date from the new 'influencer' channel
    concept_drift: float = 0.0  # strength of the change in the behaviour -> churn relation after drift_date

    def end_date(self) -> datetime.date:
        """Last simulated day (inclusive)."""
        return self.start_date + datetime.timedelta(days=self.days - 1)

    def history_start(self) -> datetime.date:
        """First simulated and written day, ``warmup_days`` before ``start_date``: the warehouse starts here."""
        return self.start_date - datetime.timedelta(days=int(self.warmup_days))

    def total_players(self) -> int:
        """Rows of the players table: ``n_players`` window installs plus the warm-up's, at the same daily rate."""
        return int(self.n_players) + int(round(int(self.n_players) * int(self.warmup_days) / int(self.days)))

    def validate(self) -> None:
        """Fail early, naming the field, so a bad run config never produces a silently odd warehouse."""
        if isinstance(self.n_players, bool) or not isinstance(self.n_players, (int, np.integer)):
            raise ValueError(f"n_players must be an int, got {self.n_players!r}")
        if self.n_players < 1:
            raise ValueError(f"n_players must be >= 1, got {self.n_players}")
        if isinstance(self.days, bool) or not isinstance(self.days, (int, np.integer)):
            raise ValueError(f"days must be an int, got {self.days!r}")
        if self.days < 1:
            raise ValueError(f"days must be >= 1, got {self.days}")
        if isinstance(self.warmup_days, bool) or not isinstance(self.warmup_days, (int, np.integer)):
            raise ValueError(f"warmup_days must be an int, got {self.warmup_days!r}")
        if self.warmup_days < 0:
            raise ValueError(f"warmup_days must be >= 0, got {self.warmup_days}")
        if not isinstance(self.start_date, datetime.date) or isinstance(self.start_date, datetime.datetime):
            raise ValueError(f"start_date must be a datetime.date, got {self.start_date!r}")
        for knob in ("covariate_drift", "concept_drift"):
            value = getattr(self, knob)
            if not isinstance(value, (int, float, np.floating, np.integer)) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{knob} must be a number in [0, 1], got {value!r}")
        if self.drift_date is not None and (
            not isinstance(self.drift_date, datetime.date) or isinstance(self.drift_date, datetime.datetime)
        ):
            raise ValueError(f"drift_date must be a datetime.date or None, got {self.drift_date!r}")
        if self.covariate_drift > 0 or self.concept_drift > 0:
            if self.drift_date is None:
                raise ValueError("drift_date is required when covariate_drift or concept_drift > 0")
            if not self.start_date <= self.drift_date <= self.end_date():
                raise ValueError(
                    f"drift_date {self.drift_date} is outside the simulated window "
                    f"[{self.start_date}, {self.end_date()}]"
                )


@dataclass(frozen=True)
class _HazardCoefficients:
    """Daily quit hazard (logit scale) as a function of SQL-visible state; one set before, one after drift."""

    intercept: float = -5.5
    newness: float = 1.4  # * exp(-tenure/7): new players quit more
    trend: float = -1.3  # * log-ratio of recent (7d) vs 28d daily minutes: a falling trend raises the hazard
    recency: float = 0.08  # * min(days since last session, 10)
    activity: float = -0.18  # * active days in the last 7
    spend: float = -0.8  # * log1p(spend_total): spenders quit less (before concept drift)
    android: float = 0.3  # weak before drift
    plateau: float = 0.0  # * (active but no level gain in 28d): irrelevant before drift


_BASE_HAZARD = _HazardCoefficients()


# Change of each hazard coefficient at concept_drift = 1 (scaled linearly by the knob). Chosen so that what a
# pre-drift model leans on is reversed, not merely weakened: a model that only missed a new effect would
# still rank well, and the drift scenario must make the champion measurably worse.
_CONCEPT_DRIFT_DELTA: dict[str, float] = {
    "intercept": -2.3,  # keeps the overall churn label rate roughly where it was
    "newness": -1.4,  # better onboarding: new players no longer quit more
    "trend": 2.0,  # a falling trend stops warning; a rising one (binge, then burnout) now does
    "activity": 0.8,  # heavy recent play no longer protects (burnout)
    "spend": 3.0,  # spend turns from protective to harmful (e.g. a resented monetisation change)
    "android": -2.5,  # the weak android effect flips into a strong iOS one (e.g. a broken iOS release)
    "plateau": 3.0,  # players stuck on a level start to quit
}


def _drifted_hazard(strength: float) -> _HazardCoefficients:
    """The post-drift relation. Linear in strength so 0 is no change and 1 is the full change."""
    c = float(strength)
    return dataclasses.replace(
        _BASE_HAZARD,
        **{name: getattr(_BASE_HAZARD, name) + c * delta for name, delta in _CONCEPT_DRIFT_DELTA.items()},
    )


def _level_from_xp(xp: np.ndarray) -> np.ndarray:
    """Levels get slower to climb (sqrt curve), so long-tenure players plateau as in real games."""
    return (1 + np.floor(np.sqrt(xp / 12.0))).astype(np.int32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _day_index(config: SimulationConfig, day: datetime.date | None) -> int | None:
    """Index of ``day`` in the simulation loop, whose day 0 is ``history_start()``."""
    return None if day is None else (day - config.history_start()).days


def simulate_with_truth(config: SimulationConfig) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Simulate and also return the latent per-player truth (quit date, spender flag, baseline engagement).

    The truth frame is not part of the warehouse; it lets tests check invariants such as "nothing after
    quitting" that the observable tables alone cannot.
    """
    config.validate()
    rng = np.random.default_rng(config.seed)
    warmup, window = int(config.warmup_days), int(config.days)
    n_days = warmup + window  # loop day 0 is history_start(); loop day `warmup` is start_date
    n = config.total_players()
    n_warmup = n - int(config.n_players)
    drift_day = _day_index(config, config.drift_date)

    # --- who installs when, and with which attributes ------------------------------------------------------
    # Exactly n_players install uniformly over the window and n_warmup uniformly over the warm-up: one steady
    # inflow. Without a warm-up, the old launch: LAUNCH_COHORT_SHARE of the players install on day 0.
    launch = rng.random(n) < (LAUNCH_COHORT_SHARE if warmup == 0 else 0.0)
    install_day = np.where(
        np.arange(n) < n_warmup,
        rng.integers(0, max(warmup, 1), size=n),
        rng.integers(warmup, n_days, size=n),
    )
    install_day = np.where(launch, 0, install_day)
    install_day.sort()  # player_id order follows install order, like an auto-increment key
    platform = rng.choice(len(PLATFORMS), size=n, p=PLATFORM_PROBS)
    country = rng.choice(len(COUNTRIES), size=n, p=COUNTRY_PROBS)
    channel = rng.choice(len(CHANNELS), size=n, p=CHANNEL_PROBS)
    influencer_draw = rng.random(n)  # drawn even without drift so the random stream (and history) is shared
    if drift_day is not None and config.covariate_drift > 0:
        drifted_install = (install_day >= drift_day) & (influencer_draw < config.covariate_drift)
        channel = np.where(drifted_install, len(CHANNELS), channel)
    is_influencer = channel == len(CHANNELS)

    spender = rng.random(n) < np.where(platform == 0, _SPENDER_SHARE + 0.02, _SPENDER_SHARE - 0.02)
    # Influencer players: lower and more dispersed engagement, but the same quit relation to behaviour.
    engagement_sd = np.where(is_influencer, 1.2, 0.9)
    base_engagement = (
        0.35
        + _PLATFORM_ENGAGEMENT[platform]
        + _CHANNEL_ENGAGEMENT[channel]
        + 0.3 * spender
        + engagement_sd * rng.standard_normal(n)
    )
    decliner = rng.random(n) < np.where(is_influencer, _DECLINER_SHARE + 0.2, _DECLINER_SHARE)
    slope = np.where(decliner, -rng.uniform(*_DECLINER_SLOPE, n), 0.004 * rng.standard_normal(n))
    purchase_rate = np.where(spender, np.exp(np.log(0.06) + 0.7 * rng.standard_normal(n)), 0.002)
    frailty = _FRAILTY_SD * rng.standard_normal(n)  # unobserved: the noise that keeps churn from being trivial
    is_android = (platform == 1).astype(np.float64)
    interest_span = rng.uniform(*_INTEREST_SPAN_DAYS, n)
    fade_rate = rng.uniform(*_FADE_RATE, n)
    ar_noise = _AR_SD * rng.standard_normal(n)  # AR(1) noise starts in its stationary distribution

    # --- daily state, per player (only the slice of possibly-alive players is touched each day) -------------
    quit_day = np.full(n, -1, dtype=np.int64)
    quit_mask = np.zeros(n, dtype=bool)
    break_until = np.zeros(n, dtype=np.int64)  # a player on a break (not a quit) skips days < break_until
    xp = np.zeros(n)
    level = np.ones(n, dtype=np.int32)
    spend_total = np.zeros(n)
    days_since_session = np.zeros(n)
    minutes_ring = np.zeros((_ROLLING_WINDOW, n))
    active_ring = np.zeros((_ROLLING_WINDOW, n), dtype=np.int8)
    level_ring = np.ones((_ROLLING_WINDOW, n), dtype=np.int32)  # level at end of day d-28 sits in slot d%28
    minutes_7d = np.zeros(n)
    minutes_28d = np.zeros(n)
    active_7d = np.zeros(n)

    session_parts: list[tuple[np.ndarray, ...]] = []
    purchase_parts: list[tuple[np.ndarray, ...]] = []

    drifted_hazard = _drifted_hazard(config.concept_drift)
    for day in range(n_days):
        # Players are sorted by install day: [lo, hi) holds everyone installed and not certainly gone (installed
        # MAX_LIFETIME_DAYS or more ago). Arrays below are views on that slice; `idx`-style indices are local.
        hi = int(np.searchsorted(install_day, day, side="right"))
        lo = int(np.searchsorted(install_day, day - MAX_LIFETIME_DAYS, side="left"))
        live = slice(lo, hi)
        m = hi - lo
        tenure = day - install_day[live]
        drifted = drift_day is not None and config.concept_drift > 0 and day >= drift_day
        coef = drifted_hazard if drifted else _BASE_HAZARD
        quit_now = quit_mask[live]  # view: writes go to quit_mask
        minutes_7d_l, minutes_28d_l, active_7d_l = minutes_7d[live], minutes_28d[live], active_7d[live]
        level_l, spend_l, since_l = level[live], spend_total[live], days_since_session[live]
        span_l, fade_rate_l = interest_span[live], fade_rate[live]

        # 1) quitting, decided from the state through yesterday (what a snapshot at yesterday would see)
        idx = np.flatnonzero(~quit_now & (tenure >= 1))
        if idx.size:
            prev_tenure = tenure[idx] - 1
            rate_7d = minutes_7d_l[idx] / np.minimum(7, prev_tenure + 1)
            rate_28d = minutes_28d_l[idx] / np.minimum(_ROLLING_WINDOW, prev_tenure + 1)
            trend = np.log1p(rate_7d) - np.log1p(rate_28d)
            level_gain_28d = level_l[idx] - level_ring[day % _ROLLING_WINDOW, live][idx]  # vs end of day-28
            plateau = (active_7d_l[idx] >= 2) & (level_gain_28d == 0) & (prev_tenure >= 14)
            logit = (
                coef.intercept
                + coef.newness * np.exp(-prev_tenure / 7.0)
                + coef.trend * trend
                + coef.recency * np.minimum(since_l[idx], 10)
                + coef.activity * active_7d_l[idx]
                + coef.spend * np.log1p(spend_l[idx])
                + coef.android * is_android[live][idx]
                + coef.plateau * plateau
                + frailty[live][idx]
            )
            faded_out = fade_rate_l[idx] * np.maximum(0.0, prev_tenure - span_l[idx]) >= _FADE_DEPTH
            quits = idx[(rng.random(idx.size) < _sigmoid(logit)) | faded_out]
            quit_now[quits] = True
            quit_day[lo + quits] = day

        # 2) engagement and play
        alive = ~quit_now
        ar = ar_noise[live]
        ar *= 0.85
        ar += 0.35 * rng.standard_normal(m)
        fade = fade_rate_l * np.maximum(0.0, tenure - span_l)
        engagement = base_engagement[live] + slope[live] * tenure - fade + ar
        play_prob = np.where(tenure == 0, 0.95, _sigmoid(1.2 * engagement))
        # short breaks (3-13 days, then back): a long silence is not proof of churn, so recency alone
        # cannot separate quitters from pausers; the quit hazard's other terms must do it
        breaks = break_until[live]
        free = alive & (breaks <= day) & (tenure >= 1)
        starts_break = free & (rng.random(m) < _sigmoid(_BREAK_INTERCEPT - 0.5 * engagement))
        breaks[starts_break] = day + rng.integers(3, 14, size=m)[starts_break]
        plays = alive & (breaks <= day) & (rng.random(m) < play_prob)
        local_players = np.flatnonzero(plays)
        players_today = lo + local_players
        eng_today = engagement[local_players]
        n_sessions = 1 + rng.poisson(0.8 * np.exp(0.35 * np.clip(eng_today, -3, 3)))
        minutes = rng.gamma(2.0 * n_sessions, 5.0 * np.exp(0.25 * np.clip(eng_today, -3, 3)))
        xp[players_today] += minutes
        level[players_today] = _level_from_xp(xp[players_today])

        n_purchases = rng.poisson(purchase_rate[players_today] * (1.0 + 0.3 * np.clip(eng_today, 0, 3)))
        if n_purchases.any():
            buyers = np.repeat(players_today, n_purchases)
            amounts = _PRICE_POINTS[rng.choice(len(_PRICE_POINTS), size=buyers.size, p=_PRICE_PROBS)]
            np.add.at(spend_total, buyers, amounts)
            purchase_parts.append((buyers, np.full(buyers.size, day, dtype=np.int32), amounts))

        session_parts.append(
            (
                players_today,
                np.full(players_today.size, day, dtype=np.int32),
                n_sessions.astype(np.int32),
                minutes,
                level[players_today].copy(),
            )
        )

        # 3) roll the windows forward (slot day%28 held day-28; slot (day-7)%28 holds day-7). A player outside
        # the slice on a past day had no activity then, and the ring slots still hold their zero (level 1) start.
        slot = day % _ROLLING_WINDOW
        today_minutes = np.zeros(m)
        today_minutes[local_players] = minutes
        today_active = plays.astype(np.int8)
        minutes_7d_l += today_minutes
        active_7d_l += today_active
        if day >= 7:
            leaving_7 = (day - 7) % _ROLLING_WINDOW
            minutes_7d_l -= minutes_ring[leaving_7, live]
            active_7d_l -= active_ring[leaving_7, live]
        minutes_28d_l += today_minutes - minutes_ring[slot, live]
        np.maximum(minutes_7d_l, 0.0, out=minutes_7d_l)  # float round-off must not go negative
        np.maximum(minutes_28d_l, 0.0, out=minutes_28d_l)
        minutes_ring[slot, live] = today_minutes
        active_ring[slot, live] = today_active
        level_ring[slot, live] = level_l
        since_l += 1.0
        since_l[local_players] = 0.0

    tables = _assemble_tables(
        config, install_day, platform, country, channel, session_parts, purchase_parts
    )
    start = np.datetime64(config.history_start(), "D")
    truth = pd.DataFrame(
        {
            "player_id": np.arange(1, n + 1, dtype=np.int64),
            "quit_date": pd.Series(
                np.where(quit_day >= 0, start + quit_day.astype("timedelta64[D]"), np.datetime64("NaT"))
            ).astype("datetime64[ns]"),
            "spender": spender,
            "base_engagement": base_engagement,
            "slope": slope,
            "interest_span": interest_span,
        }
    )
    return tables, truth


def _dates(start: datetime.date, day_offsets: np.ndarray) -> np.ndarray:
    return (np.datetime64(start, "D") + day_offsets.astype("timedelta64[D]")).astype("datetime64[ns]")


def _assemble_tables(
    config: SimulationConfig,
    install_day: np.ndarray,
    platform: np.ndarray,
    country: np.ndarray,
    channel: np.ndarray,
    session_parts: list[tuple[np.ndarray, ...]],
    purchase_parts: list[tuple[np.ndarray, ...]],
) -> dict[str, pd.DataFrame]:
    """Turn per-day arrays into the warehouse frames, sorted by player then date like the source system."""
    n = install_day.size
    players = pd.DataFrame(
        {
            "player_id": np.arange(1, n + 1, dtype=np.int64),
            "install_date": _dates(config.history_start(), install_day),
            "platform": np.array(PLATFORMS, dtype=object)[platform],
            "country": np.array(COUNTRIES, dtype=object)[country],
            "channel": np.array(ALL_CHANNELS, dtype=object)[channel],
        }
    )

    def concat(parts: list[tuple[np.ndarray, ...]], column: int, dtype: str) -> np.ndarray:
        return np.concatenate([p[column] for p in parts]).astype(dtype) if parts else np.array([], dtype=dtype)

    s_player, s_day = concat(session_parts, 0, "int64"), concat(session_parts, 1, "int32")
    order = np.lexsort((s_day, s_player))
    sessions = pd.DataFrame(
        {
            "player_id": s_player[order] + 1,
            "session_date": _dates(config.history_start(), s_day[order]),
            "sessions": concat(session_parts, 2, "int32")[order],
            "minutes": np.round(concat(session_parts, 3, "float64")[order], 2),
            "level": concat(session_parts, 4, "int32")[order],
        }
    )
    p_player, p_day = concat(purchase_parts, 0, "int64"), concat(purchase_parts, 1, "int32")
    order = np.lexsort((p_day, p_player))
    purchases = pd.DataFrame(
        {
            "player_id": p_player[order] + 1,
            "purchase_date": _dates(config.history_start(), p_day[order]),
            "amount": concat(purchase_parts, 2, "float64")[order],
        }
    )
    return {"players": players, "sessions": sessions, "purchases": purchases}


def simulate(config: SimulationConfig) -> dict[str, pd.DataFrame]:
    """Deterministic raw warehouse frames (players, sessions, purchases) for this config."""
    tables, _ = simulate_with_truth(config)
    return tables


def _write_table(connection, name: str, frame: pd.DataFrame) -> None:
    """Create one table with the declared SQL types (dates cast to DATE, not TIMESTAMP) and load the frame."""
    columns = TABLE_COLUMNS[name]
    connection.execute(
        f"CREATE TABLE {name} ({', '.join(f'{col} {sql_type}' for col, sql_type in columns.items())})"
    )
    connection.register("_frame_to_load", frame)
    try:
        select = ", ".join(f"CAST({col} AS {sql_type})" for col, sql_type in columns.items())
        connection.execute(f"INSERT INTO {name} SELECT {select} FROM _frame_to_load")
    finally:
        connection.unregister("_frame_to_load")


def write_warehouse(tables: dict[str, pd.DataFrame], path: str | Path) -> Path:
    """Write the frames to a DuckDB file atomically: readers see the old file or the complete new one, never
    a half-written warehouse (build in a temp file in the same folder, then os.replace)."""
    import duckdb

    missing = set(TABLE_COLUMNS) - set(tables)
    if missing:
        raise ValueError(f"tables is missing {sorted(missing)}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        connection = duckdb.connect(str(temp))
        try:
            for name in TABLE_COLUMNS:
                _write_table(connection, name, tables[name])
            connection.execute("CHECKPOINT")
        finally:
            connection.close()
        os.replace(temp, target)
    except BaseException:
        for leftover in (temp, temp.with_name(temp.name + ".wal")):
            leftover.unlink(missing_ok=True)
        raise
    return target


def simulate_to_duckdb(config: SimulationConfig, path: str | Path) -> dict:
    """Simulate and write in one step; the summary is small and JSON-safe so it can become asset metadata."""
    started = time.perf_counter()
    tables = simulate(config)
    written = write_warehouse(tables, path)
    return {
        "path": str(written),
        "players": int(len(tables["players"])),
        "session_rows": int(len(tables["sessions"])),
        "purchase_rows": int(len(tables["purchases"])),
        "history_start": config.history_start().isoformat(),
        "start": config.start_date.isoformat(),
        "end": config.end_date().isoformat(),
        "seconds": round(time.perf_counter() - started, 3),
    }
