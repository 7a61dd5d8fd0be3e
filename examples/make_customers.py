"""Write examples/customers.csv: 2,000 made-up subscription customers and whether they churned.

Churn follows the data the way it tends to in a subscription business (short tenure, many
support tickets, the basic plan, a low spend for the plan), with noise, and a few missing
values, so the README's "your own pipeline" section has something realistic to learn from.
The seed is fixed: the file, and the README's numbers, are the same on every machine.

    python examples/make_customers.py            # rewrites examples/customers.csv
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ROWS = 2_000
SEED = 20_240_601
# How clearly the behaviour shows in the outcome (higher: less noise).
SHARPNESS = 4.0
OUT = Path(__file__).with_name("customers.csv")


def customers(rows: int = ROWS, seed: int = SEED) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "pro", "team"], size=rows, p=[0.5, 0.35, 0.15])
    base = pd.Series(plan).map({"basic": 19.0, "pro": 49.0, "team": 99.0}).to_numpy()
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(10_001, 10_001 + rows),
            "age": rng.integers(18, 80, size=rows),
            "plan": plan,
            "tenure_months": rng.integers(1, 72, size=rows),
            "monthly_spend": (base * rng.lognormal(0.0, 0.25, size=rows)).round(2),
            "support_tickets": rng.poisson(1.2, size=rows),
        }
    )
    frame["churned"] = _churned(frame, base, rng)
    # About 1% of ages missing, as in any CRM export (the spec allows up to 5%).
    frame.loc[rng.random(rows) < 0.01, "age"] = np.nan
    frame["age"] = frame["age"].astype("Int64")
    return frame


def _churned(frame: pd.DataFrame, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    score = (
        -0.2
        - 0.045 * frame["tenure_months"]
        + 0.55 * frame["support_tickets"]
        + 0.8 * (frame["plan"] == "basic")
        - 1.2 * (frame["monthly_spend"] / base - 1.0)
        + 0.012 * (45 - frame["age"])
    )
    probability = 1.0 / (1.0 + np.exp(-SHARPNESS * score.to_numpy()))
    return (rng.random(len(frame)) < probability).astype(int)


if __name__ == "__main__":
    customers().to_csv(OUT, index=False)
    print(f"wrote {OUT}")
