"""`python -m infra simulate`: the vLLM simulator on one replica, or on a stack's whole fleet.

Replica mode (`--model ...`): one engine under a closed loop (`--concurrency C`), Poisson
arrivals (`--rate R`) or a trace replay (`--trace FILE`), step by step; prints TTFT, TPOT, ITL
and end-to-end latency (mean, p50, p95, p99), throughput, and the closed form's figures beside.

Fleet mode (`--stack STACK`): the stack's resolved plan (its control block, shape and
time-to-serve) in the verification scenarios, a table per scenario and, with `--json`, the
timeline; `--plot FILE.png` draws it. Simulations are deterministic by `--seed`.
"""
from __future__ import annotations

import argparse
import io
import math
from pathlib import Path
from typing import Any

from infra.cli.argtypes import command_parser, fraction, positive_float, positive_int
from infra.cli.output import add_json_argument, emit_json
from infra.cli.progress import DelayedStatus
from infra.cli.size import add_trace_arguments, load_trace, replica_and_correction
from infra.core.errors import InputError
from infra.core.files import atomic_write
from infra.core.paths import REPO_ROOT
from infra.core.sizing.simulate.stats import SLO_QUANTILE_PCT
from infra.core.tables import table

SCENARIO_CHOICES = ("sustained", "az-loss", "burst", "all")
REPLICA_FLAGS = ("model", "gpu", "tp", "input_tokens", "output_tokens")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = command_parser(subparsers, "simulate", __doc__, help="simulate one vLLM replica (--model ...) or a stack's fleet (--stack) step by step")
    fleet = p.add_argument_group("fleet mode")
    fleet.add_argument("--stack", help="simulate this stack's resolved plan (Pulumi.<stack>.yaml)")
    fleet.add_argument("--scenario", choices=SCENARIO_CHOICES, default="all", help="which scenario (default: all)")
    fleet.add_argument("--retry", action="store_true", help="clients retry a shed request after Retry-After (3 sends)")
    fleet.add_argument("--plot", metavar="FILE.png", help="draw the timeline (matplotlib) into FILE.png")
    fleet.add_argument("--interval-s", type=positive_float, default=10.0, help="timeline interval (default 10 s)")
    fleet.add_argument("--project-dir", default=None, help="repository root (default: this repository)")
    rep = p.add_argument_group("replica mode")
    rep.add_argument("--model", help="catalog key (llama-3.3-70b, ...) or path to a HF config.json")
    rep.add_argument("--gpu", help="GPU key: H100-SXM-80GB, H200-SXM-141GB, A100-SXM-80GB, L40S-48GB")
    rep.add_argument("--tp", type=positive_int, help="tensor-parallel degree of the replica")
    rep.add_argument("--weights", choices=["bf16", "fp8", "int8", "int4"], default="bf16", help="weight precision")
    rep.add_argument("--kv", choices=["auto", "fp8"], default="auto", help="KV-cache dtype (auto = bf16)")
    rep.add_argument("--input-tokens", type=positive_int, help="prompt tokens (the mean with --lengths lognormal)")
    rep.add_argument("--output-tokens", type=positive_int, help="answer tokens (the mean with --lengths lognormal)")
    load = rep.add_mutually_exclusive_group()
    load.add_argument("--concurrency", type=positive_int, help="closed loop: this many clients")
    load.add_argument("--rate", type=positive_float, help="open loop: Poisson arrivals per second")
    rep.add_argument("--lengths", choices=["fixed", "lognormal"], default="fixed",
                     help="fixed lengths, or lognormal around them (the Azure conversation trace's spread)")
    rep.add_argument("--requests", type=positive_int, default=None,
                     help="requests to simulate (default 1000; a trace: all of it)")
    rep.add_argument("--max-num-seqs", type=positive_int, default=None)
    rep.add_argument("--max-num-batched-tokens", type=positive_int, default=None)
    rep.add_argument("--gpu-memory-utilization", type=fraction, default=None)
    rep.add_argument("--prefix-hit", type=float, default=0.0, metavar="F",
                     help="share of each prompt served from the prefix cache (a shared system prompt), 0-0.99")
    rep.add_argument("--engine", choices=["vllm", "trtllm"], default="vllm")
    add_trace_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_json_argument(p, "the simulated figures")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.prefix_hit < 1:
        raise InputError("--prefix-hit", args.prefix_hit, "a fraction in [0, 1)")
    if args.stack:
        given = [f"--{f.replace('_', '-')}" for f in (*REPLICA_FLAGS, "concurrency", "rate") if getattr(args, f)]
        if given:
            raise InputError(given[0], getattr(args, given[0][2:].replace("-", "_")), "no replica flag with --stack")
        return run_fleet(args)
    missing = [f"--{f.replace('_', '-')}" for f in REPLICA_FLAGS if getattr(args, f) is None and
               not (f.endswith("_tokens") and args.trace)]
    if missing:
        raise InputError(missing[0], None, "a value (replica mode needs --model --gpu --tp --input-tokens "
                                            "--output-tokens), or --stack STACK for fleet mode")
    if args.plot:
        raise InputError("--plot", args.plot, "only in fleet mode (--stack)")
    return run_replica(args)


# --- replica mode ---------------------------------------------------------------------------------

def run_replica(args: argparse.Namespace) -> int:
    import numpy as np

    from infra.core.sizing.load import steady_state
    from infra.core.sizing.simulate.replica import run_closed, run_open
    from infra.core.sizing.simulate.workload import Lengths, OpenLoop, fixed_count

    rm, measured = replica_and_correction(args)
    arch, gpu, engine = rm.arch, rm.gpu, rm.engine
    trace = load_trace(args)
    if trace is not None:
        lengths = Lengths.from_trace(trace)
    else:
        lengths = Lengths(args.input_tokens, args.output_tokens, args.lengths, max_total_tokens=None)
    rng = np.random.default_rng(args.seed)
    if args.concurrency:
        mode = f"closed loop, {args.concurrency} clients"
        r = run_closed(rm, lengths, args.concurrency, args.requests or 1000, seed=args.seed,
                       prefix_hit_fraction=args.prefix_hit)
    elif args.rate:
        mode = f"Poisson, {args.rate:g} req/s"
        r = run_open(rm, fixed_count(rng, lengths, args.rate, args.requests or 1000), prefix_hit_fraction=args.prefix_hit)
    elif trace is not None:
        n = min(args.requests or len(trace), len(trace))
        mode = f"trace replay, {n} requests at {trace.rate_per_s:,.2f} req/s"
        r = run_open(rm, OpenLoop(trace.arrival_s[:n], trace.input_tokens[:n], trace.output_tokens[:n]),
                     prefix_hit_fraction=args.prefix_hit)
    else:
        raise InputError("--concurrency/--rate", None, "one of them (or --trace FILE to replay it)")
    doc: dict[str, Any] = {
        "mode": "replica", "load": mode, "model": arch.key, "gpu": gpu.key, "tp": args.tp, "weights": args.weights,
        "kv": args.kv, "engine": engine.name, "max_num_seqs": rm.max_num_seqs,
        "max_num_batched_tokens": rm.max_num_batched_tokens, "kv_cache_tokens": rm.memory.kv_cache_tokens,
        "lengths": lengths.kind, "seed": args.seed, **r.to_dict(),
        "notes": [measured.note()] if measured else [],
    }
    if trace is None:
        kw = {"concurrency": args.concurrency} if args.concurrency else {"arrival_rate_per_s": args.rate}
        try:
            cf = steady_state(rm, lengths.input_tokens, lengths.output_tokens,
                              request_overhead_ms=engine.request_overhead_ms, **kw)
            doc["closed_form"] = {k: (None if isinstance(v, float) and math.isinf(v) else round(v, 3)) for k, v in
                                  {"ttft_ms_p95": cf.ttft_ms_p95, "tpot_ms_p95": cf.tpot_ms_p95,
                                   "e2e_ms_p95": cf.e2e_ms_p95, "output_tokens_per_s": cf.output_tokens_per_s}.items()}
        except ValueError:
            doc["closed_form"] = None
    if emit_json(args.json, doc):
        return 0
    print(f"{arch.key} ({args.weights} weights, {args.kv} KV) on {args.tp} x {gpu.key}, engine {engine.name}, "
          f"max-num-seqs {rm.max_num_seqs}, max-num-batched-tokens {rm.max_num_batched_tokens}; {mode}, "
          f"{r.requests} requests measured")
    rows = [(name, *(_ms(doc[key].get(q)) for q in ("mean", "p50", "p95", "p99")))
            for name, key in (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("ITL", "itl_ms"), ("end-to-end", "e2e_ms"))]
    print(table(["ms", "mean", "p50", "p95", "p99"], rows, right=[1, 2, 3, 4]))
    print(f"throughput: {r.output_tokens_per_s:,.0f} output tokens/s, {r.requests_per_s:,.2f} requests/s; "
          f"{r.preemptions} preemptions")
    for note in doc["notes"]:
        print(f"- {note}")
    cf = doc.get("closed_form")
    if cf:
        print(f"closed form: TTFT p95 {_ms(cf['ttft_ms_p95'])} ms, TPOT p95 {_ms(cf['tpot_ms_p95'])} ms, "
              f"end-to-end p95 {_ms(cf['e2e_ms_p95'])} ms")
    return 0


def _ms(v: float | None) -> str:
    return "miss" if v is None else f"{v:,.1f}"


# --- fleet mode -----------------------------------------------------------------------------------

def run_fleet(args: argparse.Namespace) -> int:
    from infra.core.resolve import resolve
    from infra.core.sizing.measured import measured_notes
    from infra.core.sizing.simulate.scenarios import SCENARIOS, run_scenario, targets_ms
    from infra.core.sizing.simulate.workload import Lengths

    project_dir = Path(args.project_dir) if args.project_dir else REPO_ROOT
    with DelayedStatus() as status:
        status("resolving the plan")
        resolved = resolve(args.stack, project_dir)
        plan, w = resolved.plan, resolved.spec.workload
        trace = load_trace(args)
        lengths = Lengths.from_trace(trace) if trace is not None else Lengths(w.input_tokens, w.output_tokens)
        rate = plan.load["arrival_rate_per_s"]
        if trace is not None and (args.trace_rate or args.trace_scale):
            rate = trace.rate_per_s
        names = SCENARIOS if args.scenario == "all" else (args.scenario,)
        runs = []
        for name in names:
            label = f"simulating {name}"
            runs.append(run_scenario(
                plan, w, name, lengths=lengths, rate_per_s=rate, seed=args.seed,
                retry_after_s=_retry_after_s(resolved) if args.retry else None,
                warm_pool_state=resolved.config.gpu_nodes.warm_pool_state,
                progress=lambda t, label=label, name=name: status.bar(t, _horizon(w, name), label)))
    targets = targets_ms(w)
    doc = {
        "stack": args.stack, "instance_type": plan.instance_type, "tensor_parallel": plan.tensor_parallel,
        "replicas": {"min": plan.control.min_replicas, "max": plan.control.max_replicas},
        "arrival_rate_per_s": rate, "lengths": lengths.kind, "seed": args.seed,
        "slo_ms": targets, "control": _control_brief(plan.control),
        "scenarios": [scenario_doc(r, targets, args.interval_s) for r in runs],
        "notes": measured_notes(plan.model, plan.gpu, plan.tensor_parallel, plan.precision, plan.engine),
    }
    to_stdout = emit_json(args.json, doc)
    if args.plot:
        plot_timeline(doc, args.plot, targets, w.slo_attainment_pct or {})
    if to_stdout:
        return 0
    print(f"{args.stack}: {plan.instance_type} TP={plan.tensor_parallel}, {plan.control.min_replicas}-"
          f"{plan.control.max_replicas} replicas, {rate:,.1f} requests/s ({lengths.kind} lengths), seed {args.seed}")
    rows = [(s["name"], "pass" if s["passed"] else "FAIL", s["requests"], s["rejected"], f"{s['attainment_pct']:.2f}",
             _ms(s["ttft_ms"]["p95"]), _ms(s["tpot_ms"]["p95"]), _ms(s["e2e_ms"]["p95"]),
             f"{s['replicas']['min']}-{s['replicas']['max']}") for s in doc["scenarios"]]
    print(table(["scenario", "verdict", "requests", "shed/lost", "attainment %", "TTFT p95", "TPOT p95",
                 "e2e p95", "replicas"], rows, right=[2, 3, 4, 5, 6, 7]))
    for s in doc["scenarios"]:
        if s["why"]:
            print(f"- {s['why']}")
    for note in doc["notes"]:
        print(f"- {note}")
    if args.plot:
        print(f"wrote {args.plot}")
    return 0


def _retry_after_s(resolved) -> int:
    """The gateway's Retry-After on a 503 (infra/core/sizing/control.py, what ingress.py sends)."""
    from infra.core.sizing.control import retry_after_s

    w = resolved.spec.workload
    return retry_after_s(w.e2e_p95_ms or resolved.plan.predicted.e2e_p95_ms)


def _horizon(w, name: str) -> float:
    from infra.core.sizing.simulate.scenarios import drain_s, window

    return window(name, w).arrivals_until_s + drain_s(w)


def _control_brief(c) -> dict[str, Any]:
    return {"scale_query": c.scale_query, "scale_threshold_per_replica": c.scale_threshold_per_replica,
            "polling_interval_s": c.polling_interval_s, "admission_limit_per_replica": c.admission_limit_per_replica,
            "max_num_seqs": c.max_num_seqs, "knee_rate_per_replica": c.knee_rate_per_replica}


def scenario_doc(run, targets: dict[str, float | None], interval_s: float) -> dict[str, Any]:
    """One scenario in the command's JSON shape."""
    r = run.result
    return {
        "name": r.name, "passed": r.passed, "requests": r.requests, "attainment_pct": r.attainment_pct,
        "rejected": r.rejected, **run.latencies.summaries(),
        "replicas": {"min": r.replicas_min, "max": r.replicas_max}, "why": r.why,
        "az_lost": run.fleet.lost_az, "timeline": run.timeline(targets, interval_s),
    }


def plot_timeline(doc: dict[str, Any], path: str, targets: dict[str, float | None],
                  attainment_pct: dict[str, float]) -> None:
    """One column per scenario: load and shedding, replicas and spares, p95 latencies, attainment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = doc["scenarios"]
    fig, axes = plt.subplots(4, len(scenarios), figsize=(6.4 * len(scenarios), 11), sharex="col", squeeze=False)
    for col, s in enumerate(scenarios):
        tl = s["timeline"]
        t = [row["t_s"] for row in tl]
        ax = axes[0][col]
        ax.plot(t, [row["offered_per_s"] for row in tl], label="offered req/s", color="tab:blue")
        ax.plot(t, [row["rejected_per_s"] for row in tl], label="shed or lost req/s", color="tab:red")
        ax.set_ylabel("requests / s")
        ax.set_title(f"{doc['stack']}: {s['name']} ({'pass' if s['passed'] else 'FAIL'}, "
                     f"attainment {s['attainment_pct']:.1f} %)")
        ax = axes[1][col]
        ax.step(t, [row["replicas_ready"] for row in tl], where="post", label="replicas serving", color="tab:green")
        ax.step(t, [row["replicas_desired"] for row in tl], where="post", label="replicas wanted (HPA)",
                color="tab:olive", linestyle="--")
        ax.step(t, [row["spares_in_use"] for row in tl], where="post", label="warm spares in use", color="tab:purple")
        ax.axhline(doc["replicas"]["min"], color="grey", linewidth=0.8, linestyle=":", label="baseline")
        ax.set_ylabel("replicas")
        ax = axes[2][col]
        top = 0.0
        for key, label, color in (("ttft_p95_ms", "TTFT p95", "tab:orange"), ("e2e_p95_ms", "end-to-end p95", "tab:blue")):
            ax.plot(t, [row[key] if row[key] is not None else math.nan for row in tl], label=label, color=color)
            target = targets.get(key.split("_")[0])
            if target:
                ax.axhline(target, color=color, linewidth=0.8, linestyle=":", label=f"{label} SLO")
            top = max([top, target or 0.0, *(row[key] for row in tl if row[key] is not None)])
        missed = [row["t_s"] for row in tl if row["offered_per_s"] and row["e2e_p95_ms"] is None]
        if missed:  # over 5 % of the interval's requests shed, lost or unanswered
            ax.scatter(missed, [top * 1.5] * len(missed), marker="x", color="tab:red", label="p95 is a miss")
        ax.set_yscale("log")
        ax.set_ylabel("ms (per interval)")
        ax = axes[3][col]
        ax.plot(t, [row["attainment_pct"] if row["attainment_pct"] is not None else math.nan for row in tl],
                label="within every SLO", color="tab:green")
        ax.axhline(attainment_pct.get(s["name"], SLO_QUANTILE_PCT), color="grey", linewidth=0.8, linestyle=":", label="target")
        ax.set_ylim(0, 101)
        ax.set_ylabel("attainment %")
        ax.set_xlabel("simulated time (s)")
        for a in axes[:, col]:
            a.grid(alpha=0.3)
            a.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())
