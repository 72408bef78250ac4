-- Churn features and labels for a set of snapshot dates: the default "query script".
--
-- Contract (a user's own query must meet the same one; see README "Bring your own data"):
--   parameters in (bound, never formatted into the text):
--     $as_of_date          DATE    the refresh date D; no row after it may be read
--     $snapshot_dates      DATE[]  the snapshot dates t to compute rows for (all <= D)
--     $label_horizon_days  INTEGER churn = no session in (t, t + horizon]
--   columns out: entity_id, as_of_date (= t), feature columns..., label
--     label is 1/0 when t + horizon <= D (complete), NULL otherwise.
--   one row per (entity_id, as_of_date).
-- Population at t: players installed on or before t with a session in [t - 27, t].
WITH snapshots AS (
    SELECT CAST(unnest($snapshot_dates) AS DATE) AS snapshot_date
),
recent AS (
    SELECT s.player_id, n.snapshot_date,
           sum(s.sessions) FILTER (WHERE s.session_date > n.snapshot_date - 7)  AS sessions_7d,
           sum(s.sessions)                                                       AS sessions_28d,
           sum(s.minutes) FILTER (WHERE s.session_date > n.snapshot_date - 7)   AS minutes_7d,
           sum(s.minutes)                                                        AS minutes_28d,
           count(*) FILTER (WHERE s.session_date > n.snapshot_date - 7)         AS active_days_7d,
           count(*)                                                              AS active_days_28d,
           max(s.session_date)                                                   AS last_session_date,
           max(s.level)                                                          AS level,
           max(s.level) - min(s.level)                                           AS level_gain_28d
    FROM sessions AS s
    JOIN snapshots AS n
      ON s.session_date > n.snapshot_date - 28 AND s.session_date <= n.snapshot_date
    WHERE s.session_date <= $as_of_date
    GROUP BY s.player_id, n.snapshot_date
),
spend AS (
    SELECT p.player_id, n.snapshot_date,
           count(*) FILTER (WHERE p.purchase_date > n.snapshot_date - 28)        AS purchases_28d,
           coalesce(sum(p.amount) FILTER (WHERE p.purchase_date > n.snapshot_date - 28), 0) AS spend_28d,
           sum(p.amount)                                                          AS spend_total,
           max(p.purchase_date)                                                   AS last_purchase_date
    FROM purchases AS p
    JOIN snapshots AS n ON p.purchase_date <= n.snapshot_date
    WHERE p.purchase_date <= $as_of_date
    GROUP BY p.player_id, n.snapshot_date
),
future AS (
    SELECT s.player_id, n.snapshot_date, count(*) AS future_active_days
    FROM sessions AS s
    JOIN snapshots AS n
      ON s.session_date > n.snapshot_date
     AND s.session_date <= n.snapshot_date + $label_horizon_days
    WHERE s.session_date <= $as_of_date
    GROUP BY s.player_id, n.snapshot_date
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
    coalesce(r.minutes_7d, 0.0)                             AS minutes_7d,
    r.minutes_28d,
    r.active_days_7d,
    r.active_days_28d,
    coalesce(r.minutes_7d, 0.0) * 4 / (r.minutes_28d + 1)   AS minutes_trend,
    r.level,
    r.level_gain_28d,
    coalesce(sp.purchases_28d, 0)                           AS purchases_28d,
    coalesce(sp.spend_28d, 0.0)                             AS spend_28d,
    coalesce(sp.spend_total, 0.0)                           AS spend_total,
    date_diff('day', sp.last_purchase_date, r.snapshot_date) AS days_since_last_purchase,
    CASE
        WHEN r.snapshot_date + $label_horizon_days > $as_of_date THEN NULL
        WHEN coalesce(f.future_active_days, 0) = 0 THEN 1
        ELSE 0
    END                                                     AS label
FROM recent AS r
JOIN players AS pl ON pl.player_id = r.player_id AND pl.install_date <= r.snapshot_date
LEFT JOIN spend  AS sp ON sp.player_id = r.player_id AND sp.snapshot_date = r.snapshot_date
LEFT JOIN future AS f  ON f.player_id  = r.player_id AND f.snapshot_date  = r.snapshot_date
ORDER BY as_of_date, entity_id
