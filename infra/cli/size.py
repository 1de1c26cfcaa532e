"""`predict`, `size` and `calibrate`: the sizing library on the command line."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from infra.cli.argtypes import fraction, positive_float, positive_int
from infra.cli.output import add_json_argument, emit_json, warn
from infra.cli.progress import DelayedStatus
from infra.cli.tco import gpu_only_tco, vs_api_text
from infra.core.catalog import load_catalog
from infra.core.config import load_sizing_spec
from infra.core.errors import InputError
from infra.core.paths import REPO_ROOT
from infra.core.tables import table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict latency and throughput of a model on GPUs under a load",
        description="Predict TTFT, TPOT and throughput of one configuration (calibrated step-time model).",
    )
    p.add_argument("--model", required=True, help="catalog key (llama-3.3-70b, ...) or path to a HF config.json")
    p.add_argument("--gpu", required=True, help="GPU key: H100-SXM-80GB, H200-SXM-141GB, A100-SXM-80GB, A100-SXM-40GB, L40S-48GB, L4-24GB, A10G-24GB")
    p.add_argument("--gpus", type=positive_int, required=True, help="GPUs in total (replicas = gpus / tp)")
    p.add_argument("--tp", type=positive_int, required=True, help="tensor-parallel degree per replica")
    p.add_argument("--weights", choices=["bf16", "fp8", "int8", "int4"], default="bf16", help="weight precision")
    p.add_argument("--kv", choices=["auto", "fp8"], default="auto", help="KV-cache dtype (auto = bf16)")
    p.add_argument("--input-tokens", type=positive_int, required=True, help="prompt tokens per request")
    p.add_argument("--output-tokens", type=positive_int, required=True, help="generated tokens per request")
    load = p.add_mutually_exclusive_group(required=True)
    load.add_argument("--concurrency", type=positive_int, help="requests in flight (closed loop), all replicas")
    load.add_argument("--rate", type=positive_float, help="arrivals per second (open loop, Poisson), all replicas")
    load.add_argument("--max-load", action="store_true", help="offline max throughput (queue never empty)")
    p.add_argument("--engine", choices=["vllm", "trtllm"], default="vllm")
    p.add_argument("--gpu-memory-utilization", type=fraction, default=None)
    p.add_argument("--max-num-seqs", type=positive_int, default=None)
    p.add_argument("--max-num-batched-tokens", type=positive_int, default=None)
    add_json_argument(p, "the prediction")
    p.set_defaults(func=cmd_predict)

    s = subparsers.add_parser(
        "size",
        help="the cheapest fleet plan meeting the SLOs sustained, with an AZ lost and in a burst (simulated)",
        description="Search instance type x TP x precision x token budget for the cheapest plan that meets "
        "every SLO: the closed form pre-filters, the fleet simulator verifies the recommendation in three "
        "scenarios (sustained, the worst AZ lost, the burst) with control settings set at the simulated knee.",
    )
    source = s.add_mutually_exclusive_group(required=True)
    source.add_argument("--workload", metavar="FILE.yaml", help="workload/model/fleet document")
    source.add_argument("--stack", metavar="NAME",
                        help="a stack's Pulumi.<NAME>.yaml, sized as the program sizes it (its region share included)")
    s.add_argument("--project-dir", metavar="DIR", default=None,
                   help="directory holding Pulumi.yaml and Pulumi.<stack>.yaml (default: the repository root)")
    add_trace_arguments(s)
    s.add_argument("--verify-alternatives", action="store_true",
                   help="simulate every alternative's cheapest shape too (slower): their reasons become simulated")
    s.add_argument("--seed", type=int, default=0, help="simulation seed (default 0): results are deterministic by seed")
    add_json_argument(s, "the FleetPlan")
    s.set_defaults(func=cmd_size)

    c = subparsers.add_parser(
        "calibrate",
        help="fit the step-time model to the public benchmarks and report per-row error",
        description="Fit engine efficiency factors on infra/core/catalog/calibration/public_measurements.csv.",
    )
    c.add_argument("--write", action="store_true", help="rewrite infra/core/catalog/engines.yaml and docs/calibration-report.md "
                   "(with --from-bench: infra/core/catalog/calibration/measured.yaml and the report)")
    c.add_argument("--from-bench", nargs="+", metavar="RESULT.json",
                   help="fit per-configuration correction factors to `bench --stack ... --json` results instead "
                   "(one row per model, GPU, TP, precision and engine version; the public fit is untouched)")
    add_json_argument(c, "the fit summary and engine factors")
    c.set_defaults(func=cmd_calibrate)


def add_trace_arguments(p: argparse.ArgumentParser) -> None:
    """--trace FILE with --trace-rate R | --trace-scale X (shared by size and simulate)."""
    p.add_argument("--trace", metavar="FILE.csv",
                   help="request trace (Azure LLM inference format: TIMESTAMP,ContextTokens,GeneratedTokens): "
                   "its lengths and arrival pattern replace the declared fixed lengths and Poisson arrivals")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--trace-rate", type=positive_float, metavar="R",
                       help="replay the trace at a mean of R requests per second (default: at the declared load's rate)")
    scale.add_argument("--trace-scale", type=positive_float, metavar="X",
                       help="replay the trace at X times its own rate")


def load_trace(args: argparse.Namespace):
    """The --trace file, rescaled by --trace-rate/--trace-scale; None without --trace."""
    from infra.core.sizing.simulate.trace import read_trace

    if args.trace is None:
        if args.trace_rate is not None or args.trace_scale is not None:
            raise InputError("--trace-rate/--trace-scale", args.trace_rate or args.trace_scale, "only with --trace FILE")
        return None
    return read_trace(args.trace).scaled(rate=args.trace_rate, factor=args.trace_scale)


def replica_from_args(args: argparse.Namespace):
    """The replica `--model --gpu --tp --weights --kv --engine ...` describe (predict, simulate);
    a bad combination exits 2 naming the flag."""
    return replica_and_correction(args)[0]


def replica_and_correction(args: argparse.Namespace):
    """`replica_from_args`, and the measured correction its engine factors carry (None: none)."""
    from infra.core.sizing.measured import engine_for
    from infra.core.sizing.perf import ReplicaModel, engine_params

    catalog = load_catalog()
    arch = catalog.model(args.model, "--model")
    gpu = catalog.gpu(args.gpu, "--gpu")
    if arch.num_attention_heads % args.tp:
        raise InputError("--tp", args.tp, f"a divisor of {arch.key}'s {arch.num_attention_heads} attention heads")
    engine, measured = engine_for(engine_params(args.engine), arch.key, gpu.key, args.tp, args.weights)
    rm = ReplicaModel(
        arch, gpu, args.tp, args.weights, args.kv, engine,
        gpu_memory_utilization=args.gpu_memory_utilization or engine.default_gpu_memory_utilization,
        max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
    )
    if not rm.fits:
        m = rm.memory
        raise InputError(
            "--tp", args.tp,
            f"a degree at which {arch.key} ({args.weights}) fits: weights {m.weights_bytes / 2**30:.1f} GiB + "
            f"activations {m.activation_bytes / 2**30:.1f} GiB per GPU leave no KV cache within "
            f"{m.usable_bytes / 2**30:.1f} GiB; use more GPUs per replica or a lower precision",
        )
    return rm, measured


def cmd_predict(args: argparse.Namespace) -> int:
    from infra.core.sizing.load import steady_state

    if args.gpus % args.tp:
        raise InputError("--gpus", args.gpus, f"a multiple of --tp {args.tp}")
    rm = replica_from_args(args)
    arch, gpu, engine = rm.arch, rm.gpu, rm.engine
    replicas = args.gpus // args.tp
    kw: dict = {"request_overhead_ms": engine.request_overhead_ms}
    if args.max_load:
        kw["max_load"] = True
    elif args.concurrency is not None:
        kw["concurrency"] = args.concurrency / replicas
    else:
        kw["arrival_rate_per_s"] = args.rate / replicas
    try:
        r = steady_state(rm, args.input_tokens, args.output_tokens, **kw)
    except ValueError as exc:
        raise InputError("--input-tokens/--output-tokens", f"{args.input_tokens}/{args.output_tokens}", str(exc)) from None
    out = {
        "model": arch.key, "gpu": gpu.key, "gpus": args.gpus, "tp": args.tp, "replicas": replicas,
        "weights": args.weights, "kv": args.kv, "engine": engine.name,
        "input_tokens": args.input_tokens, "output_tokens": args.output_tokens,
        "output_tokens_per_s": r.output_tokens_per_s * replicas,
        "requests_per_s": r.requests_per_s * replicas,
        "ttft_ms_mean": r.ttft_ms_mean, "ttft_ms_p95": r.ttft_ms_p95,
        "tpot_ms_mean": r.tpot_ms_mean, "tpot_ms_p95": r.tpot_ms_p95, "itl_ms_p95": r.itl_ms_p95,
        "e2e_ms_mean": r.e2e_ms_mean, "e2e_ms_p95": r.e2e_ms_p95,
        "running": r.running * replicas, "waiting": r.waiting * replicas,
        "kv_cache_tokens": r.kv_cache_tokens * replicas,
        "max_concurrency": r.max_concurrency * replicas,
        "saturated": r.saturated,
        # Upper bounds: every prompt and output token through the GEMMs at the dense peak, and
        # decode at the running batch with weights + KV read at full HBM bandwidth.
        "roofline_output_tokens_per_s": rm.roofline_output_tokens_per_s(args.input_tokens, args.output_tokens) * replicas,
        "roofline_decode_tokens_per_s": rm.roofline_decode_tokens_per_s(
            max(1, round(r.running)), args.input_tokens + args.output_tokens / 2
        ) * replicas,
    }
    out = {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in out.items()}
    if emit_json(args.json, out):
        return 0
    print(f"{arch.key} ({args.weights} weights, {args.kv} KV) on {args.gpus} x {gpu.key}, TP={args.tp}, "
          f"{replicas} replica(s), engine {engine.name}")
    print(f"workload: {args.input_tokens} prompt + {args.output_tokens} output tokens, "
          + ("max load" if args.max_load else f"concurrency {args.concurrency}" if args.concurrency else f"{args.rate}/s"))
    rows = [
        ("output tokens/s", out["output_tokens_per_s"],
         min(out["roofline_output_tokens_per_s"], out["roofline_decode_tokens_per_s"])),
        ("TTFT mean / p95 (ms)", f"{r.ttft_ms_mean:,.1f} / {r.ttft_ms_p95:,.1f}", None),
        ("TPOT mean / p95 (ms)", f"{r.tpot_ms_mean:,.2f} / {r.tpot_ms_p95:,.2f}", None),
        ("end-to-end mean / p95 (ms)", f"{r.e2e_ms_mean:,.0f} / {r.e2e_ms_p95:,.0f}", None),
        ("running / waiting", f"{out['running']:,.0f} / {out['waiting']:,.0f}", None),
        ("KV cache tokens", out["kv_cache_tokens"], None),
        ("max concurrency (KV, max-num-seqs)", out["max_concurrency"], None),
    ]
    print(table(["metric", "predicted", "roofline"], rows, right=[1, 2]))
    if r.saturated:
        print("saturated: the arrival rate exceeds what these replicas can serve; the queue grows without bound")
    return 0


def render_plan(plan, slo_ms: dict[str, float | None] | None = None) -> str:
    """The plan as text; `slo_ms` (keys ttft/tpot/e2e) adds the targets beside the predictions."""
    slo_ms = slo_ms or {}
    n = plan.nodes_per_az
    p, pa, c, ctl = plan.predicted, plan.predicted_all_azs, plan.cost, plan.control
    lines = [
        f"Fleet plan for {plan.model} ({plan.precision}, KV {plan.vllm.kv_cache_dtype}) in {plan.region}, engine {plan.engine}",
        "",
        table(
            ["plan", "value"],
            [
                ("instance type", f"{plan.instance_type} ({plan.gpus_per_node} x {plan.gpu})"),
                ("tensor parallel", plan.tensor_parallel),
                ("replicas needed / per AZ / per node", f"{plan.replicas_sustained} / {plan.replicas_per_az} / {plan.replicas_per_node}"),
                ("AZs (survive one lost)", f"{plan.azs} ({'yes' if plan.survive_az_loss else 'no'})"),
                ("GPU nodes per AZ min / desired / max", f"{n.min} / {n.desired} / {n.max}"),
                ("warm spare nodes per AZ", plan.warm_spares_per_az),
                ("replicas at burst", plan.replicas_max),
                ("simulated knee per replica", f"{ctl.knee_rate_per_replica:,.2f} req/s, "
                 f"{ctl.knee_concurrency_per_replica:,.1f} in flight"),
                ("KEDA: running + waiting per replica / polling", f"{ctl.scale_threshold_per_replica} / "
                 f"{ctl.polling_interval_s} s"),
                ("admission limit per ready replica", ctl.admission_limit_per_replica),
                ("vLLM max-num-seqs / max-num-batched-tokens", f"{plan.vllm.max_num_seqs} / {plan.vllm.max_num_batched_tokens}"),
                ("KV cache per replica (tokens)", plan.kv_cache_tokens_per_replica),
                ("$/hour baseline / burst", f"{c.usd_per_hour_baseline:,.2f} / {c.usd_per_hour_max:,.2f}"),
                ("$ per 1M output tokens", f"{c.usd_per_million_output_tokens:,.2f}"),
                ("price", f"${c.usd_per_gpu_hour:,.4f}/GPU-hour: {c.price_source}"),
            ],
        ),
        "",
        verification_table(plan, slo_ms),
        "",
        table(
            ["closed form (per replica)", "one AZ lost", "all AZs up", "SLO"],
            [
                ("concurrency", p.concurrency_per_replica, pa.concurrency_per_replica, None),
                ("TTFT p95 (ms)", p.ttft_p95_ms, pa.ttft_p95_ms, slo_ms.get("ttft")),
                ("TPOT p95 (ms)", p.tpot_p95_ms, pa.tpot_p95_ms, slo_ms.get("tpot")),
                ("end-to-end p95 (ms)", p.e2e_p95_ms, pa.e2e_p95_ms, slo_ms.get("e2e")),
                ("output tokens/s", p.output_tokens_per_s_per_replica, pa.output_tokens_per_s_per_replica, None),
            ],
            right=[1, 2, 3],
        ),
    ]
    if plan.notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in plan.notes]
    if plan.alternatives:
        lines += [
            "",
            "Alternatives (best variant of each instance type x TP x precision):",
            table(
                ["instance", "TP", "prec", "GPUs", "$/h", "why not"],
                [
                    (a.instance_type, a.tensor_parallel, a.precision, a.gpus, a.usd_per_hour_baseline, a.why)
                    for a in plan.alternatives
                ],
                right=[1, 3, 4],
            ),
        ]
    return "\n".join(lines)


def verification_table(plan, slo_ms: dict[str, float | None]) -> str:
    """The fleet simulator's verdict per scenario (p95s in ms, misses counted)."""
    if not plan.verification:
        return "simulated: not verified (closed-form pre-filter only)"

    def ms(v: float | None) -> str:
        return "miss" if v is None else f"{v:,.0f}"

    slo = "/".join(f"{slo_ms[k]:,.0f}" if slo_ms.get(k) else "-" for k in ("ttft", "tpot", "e2e"))
    rows = [(v.name, "pass" if v.passed else "FAIL", v.requests, v.rejected, f"{v.attainment_pct:.2f}",
             f"{ms(v.ttft_p95_ms)} / {ms(v.tpot_p95_ms)} / {ms(v.e2e_p95_ms)}", f"{v.replicas_min}-{v.replicas_max}")
            for v in plan.verification]
    return table(["simulated scenario", "verdict", "requests", "shed/lost", "attainment %",
                  f"p95 TTFT / TPOT / e2e ms (SLO {slo})", "replicas"], rows, right=[2, 3, 4])


def cmd_size(args: argparse.Namespace) -> int:
    from infra.core.resolve import resolve, sized
    from infra.core.sizing.simulate.workload import Lengths

    trace = load_trace(args)
    lengths = Lengths.from_trace(trace) if trace is not None else None
    rate = trace.rate_per_s if trace is not None and (args.trace_rate or args.trace_scale) else None
    with DelayedStatus() as note:
        if args.stack is not None:
            resolved = resolve(args.stack, Path(args.project_dir) if args.project_dir else REPO_ROOT)
            spec, plan = resolved.spec, resolved.plan
            warn(resolved.warnings)
        else:
            spec, plan = load_sizing_spec(args.workload), None
        if plan is None or lengths is not None or args.seed or args.verify_alternatives:
            plan, _ = sized(spec, lengths=lengths, seed=args.seed, verify_alternatives=args.verify_alternatives,
                            progress=note, rate_per_s=rate)
    if emit_json(args.json, plan.to_dict()):
        return 0
    w = spec.workload
    print(render_plan(plan, {"ttft": w.ttft_p95_ms, "tpot": w.tpot_p95_ms, "e2e": w.e2e_p95_ms}))
    print("\n" + vs_api_text(gpu_only_tco(plan, w, resolved.config.tco if args.stack is not None else None,
                                             args.stack or "")), end="")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from infra.core.sizing import calibrate

    if args.from_bench:
        return calibrate_from_bench(args)
    rows, excluded = calibrate.read_measurements()
    with DelayedStatus() as status:
        status("fitting the step-time model (public rows, then the replica simulator under load: minutes)")
        engines, assumptions = calibrate.fit(rows)
    results = calibrate.evaluate(rows, engines, load_catalog())
    summary = calibrate.summarise(results)
    if args.write:
        calibrate.write_engines(engines, assumptions)
    loaded = calibrate.simulate_load(engines) if args.write else None
    if loaded is None:
        lrows, skipped = calibrate.load_rows.read_load_measurements(assumptions=assumptions)
        loaded = (calibrate.load_rows.simulate_rows(lrows, engines, load_catalog()), skipped, assumptions)
    if args.write:
        calibrate.write_report(calibrate.report_for(engines, loaded=loaded))
    under_load = [vars(x) for x in calibrate.summarise_load(loaded[0])]
    doc = {"summary": summary, "under_load": under_load, "load_assumptions": vars(assumptions),
           "engines": {k: vars(v) for k, v in engines.items()}}
    if not emit_json(args.json, doc):
        print(
            f"throughput rows {summary['rows_throughput']}: median |error| {summary['median_abs_error_throughput']:.1%}, "
            f"most optimistic {summary['max_optimism_throughput']:+.1%}\n"
            f"first-token rows {summary['rows_ttft']}: median |error| {summary['median_abs_error_ttft']:.1%}"
        )
        for x in under_load:
            print(f"under load, {x['engine']}: {x['rows']} rows, {x['within_20_pct']:.0%} of TTFT/TPOT figures within 20 %, "
                  f"median |error| {x['median_abs_error']:.1%}, most optimistic {x['most_optimistic']:+.1%}")
        if args.write:
            print(f"wrote {calibrate.REPORT_PATH.name} and engines.yaml", file=sys.stderr)
    return 0


def calibrate_from_bench(args: argparse.Namespace) -> int:
    """`calibrate --from-bench RESULT.json ...`: one correction per configuration measured."""
    import json

    from infra.core.sizing import calibrate, measured

    fitted = []
    with DelayedStatus() as status:
        for path in args.from_bench:
            status(f"fitting the replica simulator to {path}")
            try:
                result = json.loads(Path(path).read_text())
            except OSError as exc:
                raise InputError("--from-bench", path, f"a readable bench result ({exc.strerror})") from None
            except ValueError as exc:
                raise InputError("--from-bench", path, f"a JSON document written by `bench --json` ({exc})") from None
            fitted.append(calibrate.fit_from_bench(result, source=path))
    rows = calibrate.merge_corrections(measured.load_corrections(), fitted)
    if args.write:
        written = measured.write_corrections(rows)
        from infra.core.sizing.perf import load_engines

        calibrate.write_report(calibrate.report_for(load_engines()))
    doc = {"corrections": [c.to_row() for c in fitted], "written": bool(args.write)}
    if emit_json(args.json, doc):
        return 0
    for c in fitted:
        b, a, m = c.simulated_before, c.simulated_after, c.measured
        print(f"{c.key.describe()}: prefill x{c.prefill_factor:.3f}, decode x{c.decode_factor:.3f}; "
              f"TTFT p50 {m['ttft_ms_p50']:,.1f} ms measured, {b['ttft_ms_p50']:,.1f} -> {a['ttft_ms_p50']:,.1f} simulated; "
              f"TPOT p50 {m['tpot_ms_p50']:,.2f} ms measured, {b['tpot_ms_p50']:,.2f} -> {a['tpot_ms_p50']:,.2f} simulated")
    if args.write:
        print(f"wrote {written} and {calibrate.REPORT_PATH.name}", file=sys.stderr)
    else:
        print("(not written: --write stores the rows in measured.yaml, which the next size and simulate apply)")
    return 0
