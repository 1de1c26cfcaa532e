"""`bench`: measure a deployed endpoint through the openai SDK, against the stack's SLOs and plan.

    python -m infra bench --url URL --model NAME (--stack S | --input-tokens I --output-tokens O)
        (--concurrency C | --rate R | --trace FILE [--trace-rate R]) [--requests N] [--duration-s S]
        [--api-key-env VAR] [--retry] [--seed S] [--json [FILE]]

The driver is infra/ops/bench/driver.py; the figures, attainment and ratios infra/core/bench.
Ctrl-C stops sending and reports what finished (exit 130). docs/bench.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infra.cli.argtypes import endpoint_url, positive_float, positive_int
from infra.cli.output import add_json_argument, emit_json, warn
from infra.cli.progress import DelayedStatus
from infra.cli.size import add_trace_arguments, load_trace
from infra.core.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PREFLIGHT, InputError, exit_code_epilog
from infra.core.paths import REPO_ROOT
from infra.core.tables import table

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure an OpenAI-compatible endpoint (TTFT, TPOT, ITL, e2e, errors) against the stack's SLOs and plan",
        description="Drive an endpoint through the official openai SDK (AsyncOpenAI, streaming /v1/completions with\n"
        "token-id prompts and exact output lengths via vLLM's ignore_eos/min_tokens) and report TTFT, TPOT, ITL\n"
        "and end-to-end latency, throughput and failures by status. With --stack: attainment against its SLOs,\n"
        "and the plan's and the simulator's predictions for the same load with measured/predicted ratios.\n"
        "Bounded by --requests and --duration-s; Ctrl-C reports what finished. docs/bench.md.",
        epilog=exit_code_epilog("bench"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", required=True, type=endpoint_url,
                   help="the endpoint's base URL (http(s)://host[:port], /v1 appended unless given)")
    p.add_argument("--model", help="the served model name (default with --stack: the plan's served name)")
    p.add_argument("--stack", metavar="NAME", help="compare with this stack's SLOs and plan (its lengths by default)")
    p.add_argument("--project-dir", metavar="DIR", default=None, help="directory holding Pulumi.<stack>.yaml")
    p.add_argument("--input-tokens", type=positive_int, help="prompt tokens per request (default: the stack's)")
    p.add_argument("--output-tokens", type=positive_int, help="generated tokens per request (default: the stack's)")
    p.add_argument("--concurrency", type=positive_int, help="closed loop: this many requests in flight")
    p.add_argument("--rate", type=positive_float, help="open loop: Poisson arrivals per second")
    add_trace_arguments(p)
    p.add_argument("--requests", type=positive_int, default=None,
                   help="send at most N requests (default 100, or up to 100000 with --duration-s)")
    p.add_argument("--duration-s", type=positive_float, default=None,
                   help="stop sending after S seconds (default and cap: 3600); in-flight requests finish")
    p.add_argument("--replicas", type=positive_int, default=None,
                   help="replicas serving the load, for the predictions (default: the plan's baseline)")
    p.add_argument("--api-key-env", metavar="VAR", default=None,
                   help=f"environment variable holding the API key or JWT (default {DEFAULT_API_KEY_ENV}, if set)")
    for metric in ("ttft", "tpot", "e2e"):
        p.add_argument(f"--{metric}-p95-ms", type=positive_float, metavar="MS",
                       help=f"{metric.upper()} p95 target for the attainment (default with --stack: the stack's)")
    p.add_argument("--attainment-target-pct", type=positive_float, metavar="PCT",
                   help="attainment the run must reach (default: the stack's sustained target, else 95)")
    p.add_argument("--host-header", metavar="HOST",
                   help="send this Host header (calling a gateway's Service by its cluster DNS name)")
    p.add_argument("--retry", action="store_true",
                   help="on 429/503 wait the response's Retry-After (at most 60 s) and send again (recorded)")
    p.add_argument("--timeout-s", type=positive_float, default=300.0, help="per-request timeout, seconds (default 300)")
    p.add_argument("--seed", type=int, default=0, help="seed of the arrivals and prompts (default 0)")
    p.add_argument("--per-request", action="store_true", help="include every request (and its gaps) in the JSON")
    add_json_argument(p, "the measured figures (with --stack: attainment, predictions and ratios)")
    p.set_defaults(func=cmd_bench)


def _api_key(args: argparse.Namespace) -> str:
    if args.api_key_env is None:
        return os.environ.get(DEFAULT_API_KEY_ENV, "")
    value = os.environ.get(args.api_key_env)
    if not value:
        raise InputError("--api-key-env", args.api_key_env, "the name of a set, non-empty environment variable")
    return value


def _resolved(args: argparse.Namespace):
    if args.stack is None:
        if args.replicas is not None:
            raise InputError("--replicas", args.replicas, "only with --stack (it splits the load for the predictions)")
        return None
    from infra.core.resolve import resolve

    return resolve(args.stack, Path(args.project_dir) if args.project_dir else REPO_ROOT)


def build_schedule(args: argparse.Namespace, resolved):
    """The run's requests from the flags (and the stack's lengths)."""
    from infra.core.bench.load import DEFAULT_REQUESTS, MAX_DURATION_S, MAX_REQUESTS, schedule
    from infra.core.sizing.simulate.workload import Lengths

    trace = load_trace(args)
    given = [f for f, v in (("--concurrency", args.concurrency), ("--rate", args.rate), ("--trace", trace)) if v is not None]
    if len(given) != 1:
        raise InputError("/".join(given) if given else "--concurrency/--rate/--trace", None,
                         "exactly one of --concurrency C, --rate R or --trace FILE")
    lengths = None
    if trace is None:
        w = resolved.spec.workload if resolved else None
        ins = args.input_tokens or (w.input_tokens if w else None)
        outs = args.output_tokens or (w.output_tokens if w else None)
        if ins is None or outs is None:
            raise InputError("--input-tokens/--output-tokens", None, "both (or --stack STACK for its lengths)")
        lengths = Lengths(ins, outs)
    elif args.input_tokens or args.output_tokens:
        raise InputError("--input-tokens/--output-tokens", args.input_tokens or args.output_tokens,
                         "not with --trace (the trace's lengths are used)")
    requests = args.requests or (MAX_REQUESTS if args.duration_s else DEFAULT_REQUESTS)
    return schedule(requests=requests, duration_s=args.duration_s or MAX_DURATION_S, seed=args.seed,
                    concurrency=args.concurrency, rate_per_s=args.rate, lengths=lengths, trace=trace)


def cmd_bench(args: argparse.Namespace) -> int:
    from infra.core.bench import results
    from infra.ops.bench.driver import Driver, DriverConfig, server_version

    resolved = _resolved(args)
    model = args.model or (resolved.plan.served_name if resolved else None)
    if not model:
        raise InputError("--model", None, "the served model name (or --stack STACK for the plan's)")
    sched = build_schedule(args, resolved)
    from infra.core.bench.load import DEFAULT_VOCAB

    vocab = DEFAULT_VOCAB
    if resolved is not None:
        from infra.core.catalog import load_catalog

        vocab = load_catalog().model(resolved.plan.model).vocab_size
    cfg = DriverConfig(args.url, model, _api_key(args), timeout_s=args.timeout_s, retry=args.retry, vocab=vocab,
                       host_header=args.host_header)
    started_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    interrupted = False
    with DelayedStatus() as status:
        failed = [0]

        def on_done(rec) -> None:
            failed[0] += 0 if rec.ok else 1
            status.bar(len(driver.records), len(sched), f"bench {len(driver.records)}/{len(sched)} requests, "
                                                        f"{failed[0]} failed")

        driver = Driver(cfg, sched, on_done=on_done)
        try:
            driver.run()
        except KeyboardInterrupt:
            interrupted = True
    records = sorted(driver.records, key=lambda r: r.index)
    w = resolved.spec.workload if resolved else None
    targets = _targets(args, w)
    doc: dict[str, Any] = {
        "driver": "openai", "url_host": urlsplit(args.url).hostname, "model": model, "started_at": started_at,
        "interrupted": interrupted, "load": sched.describe(),
        "server_version": None if interrupted else server_version(args.url),
        **results.summarise(records, wall_s=driver.wall_s, targets_ms=targets),
    }
    if targets is not None:
        doc["attainment_target_pct"] = args.attainment_target_pct or results.attainment_target_pct(
            w.slo_attainment_pct if w is not None else None)
    if resolved is not None and not interrupted:
        doc.update(_against_plan(args, resolved, sched, doc))
    if args.per_request:
        doc["per_request"] = [r.to_dict() for r in records]
    short = doc["short_outputs"]
    warnings = [f"{short} requests got fewer tokens than asked: the server ignored ignore_eos/min_tokens "
                "(TPOT is still per generated token)"] if short else []
    warn(warnings)
    to_stdout = emit_json(args.json, doc)
    if not to_stdout:
        print(render(doc))
    if interrupted:
        print("interrupted: the figures above are what finished before Ctrl-C", file=sys.stderr)
        return EXIT_INTERRUPTED
    if records and not doc["requests"]["ok"]:
        print(f"error: no request succeeded ({', '.join(f'{k}: {v}' for k, v in doc['errors'].items())})",
              file=sys.stderr)
        return EXIT_PREFLIGHT
    return EXIT_OK


def _targets(args: argparse.Namespace, w) -> dict[str, float | None] | None:
    """The SLOs attainment is measured against: the flags, else the stack's; None: no SLO given."""
    from infra.core.sizing.simulate.scenarios import targets_ms

    declared = targets_ms(w) if w is not None else {}
    flags = {m: getattr(args, f"{m}_p95_ms") for m in ("ttft", "tpot", "e2e")}
    if w is None and not any(flags.values()):
        return None
    return {m: flags[m] if flags[m] is not None else declared.get(m) for m in flags}


def _against_plan(args: argparse.Namespace, resolved, sched, measured: dict[str, Any]) -> dict[str, Any]:
    from infra.core.bench.predict import configuration, predict
    from infra.core.bench.results import ratios

    plan = resolved.plan
    replicas = args.replicas or plan.control.min_replicas
    predicted = predict(plan, sched, replicas)
    return {
        "configuration": configuration(plan, stack=args.stack, plan_digest=resolved.digest),
        "predicted": predicted,
        "ratios": {"plan": ratios(measured, predicted["plan"]), "simulator": ratios(measured, predicted["simulator"])},
    }


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"


def render(doc: dict[str, Any]) -> str:
    """The run as text: latency table, throughput, failures, attainment, and the predictions."""
    load = doc["load"]
    how = (f"closed loop, {load['concurrency']} clients" if load["kind"] == "closed"
           else f"{load['kind']}, {load['rate_per_s']:g} req/s")
    req = doc["requests"]
    lines = [f"bench {doc['url_host']} ({doc['model']}): {how}; {req['sent']} requests sent, {req['ok']} ok, "
             f"{req['failed']} failed in {doc['wall_s']:,.1f} s" + (" (interrupted)" if doc["interrupted"] else ""),
             table(["ms (successful requests)", "mean", "p50", "p95", "p99"],
                   [(name, *(_ms(doc[key][q]) for q in ("mean", "p50", "p95", "p99")))
                    for name, key in (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("ITL", "itl_ms"), ("end-to-end", "e2e_ms"))],
                   right=[1, 2, 3, 4]),
             f"throughput: {doc['output_tokens_per_s']:,.1f} output tokens/s, {doc['requests_per_s']:,.2f} requests/s"]
    if doc["errors"]:
        lines.append("failures: " + ", ".join(f"{k}: {v}" for k, v in doc["errors"].items()))
    r = doc["retries"]
    if r["retried_requests"]:
        lines.append(f"retried: {r['retried_requests']} requests, {r['waited_s']:,.1f} s waited (Retry-After)")
    if doc.get("attainment_pct") is not None:
        slo = ", ".join(f"{k} {v:g} ms" for k, v in doc["slo_ms"].items() if v)
        verdict = "meets" if doc["attainment_pct"] >= doc["attainment_target_pct"] else "BELOW"
        lines.append(f"attainment: {doc['attainment_pct']:.2f} % within every SLO ({slo}; failures are misses), "
                     f"{verdict} the {doc['attainment_target_pct']:g} % target")
    if "predicted" in doc:
        p = doc["predicted"]
        per = ", ".join(f"{k} {v:g}" for k, v in p["per_replica"].items())
        lines.append(f"predicted for {p['replicas']} replicas ({per} each):")
        rows = []
        for key, ratio in doc["ratios"]["simulator"].items():
            name, _, q = key.partition(".")
            plan_v = _fig(p["plan"], name, q)
            sim_v = _fig(p["simulator"], name, q)
            rows.append((key, _ms(_fig(doc, name, q)), _ms(plan_v), _ms(sim_v),
                         _ratio(doc["ratios"]["plan"].get(key)), _ratio(ratio)))
        lines.append(table(["figure", "measured", "plan", "simulator", "measured/plan", "measured/simulator"], rows,
                           right=[1, 2, 3, 4, 5]))
    return "\n".join(lines)


def _fig(doc: dict[str, Any], name: str, q: str) -> float | None:
    from infra.core.bench.results import figure

    return figure(doc, name, q or None)


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"
