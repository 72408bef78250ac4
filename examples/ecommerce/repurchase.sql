-- Repurchase features and labels of an online shop, for a set of snapshot dates (the example's query script).
--
-- Tables (examples/ecommerce/generate.py writes them as Parquet; the warehouse exposes each as a view):
--   customers(customer_id, signup_date, region, acquisition, newsletter)
--   orders(order_id, customer_id, order_date, amount, items, return_date)   return_date NULL: kept
--
-- The contract (README "Bring your own data"):
--   parameters in, bound by DuckDB: $as_of_date DATE (read nothing after it), $snapshot_dates DATE[],
--     $label_horizon_days INTEGER
--   columns out: entity_id, as_of_date (= the snapshot date t), features..., label
--     label = 1 when the customer placed no order in (t, t + horizon], 0 when they did, NULL when
--     t + horizon > $as_of_date (the horizon is not over yet).
--   one row per (entity_id, as_of_date); a snapshot's rows depend on t and $as_of_date only.
-- Population at t: customers signed up on or before t with an order in the 180 days up to t (t - 179 .. t).
-- Features look back at most 365 days; a return counts from its return_date on (not known before).
-- Money is summed in whole cents (an integer sum is exact whatever order DuckDB's threads add it in, so the
-- same data gives the same dataset to the bit).
WITH snapshots AS (
    SELECT CAST(unnest($snapshot_dates) AS DATE) AS snapshot_date
),
past_orders AS (
    SELECT o.customer_id, n.snapshot_date, o.order_date, o.return_date, o.items,
           CAST(round(o.amount * 100) AS BIGINT) AS cents,
           date_diff('day', o.order_date, n.snapshot_date) AS age_days
    FROM orders AS o
    JOIN snapshots AS n
      ON o.order_date <= n.snapshot_date
     AND o.order_date > n.snapshot_date - 365
    WHERE o.order_date <= $as_of_date
),
history AS (
    SELECT customer_id, snapshot_date,
           max(order_date)                                                         AS last_order_date,
           min(order_date)                                                         AS first_order_date_365d,
           count(*) FILTER (WHERE age_days < 30)                                   AS orders_30d,
           count(*) FILTER (WHERE age_days < 90)                                   AS orders_90d,
           count(*)                                                                AS orders_365d,
           sum(cents) FILTER (WHERE age_days < 90)                                 AS cents_90d,
           sum(cents)                                                              AS cents_365d,
           CAST(sum(items) FILTER (WHERE age_days < 90) AS BIGINT)                 AS items_90d,
           count(*) FILTER (WHERE return_date <= snapshot_date
                              AND return_date > snapshot_date - 90)                AS returns_90d,
           count(*) FILTER (WHERE return_date <= snapshot_date)                    AS returns_365d
    FROM past_orders
    GROUP BY customer_id, snapshot_date
    HAVING max(order_date) > snapshot_date - 180
),
-- (customer, t) pairs with an order in (t, t + horizon], for the snapshots whose horizon is over by $as_of_date
repurchased AS (
    SELECT DISTINCT o.customer_id, n.snapshot_date
    FROM orders AS o
    JOIN snapshots AS n
      ON o.order_date > n.snapshot_date
     AND o.order_date <= n.snapshot_date + $label_horizon_days
    WHERE o.order_date <= $as_of_date
      AND n.snapshot_date + $label_horizon_days <= $as_of_date
)
SELECT
    h.customer_id                                                    AS entity_id,
    h.snapshot_date                                                  AS as_of_date,
    c.region,
    c.acquisition,
    CAST(c.newsletter AS INTEGER)                                    AS newsletter,
    date_diff('day', c.signup_date, h.snapshot_date)                 AS tenure_days,
    date_diff('day', h.last_order_date, h.snapshot_date)             AS days_since_last_order,
    h.orders_30d,
    h.orders_90d,
    h.orders_365d,
    coalesce(h.cents_90d, 0) / 100.0                                 AS spend_90d,
    h.cents_365d / 100.0                                             AS spend_365d,
    h.cents_365d / 100.0 / h.orders_365d                             AS avg_order_value_365d,
    coalesce(h.items_90d, 0)                                         AS items_90d,
    h.returns_90d,
    h.returns_365d / h.orders_365d                                   AS return_rate_365d,
    -- orders of the last 90 days against a quarter of the year's: below 1 when the customer slows down
    h.orders_90d * 4.0 / h.orders_365d                               AS order_trend,
    -- mean days between orders over the year; NULL with a single order
    CASE WHEN h.orders_365d > 1
         THEN date_diff('day', h.first_order_date_365d, h.last_order_date) / (h.orders_365d - 1.0) END
                                                                     AS mean_days_between_orders,
    CASE
        WHEN h.snapshot_date + $label_horizon_days > $as_of_date THEN NULL
        WHEN r.customer_id IS NULL THEN 1
        ELSE 0
    END                                                              AS label
FROM history AS h
JOIN customers AS c ON c.customer_id = h.customer_id AND c.signup_date <= h.snapshot_date
LEFT JOIN repurchased AS r ON r.customer_id = h.customer_id AND r.snapshot_date = h.snapshot_date
-- no ORDER BY: the pipeline sorts the rows by (as_of_date, entity_id) itself
