"""``annotators`` at Community Alignment's shape: many scenarios, most rated by one annotator
(who wrote the prompt), some shared by a few; four candidates each. Side by side on the same
tables: the welfare-optimal selection one scenario at a time (:func:`select`) and batched by
shape (:func:`select_many`, what :func:`evaluate` uses), and the memory of per-scenario tables
over the scenario's own jurors against tables over every juror.

    python benchmarks/annotators_scale.py [SCENARIOS]

Prints the figures; the last line is one JSON object.
"""

from __future__ import annotations

import json
import random
import sys
import time

from pluralign.engine.pluralism.annotators import Rating, Ratings, select, select_many, tables

ALPHAS = (0.0, 1.0, float("inf"))


def ratings(scenarios: int, annotators: int = 3000, seed: int = 0) -> Ratings:
    rng = random.Random(seed)
    out = []
    for s in range(scenarios):
        jurors = rng.sample(range(annotators), rng.choice((1, 1, 1, 2, 5)))
        for j in jurors:
            pick = rng.randrange(4)
            out += [Rating(f"a{j}", f"s{s}", f"r{k}", float(k == pick)) for k in range(4)]
    return Ratings(out, (0.0, 1.0))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    t = tables(ratings(n))
    start = time.perf_counter()
    one = [select(u, ALPHAS) for u in t.utility]
    loop_s = time.perf_counter() - start
    start = time.perf_counter()
    many = select_many(t.utility, ALPHAS)
    batch_s = time.perf_counter() - start
    same = all(a[0].tolist() == b[0].tolist() for a, b in zip(one, many, strict=True))
    own = sum(u.nbytes for u in t.utility)
    dense = sum(len(t.jurors) * u.shape[1] * 8 for u in t.utility)
    print(f"{n:,} scenarios, {len(t.jurors):,} annotators, alphas {ALPHAS}")
    print(f"select per scenario {loop_s:.2f} s; select_many {batch_s:.2f} s "
          f"({loop_s / batch_s:.0f}x); same picks: {same}")
    print(f"tables over each scenario's jurors {own / 2**20:.1f} MiB; over every juror "
          f"{dense / 2**20:,.0f} MiB")
    print(json.dumps({"scenarios": n, "annotators": len(t.jurors), "select_s": round(loop_s, 3),
                      "select_many_s": round(batch_s, 3), "speedup": round(loop_s / batch_s, 1),
                      "same_picks": same, "tables_mib": round(own / 2**20, 2),
                      "dense_tables_mib": round(dense / 2**20, 1)}))


if __name__ == "__main__":
    main()
