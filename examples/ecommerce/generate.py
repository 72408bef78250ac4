"""A seeded online shop's history, written as a folder of Parquet files: the example's raw warehouse.

    python examples/ecommerce/generate.py --out data/ecommerce/warehouse [--customers 6000] [--seed 11]

writes

    <out>/customers.parquet      customer_id, signup_date, region, acquisition, newsletter
    <out>/orders/orders_<year>.parquet   order_id, customer_id, order_date, amount, items, return_date

from 2016-01-01 to 2019-12-31 and prints a one-line summary. numpy, pandas and duckdb only; nothing is
downloaded. The same --customers and --seed give the same files.

How the shop behaves (so that a model can learn something, but not everything):

* Customers sign up at a slowly growing rate over the four years (``region`` north/south/east/west,
  ``acquisition`` search/social/referral/email, an opt-in ``newsletter`` flag) and place their first order
  on the day they sign up.
* An active customer orders on a day with a personal rate (about one order a month on average; referral
  and newsletter customers more often), which fades for some customers as they age: the fall shows in
  their recent vs yearly order counts. Basket value and item count are personal too; some orders are
  returned, 3 to 20 days after the order (``return_date``, NULL when kept).
* Each day an active customer lapses for good with a hazard of what the shop can see: days since the last
  order, orders in the last 90 days, returns in the last 90 days (a return raises it once it happened),
  tenure, acquisition channel and region, plus an unobserved per-customer frailty. A lapsed customer never
  orders again.

A lapse is never observed directly: the example's label is "no order in the next N days", which a lapsed
customer always meets and an active one sometimes meets by chance (a slow buyer), so ROC AUC stays well
below 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

START = dt.date(2016, 1, 1)
END = dt.date(2019, 12, 31)

REGIONS = ("north", "south", "east", "west")
REGION_PROBS = (0.32, 0.28, 0.22, 0.18)
REGION_HAZARD = (0.0, 0.15, -0.1, 0.3)  # logit shift of the daily lapse hazard

ACQUISITIONS = ("search", "social", "referral", "email")
ACQUISITION_PROBS = (0.40, 0.25, 0.20, 0.15)
ACQUISITION_HAZARD = (0.0, 0.45, -0.4, -0.15)
ACQUISITION_RATE = (1.0, 0.85, 1.25, 1.1)  # order rate multiplier


def simulate(n_customers: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(customers, orders) frames of the shop from START to END."""
    rng = np.random.default_rng(seed)
    n_days = (END - START).days + 1

    # sign-ups: a density growing linearly to twice its first value over the four years
    u = rng.random(n_customers)
    signup_day = np.floor(n_days * (np.sqrt(1 + 3 * u) - 1)).astype(np.int64)  # inverse CDF of 1 + x on [0, 1]
    signup_day = np.sort(np.clip(signup_day, 0, n_days - 1))
    region = rng.choice(len(REGIONS), n_customers, p=REGION_PROBS)
    acquisition = rng.choice(len(ACQUISITIONS), n_customers, p=ACQUISITION_PROBS)
    newsletter = rng.random(n_customers) < 0.35

    # latent traits
    rate = rng.gamma(2.0, 1.0 / 2.0, n_customers) / 32.0  # orders per day, mean ~1/32
    rate *= np.asarray(ACQUISITION_RATE)[acquisition] * np.where(newsletter, 1.2, 1.0)
    fade = np.where(rng.random(n_customers) < 0.4, rng.uniform(0.002, 0.008, n_customers), 0.0)  # per day of tenure
    basket = rng.lognormal(np.log(55.0), 0.45, n_customers)
    return_prob = rng.beta(1.5, 11.0, n_customers)
    frailty = rng.normal(0.0, 0.6, n_customers)
    static_hazard = (np.asarray(REGION_HAZARD)[region] + np.asarray(ACQUISITION_HAZARD)[acquisition]
                     - 0.25 * newsletter + frailty)

    alive = np.zeros(n_customers, dtype=bool)
    last_order = np.full(n_customers, -1, dtype=np.int64)
    orders_90 = np.zeros(n_customers)  # exponentially weighted counts with a ~90-day memory
    returns_90 = np.zeros(n_customers)
    decay = np.exp(-1.0 / 90.0)
    pending_returns: dict[int, list[np.ndarray]] = {}  # day -> customers whose return lands that day

    order_customer: list[np.ndarray] = []
    order_day: list[np.ndarray] = []
    order_return: list[np.ndarray] = []
    joined = 0
    for day in range(n_days):
        first = joined
        while joined < n_customers and signup_day[joined] == day:  # sorted: the new ones are the next block
            joined += 1
        alive[first:joined] = True
        orders_90 *= decay
        returns_90 *= decay
        for returned in pending_returns.pop(day, []):
            returns_90[returned] += 1.0

        idx = np.flatnonzero(alive[:joined])
        tenure = day - signup_day[idx]
        p_order = rate[idx] * np.exp(-fade[idx] * tenure)
        buys = idx[(rng.random(idx.size) < p_order) | (signup_day[idx] == day)]
        if buys.size:
            last_order[buys] = day
            orders_90[buys] += 1.0
            returned = rng.random(buys.size) < return_prob[buys]
            lag = rng.integers(3, 21, buys.size)
            ret_day = np.where(returned, day + lag, -1)
            for d in np.unique(ret_day[returned]):
                pending_returns.setdefault(int(d), []).append(buys[ret_day == d])
            order_customer.append(buys)
            order_day.append(np.full(buys.size, day))
            order_return.append(ret_day)

        # lapse hazard of what the shop sees (recency, frequency, returns, tenure) plus frailty
        recency = np.minimum(day - last_order[idx], 150)
        logit = (-7.0 + 0.022 * recency - 0.35 * np.minimum(orders_90[idx], 6.0) + 0.7 * returns_90[idx]
                 + 0.8 * (tenure < 60) + static_hazard[idx])
        lapses = idx[rng.random(idx.size) < 1.0 / (1.0 + np.exp(-logit))]
        alive[lapses] = False

    cust = np.concatenate(order_customer)
    days = np.concatenate(order_day)
    ret_day = np.concatenate(order_return)
    n_orders = cust.size
    items = 1 + rng.poisson(1.3, n_orders)
    amount = np.round(basket[cust] * (0.6 + 0.4 * items) * rng.lognormal(0.0, 0.25, n_orders) / 1.5, 2)
    epoch = np.datetime64(START.isoformat(), "D")
    orders = pd.DataFrame({
        "order_id": np.arange(1, n_orders + 1, dtype=np.int64),
        "customer_id": cust.astype(np.int64) + 100_001,
        "order_date": epoch + days.astype("timedelta64[D]"),
        "amount": amount,
        "items": items.astype(np.int32),
        "return_date": np.where(ret_day >= 0, epoch + ret_day.astype("timedelta64[D]"), np.datetime64("NaT")),
    })
    orders.loc[orders["return_date"] > np.datetime64(END.isoformat()), "return_date"] = pd.NaT  # not yet returned
    customers = pd.DataFrame({
        "customer_id": np.arange(n_customers, dtype=np.int64) + 100_001,
        "signup_date": epoch + signup_day.astype("timedelta64[D]"),
        "region": np.asarray(REGIONS)[region],
        "acquisition": np.asarray(ACQUISITIONS)[acquisition],
        "newsletter": newsletter,
    })
    return customers, orders


def write(customers: pd.DataFrame, orders: pd.DataFrame, out: Path) -> None:
    """customers.parquet and orders/orders_<year>.parquet, dates as Parquet DATE, replacing earlier ones."""
    (out / "orders").mkdir(parents=True, exist_ok=True)
    for old in (out / "orders").glob("orders_*.parquet"):  # a smaller rerun must not leave other years behind
        old.unlink()
    con = duckdb.connect()
    try:
        con.register("customers_frame", customers)
        con.register("orders_frame", orders)
        con.execute(f"""COPY (SELECT customer_id, CAST(signup_date AS DATE) AS signup_date, region, acquisition,
                                     newsletter
                              FROM customers_frame ORDER BY customer_id)
                        TO '{out / 'customers.parquet'}' (FORMAT parquet)""")
        for year in range(START.year, END.year + 1):
            con.execute(f"""COPY (SELECT order_id, customer_id, CAST(order_date AS DATE) AS order_date, amount, items,
                                         CAST(return_date AS DATE) AS return_date
                                  FROM orders_frame WHERE year(order_date) = {year} ORDER BY order_id)
                            TO '{out / 'orders' / f'orders_{year}.parquet'}' (FORMAT parquet)""")
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write customers.parquet and orders/ into")
    parser.add_argument("--customers", type=int, default=6000, help="customers signing up over 2016-2019")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    if args.customers < 100:
        parser.error("--customers must be at least 100")
    t0 = time.perf_counter()
    customers, orders = simulate(args.customers, args.seed)
    out = Path(args.out)
    write(customers, orders, out)
    print(f"wrote {len(customers)} customers and {len(orders)} orders ({START} to {END}, "
          f"{orders['return_date'].notna().mean():.1%} returned) to {out} in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
