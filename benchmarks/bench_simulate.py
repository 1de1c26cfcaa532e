"""Speed and accuracy of the fleet simulator.

    python benchmarks/bench_simulate.py [--repeat N] [--json] [--skip-accuracy]

Speed targets (the project's 2-core machines):
- the seed-004 search with the chosen plan verified in all three scenarios: median < 5 s;
- the fleet burst simulation of the seed plan: < 10 s; simulated requests per second reported.
Accuracy target (the replica simulator against every row measured under load that it models,
infra/core/catalog/calibration/load_measurements.csv): TTFT and TPOT p50/p95 within 20 % of the
published figures, never optimistic by more than 25 %. Reported per engine, not asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.core.config import load_sizing_spec  # noqa: E402
from infra.core.sizing import calibrate  # noqa: E402
from infra.core.sizing.perf import load_engines  # noqa: E402
from infra.core.sizing.search import size  # noqa: E402
from infra.core.sizing.simulate import memo  # noqa: E402
from infra.core.sizing.simulate.scenarios import run_scenario  # noqa: E402
from infra.core.sizing.simulate.workload import Lengths  # noqa: E402

SEARCH_TARGET_S = 5.0
BURST_TARGET_S = 10.0
WITHIN = 0.20
OPTIMISM = 0.25


def accuracy() -> list[dict]:
    loaded, _, _ = calibrate.simulate_load(dict(load_engines()))
    out = []
    for x in calibrate.summarise_load(loaded):
        mine = [r for r in loaded if r.row.engine == x.engine and not r.row.anchor]
        figures = [(r.row.id, m, e) for r in mine for m, e in calibrate.load_figure_errors(r).items()]
        errs = [e for _, _, e in figures]
        out.append({
            "engine": x.engine, "rows": x.rows, "figures": x.figures,
            "within_20_pct": round(x.within_20_pct, 3), "median_abs_error": round(x.median_abs_error, 3),
            "most_optimistic": round(x.most_optimistic, 3), "most_pessimistic": round(x.most_pessimistic, 3),
            "optimistic_beyond_25_pct": sum(e < -OPTIMISM for e in errs),
            "optimistic_figures": [f"{rid} {m} {e:+.0%}" for rid, m, e in figures if e < -OPTIMISM][:12],
            "meets_target": x.within_20_pct == 1.0 and x.most_optimistic >= -OPTIMISM,
        })
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    args = ap.parse_args()

    spec = load_sizing_spec(ROOT / "examples" / "seed-004.yaml")
    times = []
    for _ in range(args.repeat):
        memo.clear()  # neither the resolver's memo nor the simulations': every run pays the whole search
        t0 = time.perf_counter()
        plan = size(spec)
        times.append(time.perf_counter() - t0)
    w = spec.workload
    t0 = time.perf_counter()
    burst = run_scenario(plan, w, "burst", lengths=Lengths(w.input_tokens, w.output_tokens),
                         rate_per_s=plan.load["arrival_rate_per_s"])
    burst_s = time.perf_counter() - t0
    requests = len(burst.fleet.requests)
    result = {
        "search_s_median": round(statistics.median(times), 2),
        "search_s_max": round(max(times), 2),
        "search_meets_target": statistics.median(times) < SEARCH_TARGET_S,
        "verified": [v.name for v in plan.verification if v.passed],
        "plan": f"{plan.instance_type} TP={plan.tensor_parallel} x {plan.nodes_per_az.desired}/AZ",
        "burst_s": round(burst_s, 2),
        "burst_meets_target": burst_s < BURST_TARGET_S,
        "burst_requests": requests,
        "burst_engine_steps": burst.fleet.steps,
        "simulated_requests_per_s": round(requests / burst_s),
        "simulated_engine_steps_per_s": round(burst.fleet.steps / burst_s),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    if not args.skip_accuracy:
        result["accuracy_under_load"] = accuracy()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"seed-004 search, verified ({', '.join(result['verified'])}): median {result['search_s_median']} s, "
          f"max {result['search_s_max']} s over {args.repeat} (target < {SEARCH_TARGET_S:.0f} s: "
          f"{'met' if result['search_meets_target'] else 'MISSED'}); plan {result['plan']}")
    print(f"burst simulation of that plan: {burst_s:.2f} s (target < {BURST_TARGET_S:.0f} s: "
          f"{'met' if result['burst_meets_target'] else 'MISSED'}), {requests:,} requests, "
          f"{result['simulated_requests_per_s']:,} simulated requests/s, "
          f"{result['simulated_engine_steps_per_s']:,} engine steps/s; load average {result['load_avg_1m']}")
    for a in result.get("accuracy_under_load", []):
        print(f"under load, {a['engine']}: {a['rows']} rows, {a['within_20_pct']:.0%} of {a['figures']} TTFT/TPOT "
              f"figures within 20 % (target 100 %), median |error| {a['median_abs_error']:.1%}, most optimistic "
              f"{a['most_optimistic']:+.1%} ({a['optimistic_beyond_25_pct']} figures beyond -25 %): "
              f"{'met' if a['meets_target'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
