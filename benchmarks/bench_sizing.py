"""Speed of the SLO search's closed-form pre-filter on the seed-004 brief, in process.

    python benchmarks/bench_sizing.py [--repeat N] [--json]

Target: the seed-004 pre-filter (`size(..., simulate=False)`) under 200 ms on the project's
2-core machines. Also reports how many candidates (instance x TP x precision x max-num-seqs x
token budget) it evaluates per second, each evaluation being a bisection over per-replica
concurrency. The verified search (fleet simulator included) is benchmarks/bench_simulate.py.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.core.catalog import load_catalog  # noqa: E402
from infra.core.catalog.prices import load_price_book  # noqa: E402
from infra.core.config import load_sizing_spec  # noqa: E402
from infra.core.sizing import search  # noqa: E402
from infra.core.sizing.perf import engine_params  # noqa: E402

TARGET_MS = 200.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    spec = load_sizing_spec(Path(__file__).resolve().parents[1] / "examples" / "seed-004.yaml")
    catalog = load_catalog()
    prices = load_price_book()
    search.size(spec, catalog, simulate=False)  # warm caches (catalog, engine table)
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        plan = search.size(spec, catalog, simulate=False)
        times.append((time.perf_counter() - t0) * 1e3)
    arch = catalog.model(spec.model.name)
    cands = search.candidates(spec, arch, catalog, engine_params(spec.fleet.engine))
    t0 = time.perf_counter()
    for c in cands:
        search.evaluate(c, spec, prices)
    per_s = len(cands) / (time.perf_counter() - t0)
    result = {
        "search_ms_median": round(statistics.median(times), 1),
        "search_ms_max": round(max(times), 1),
        "candidates": len(cands),
        "candidates_per_s": round(per_s),
        "target_ms": TARGET_MS,
        "meets_target": statistics.median(times) < TARGET_MS,
        "plan": f"{plan.instance_type} TP={plan.tensor_parallel} x {plan.nodes_per_az.desired}/AZ",
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"seed-004 pre-filter search: median {result['search_ms_median']} ms, max {result['search_ms_max']} ms "
            f"(target < {TARGET_MS:.0f} ms: {'met' if result['meets_target'] else 'MISSED'}); "
            f"{result['candidates']} candidates, {result['candidates_per_s']:,} candidates/s; plan {result['plan']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
