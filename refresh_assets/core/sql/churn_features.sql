-- Churn features and labels for a set of snapshot dates: the default "query script".
--
-- Contract (a user's own query must meet the same one; see README "Bring your own data"):
--   parameters in (bound, never formatted into the text):
--     $as_of_date          DATE    the refresh date D; no row after it may be read
--     $snapshot_dates      DATE[]  the snapshot dates t to compute rows for (all <= D)
--     $label_horizon_days  INTEGER churn = no session in (t, t + horizon]
--   columns out: entity_id, as_of_date (= t), feature columns..., label
--     label is 1/0 when t + horizon <= D (complete), NULL otherwise.
--   one row per (entity_id, as_of_date), in any order (the pipeline sorts them).
-- Population at t: players installed on or before t with a session in [t - 27, t].
WITH snapshots AS (
    SELECT CAST(unnest($snapshot_dates) AS DATE) AS snapshot_date
),
-- The 28 days of each snapshot's window, one row per (snapshot, day): sessions join it on their date (an equi-join
-- on a table of 28 x snapshots rows, cheaper than testing every session against every window's two bounds).
window_days AS (
    SELECT n.snapshot_date, CAST(n.snapshot_date - CAST(k AS INTEGER) AS DATE) AS day, k < 7 AS in_7d
    FROM snapshots AS n, range(0, 28) AS r(k)
),
-- MATERIALIZED: read twice, by the feature rows and by the labels below (computed once)
recent AS MATERIALIZED (
    -- minutes (and amounts below) summed in whole millionths: every partial sum is a whole number, exact in a DOUBLE
    -- below 2^53 (9 * 10^9 minutes in a window), so the total does not depend on the order in which DuckDB's
    -- threads add their partial sums and the same data gives the same dataset to the bit (summing the raw
    -- doubles, its last bits varied from run to run). Values keep 6 decimals. As fast as a plain sum; DECIMAL
    -- would be exact too but needs 128-bit accumulators.
    -- session counts summed as DOUBLE: exact for whole numbers below 2^53, and the float64 column the HUGEINT of
    -- an integer sum became anyway, without 128-bit accumulators in the widest aggregation of the query
    SELECT s.player_id, n.snapshot_date,
           sum(CAST(s.sessions AS DOUBLE)) FILTER (WHERE n.in_7d)                AS sessions_7d,
           sum(CAST(s.sessions AS DOUBLE))                                       AS sessions_28d,
           sum(round(s.minutes * 1e6)) FILTER (WHERE n.in_7d)                    AS minutes_7d,
           sum(round(s.minutes * 1e6))                                           AS minutes_28d,
           count(*) FILTER (WHERE n.in_7d)                                       AS active_days_7d,
           count(*)                                                              AS active_days_28d,
           max(s.session_date)                                                   AS last_session_date,
           max(s.level)                                                          AS level,
           max(s.level) - min(s.level)                                           AS level_gain_28d
    FROM sessions AS s
    JOIN window_days AS n ON s.session_date = n.day
    WHERE s.session_date <= $as_of_date
    GROUP BY s.player_id, n.snapshot_date
),
-- Purchases older than every 28-day window (on or before the first snapshot - 28) count only towards
-- spend_total and last_purchase_date, and in every snapshot alike: one row per player holds them, joined once
-- to the output rows, so only the purchases inside the windows are joined to the snapshots below.
old_spend AS (
    SELECT p.player_id, max(p.purchase_date) AS purchase_date, sum(round(p.amount * 1e6)) AS amount
    FROM purchases AS p
    WHERE p.purchase_date <= $as_of_date
      AND p.purchase_date <= (SELECT min(snapshot_date) FROM snapshots) - 28
    GROUP BY p.player_id
),
purchase_rows AS (
    SELECT p.player_id, p.purchase_date, p.amount
    FROM purchases AS p
    WHERE p.purchase_date <= $as_of_date
      AND p.purchase_date > (SELECT min(snapshot_date) FROM snapshots) - 28
),
spend AS (
    SELECT p.player_id, n.snapshot_date,
           count(*) FILTER (WHERE p.purchase_date > n.snapshot_date - 28)        AS purchases_28d,
           sum(round(p.amount * 1e6)) FILTER (WHERE p.purchase_date > n.snapshot_date - 28) AS spend_28d,
           sum(round(p.amount * 1e6))                                  AS spend_total,
           max(p.purchase_date)                                                   AS last_purchase_date
    FROM purchase_rows AS p
    JOIN snapshots AS n ON p.purchase_date <= n.snapshot_date
    GROUP BY p.player_id, n.snapshot_date
),
-- The label of (player, t) is 1 when the player has no session in (t, t + horizon]. When t + horizon is itself a
-- snapshot and the horizon fits in the 28-day window, recent already knows: a session in (t, t + horizon] is one
-- in the window of t + horizon after t, i.e. last_session_date > t there ("renewed" below, no extra scan). Only
-- the other labelled snapshots (the gap before the holdout, say) scan their horizon here: the (player, t) pairs
-- with a session in (t, t + horizon], probed by a mark join on two narrow columns.
renewed AS (
    SELECT player_id, snapshot_date - $label_horizon_days AS labelled_date
    FROM recent
    WHERE last_session_date > snapshot_date - $label_horizon_days
),
future AS (
    SELECT DISTINCT s.player_id, n.snapshot_date
    FROM sessions AS s
    JOIN snapshots AS n
      ON s.session_date > n.snapshot_date
     AND s.session_date <= n.snapshot_date + $label_horizon_days
    WHERE s.session_date <= $as_of_date AND s.player_id IS NOT NULL  -- NOT IN below: no NULL in the set
      AND n.snapshot_date + $label_horizon_days <= $as_of_date
      AND NOT ($label_horizon_days <= 28 AND list_contains($snapshot_dates, n.snapshot_date + $label_horizon_days))
)
SELECT
    r.player_id                                             AS entity_id,
    r.snapshot_date                                         AS as_of_date,
    date_diff('day', pl.install_date, r.snapshot_date)      AS tenure_days,
    pl.platform,
    pl.country,
    pl.channel,
    date_diff('day', r.last_session_date, r.snapshot_date)  AS days_since_last_session,
    coalesce(r.sessions_7d, 0)                              AS sessions_7d,
    r.sessions_28d,
    coalesce(r.minutes_7d, 0) / 1e6                         AS minutes_7d,
    r.minutes_28d / 1e6                                     AS minutes_28d,
    r.active_days_7d,
    r.active_days_28d,
    (coalesce(r.minutes_7d, 0) / 1e6) * 4 / (r.minutes_28d / 1e6 + 1) AS minutes_trend,
    r.level,
    r.level_gain_28d,
    coalesce(sp.purchases_28d, 0)                           AS purchases_28d,
    coalesce(sp.spend_28d, 0) / 1e6                          AS spend_28d,
    (coalesce(sp.spend_total, 0) + coalesce(os.amount, 0)) / 1e6 AS spend_total,
    date_diff('day', greatest(sp.last_purchase_date, os.purchase_date), r.snapshot_date) AS days_since_last_purchase,
    CASE
        WHEN r.snapshot_date + $label_horizon_days > $as_of_date THEN NULL
        WHEN $label_horizon_days <= 28 AND list_contains($snapshot_dates, r.snapshot_date + $label_horizon_days)
            THEN CASE WHEN nx.player_id IS NULL THEN 1 ELSE 0 END
        WHEN (r.player_id, r.snapshot_date) NOT IN (SELECT (player_id, snapshot_date) FROM future) THEN 1
        ELSE 0
    END                                                     AS label
FROM recent AS r
JOIN players AS pl ON pl.player_id = r.player_id AND pl.install_date <= r.snapshot_date
LEFT JOIN spend  AS sp ON sp.player_id = r.player_id AND sp.snapshot_date = r.snapshot_date
LEFT JOIN old_spend AS os ON os.player_id = r.player_id
LEFT JOIN renewed AS nx ON nx.player_id = r.player_id AND nx.labelled_date = r.snapshot_date
-- no ORDER BY: the pipeline sorts the rows by (as_of_date, entity_id) itself, whatever order a query leaves them in
