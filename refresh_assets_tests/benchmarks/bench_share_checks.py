"""False alarms of the drift check's share checks (NULL share, top-value share) when nothing changed.

    python refresh_assets_tests/benchmarks/bench_share_checks.py [--replicates 200000] [--out data/bench]

Both sides are drawn from the SAME share p (binomial counts at the sizes the drift check sees), so every flag
is a false alarm. Per (sizes, p) it measures how often each rule fires: the two-proportion z-test alone
(p-value < ``DriftSettings.share_alpha``), the minimum change alone (|change| >= ``null_share_delta``), and
both together (the drift check's rule), plus the rate a real 2% -> 3% wobble is flagged on 50,000 rows per
side. It uses ``drift.two_proportion_p_value`` (vectorised here, checked against it on the first draws) and
takes a few seconds. The natural (non-sampling) changes the minimum change must also clear are measured by the
decision study on simulated games (docs/DECISIONS.md, "Broken columns").
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from refresh_assets.core.drift import DEFAULT_SHARE_ALPHA, DEFAULT_SHARE_DELTA, two_proportion_p_value

SIZES = ((1_000, 1_000), (6_000, 2_000), (50_000, 50_000), (1_000_000, 1_000_000), (500, 500), (100, 100))
SHARES = (0.02, 0.1, 0.3, 0.5, 0.7, 0.9)


def p_values(x1: np.ndarray, n1: int, x2: np.ndarray, n2: int) -> np.ndarray:
    """``two_proportion_p_value`` over arrays of counts."""
    from scipy.special import erfc

    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x2 / n2 - x1 / n1) / np.sqrt(variance)
        p = erfc(np.abs(z) / math.sqrt(2))
    return np.where(variance > 0, p, 1.0)


def rates(n1: int, n2: int, share_1: float, share_2: float, replicates: int, delta: float, alpha: float,
          rng: np.random.Generator) -> dict:
    x1 = rng.binomial(n1, share_1, replicates)
    x2 = rng.binomial(n2, share_2, replicates)
    p = p_values(x1, n1, x2, n2)
    for i in range(min(200, replicates)):  # the vectorised form is the drift check's own test
        assert math.isclose(p[i], two_proportion_p_value(int(x1[i]), n1, int(x2[i]), n2), rel_tol=1e-9, abs_tol=1e-15)
    change = np.abs(x2 / n2 - x1 / n1)
    big = change >= delta - 1e-12
    significant = p < alpha
    return {"sizes": [n1, n2], "share": [share_1, share_2], "replicates": replicates,
            "z_test_alone": float(significant.mean()), "delta_alone": float(big.mean()),
            "both": float((big & significant).mean()), "max_change": float(change.max())}


def run(replicates: int, delta: float = DEFAULT_SHARE_DELTA, alpha: float = DEFAULT_SHARE_ALPHA, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    null = [rates(n1, n2, p, p, replicates, delta, alpha, rng) for n1, n2 in SIZES for p in SHARES]
    wobble = rates(50_000, 50_000, 0.02, 0.03, replicates, delta, alpha, rng)
    return {"delta": delta, "alpha": alpha, "no_change": null, "wobble_2_to_3_percent_50k": wobble}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=200_000)
    parser.add_argument("--out", default=None, help="folder for share_checks.json")
    args = parser.parse_args(argv)
    figures = run(args.replicates)
    print(f"delta {figures['delta']}, alpha {figures['alpha']}, {args.replicates:,} replicates per line; "
          "false-alarm rate per check when nothing changed:")
    print(f"{'sizes':>20s} {'share':>6s} {'z alone':>10s} {'delta alone':>12s} {'both':>10s} {'max |change|':>13s}")
    for r in figures["no_change"]:
        print(f"{str(tuple(r['sizes'])):>20s} {r['share'][0]:6.2f} {r['z_test_alone']:10.5f} {r['delta_alone']:12.6f} "
              f"{r['both']:10.6f} {r['max_change']:13.4f}")
    w = figures["wobble_2_to_3_percent_50k"]
    print(f"a real 2% -> 3% change on 50,000 rows per side: z-test alone flags {w['z_test_alone']:.3f}, "
          f"the drift check's rule {w['both']:.3f}")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "share_checks.json").write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
