"""`python -m infra new-stack NAME --from SOURCE [--region R] [--model M] [...]`: a new stack.

Writes `Pulumi.NAME.yaml`, a copy of SOURCE's config with the changes asked for, and its policy
pack config `policies/config.NAME.json` (the generator `docs --write` uses). Values that belong
to one region or one stack are not copied, because a copy that keeps them deploys "fine" and
breaks later: the ACM certificate (regional), the weights revision (must be in the new stack's
own bucket), `tags.environment` (what cost reports group by) are left blank with a comment
saying what to put there; the VPC CIDR gets the next /16 no other stack uses; AZ names and
capacity reservations of another region are dropped. The stack then plans offline once the
blanks are filled (`plan --stack NAME` names each blank until then). An existing stack is
refused unless --force. Exit codes: 0 written; 2 bad input (nothing written).
"""
from __future__ import annotations

import argparse
import copy
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.cli.argtypes import command_parser, monthly_usd, positive_int
from infra.cli.output import add_json_argument, emit_json
from infra.core import patterns
from infra.core.config import NAMESPACE, parse_stack_config, project_config_defaults, stack_file_config, stack_file_path
from infra.core.errors import EXIT_OK, InputError, UserError
from infra.core.files import atomic_write
from infra.core.paths import REPO_ROOT

FILL_IN = "FILL IN"
# What the blanks are validated with before anything is written (never written themselves).
PROBE_CERTIFICATE = "arn:aws:acm:{region}:000000000000:certificate/new-stack-probe"
PROBE_REVISION = "new-stack-probe"
VPC_POOL = ipaddress.ip_network("10.0.0.0/8")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = command_parser(subparsers, "new-stack", __doc__, help="a new stack from an existing one: Pulumi.NAME.yaml with region-scoped values blanked, its policy config")
    p.add_argument("name", metavar="NAME", help="the new stack's name (writes Pulumi.NAME.yaml)")
    p.add_argument("--from", dest="source", required=True, metavar="STACK", help="the stack to copy, e.g. prod")
    p.add_argument("--region", default=None, help="AWS region of the new stack (default: SOURCE's)")
    p.add_argument("--model", default=None, help="catalog key of the model to serve (default: SOURCE's)")
    p.add_argument("--concurrent-requests", type=positive_int, default=None,
                   help="sustained concurrency (the output-token rate target scales with it)")
    p.add_argument("--azs", type=positive_int, default=None, help="availability zones (default: SOURCE's)")
    p.add_argument("--budget-usd", type=monthly_usd, default=None, help="monthly budget (default: SOURCE's)")
    p.add_argument("--vpc-cidr", default=None, help="VPC CIDR (default: the next 10.x.0.0/16 no stack uses)")
    p.add_argument("--environment", default=None, help="tags.environment (default: left blank to fill in)")
    p.add_argument("--force", action="store_true", help="overwrite an existing Pulumi.NAME.yaml")
    p.add_argument("--project-dir", default=None, help="repository root with Pulumi.yaml (default: this repository)")
    add_json_argument(p, "what was written and what is left to fill in")
    p.set_defaults(func=run)


@dataclass
class NewStack:
    """The new stack's config entries, the comment above each changed key, and what is blank."""

    name: str
    source: str
    entries: dict[str, Any]
    comments: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (section, key) -> lines
    blanks: list[str] = field(default_factory=list)  # full key paths left to fill in
    changed: list[str] = field(default_factory=list)

    def note(self, section: str, key: str, *lines: str) -> None:
        self.comments.setdefault((section, key), []).extend(lines)

    def blank(self, section: str, key: str, *lines: str) -> None:
        _section(self.entries, section)[key] = ""
        self.blanks.append(f"{section}.{key}")
        self.note(section, key, f"{FILL_IN}: {lines[0]}", *lines[1:])


def _section(entries: dict[str, Any], name: str) -> dict[str, Any]:
    key = f"{NAMESPACE}{name}"
    value = entries.get(key)
    if not isinstance(value, dict):
        value = entries[key] = {}
    return value


def used_vpc_cidrs(project_dir: Path, skip: str) -> dict[str, str]:
    """CIDR -> stack, for every other stack file that names one (unreadable files are skipped)."""
    default = project_config_defaults(project_dir).get(f"{NAMESPACE}network") or {}
    out: dict[str, str] = {}
    for path in sorted(project_dir.glob("Pulumi.*.yaml")):
        stack = path.name[len("Pulumi."):-len(".yaml")]
        if stack == skip:
            continue
        try:
            network = stack_file_config(stack, project_dir).get(f"{NAMESPACE}network") or default
        except UserError:
            continue
        cidr = network.get("vpc_cidr") if isinstance(network, dict) else None
        out[str(cidr or "10.40.0.0/16")] = stack  # NetworkConfig's default
    return out


def next_vpc_cidr(used: dict[str, str]) -> str:
    """The first 10.x.0.0/16 from 10.40.0.0/16 up (the project's first stacks use 10.40 and 10.41)
    that overlaps no CIDR in `used`."""
    taken = []
    for cidr in used:
        try:
            taken.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue
    for candidate in VPC_POOL.subnets(new_prefix=16):
        if candidate.network_address >= ipaddress.ip_address("10.40.0.0") and not any(candidate.overlaps(t) for t in taken):
            return str(candidate)
    raise UserError("no free 10.x.0.0/16 left for the VPC; pass --vpc-cidr")


def build(args: argparse.Namespace, project_dir: Path) -> NewStack:
    """The new stack from SOURCE's config file and the flags; UserError before anything is written."""
    source_entries = stack_file_config(args.source, project_dir)
    source_cfg = parse_stack_config({**project_config_defaults(project_dir), **source_entries},
                                    source=f"Pulumi.{args.source}.yaml")
    entries = copy.deepcopy(source_entries)
    new = NewStack(args.name, args.source, entries)
    region = args.region or source_cfg.region
    if not patterns.matches(patterns.REGION, region):
        raise InputError("--region", region, "an AWS region name like us-east-2")
    workload, model, fleet = _section(entries, "workload"), _section(entries, "model"), _section(entries, "fleet")
    ingress, tags = _section(entries, "ingress"), _section(entries, "tags")
    network = _section(entries, "network")

    if region != source_cfg.region:
        entries["aws:region"] = region
        fleet["region"] = region
        new.changed.append(f"region {source_cfg.region} -> {region}")
        if "availability_zones" in network:
            del network["availability_zones"]
            new.changed.append(f"network.availability_zones of {source_cfg.region} dropped (the program picks AZs "
                               f"offering the GPU type in {region})")
        gpu_nodes = entries.get(f"{NAMESPACE}gpu_nodes")
        if isinstance(gpu_nodes, dict) and gpu_nodes.get("capacity_reservation_ids"):
            gpu_nodes["capacity_reservation_ids"] = {}
            new.blanks.append("gpu_nodes.capacity_reservation_ids")
            new.note("gpu_nodes", "capacity_reservation_ids",
                     f"{FILL_IN}: one capacity reservation per AZ of {region} (AZ name -> cr-...); "
                     f"{args.source}'s are in {source_cfg.region}, or set fleet.capacity_type: on-demand")
        if isinstance(tags.get("region"), str):
            tags["region"] = region
    if args.model and args.model != source_cfg.model.name:
        model["name"] = args.model
        model.pop("served_name", None)  # the source's name for its model; the default is the HF id
        new.changed.append(f"model {source_cfg.model.name} -> {args.model}")
        new.note("model", "name", f"{args.source} serves {source_cfg.model.name}; served_name defaults to the "
                                  "model's Hugging Face id (set it to the name clients send)")
    if args.concurrent_requests and args.concurrent_requests != source_cfg.workload.concurrent_requests:
        before = source_cfg.workload.concurrent_requests
        workload["concurrent_requests"] = args.concurrent_requests
        new.changed.append(f"concurrent_requests {before} -> {args.concurrent_requests}")
        rate = source_cfg.workload.output_tokens_per_s
        if rate:
            scaled = round(rate * args.concurrent_requests / before, 1)
            workload["output_tokens_per_s"] = int(scaled) if scaled == int(scaled) else scaled
            new.note("workload", "output_tokens_per_s",
                     f"scaled with concurrent_requests from {args.source}'s {rate:g} ({args.concurrent_requests}/{before})")
    if args.azs:
        fleet["azs"] = args.azs
        new.changed.append(f"azs {source_cfg.fleet.azs} -> {args.azs}")
    budget = _section(entries, "budget")
    if args.budget_usd is not None:
        budget["monthly_usd"] = int(args.budget_usd) if args.budget_usd == int(args.budget_usd) else float(args.budget_usd)
    else:
        new.note("budget", "monthly_usd", f"copied from {args.source}: compare it with the worst case "
                                          f"`python -m infra plan --stack {args.name}` prints")

    # Region- and stack-scoped values: blank, with what to put there.
    hostname = ingress.get("hostname") or "the hostname"
    if ingress.get("tls_certificate_arn") is not None or "tls_secret_name" not in ingress:
        new.blank("ingress", "tls_certificate_arn",
                  f"the ARN of an ACM certificate for {hostname} in {region}.",
                  "ACM certificates are regional: a load balancer can only use one from its own region",
                  f"({args.source}'s is in {_arn_region(source_cfg.ingress.tls_certificate_arn) or source_cfg.region}).",
                  f"  aws acm list-certificates --region {region}")
    new.note("ingress", "hostname", f"copied from {args.source}: give {args.name} its own name, or route both with DNS")
    new.blank("weights", "revision",
              f"the model revision uploaded to {args.name}'s own weights bucket in {region}",
              f"(llm-fleet-{args.name}-weights-<account>-{region}, created by the first `pulumi up`), e.g.",
              f"  python -m infra weights upload DIR --model {args.model or source_cfg.model.name} --revision REV",
              f"`python -m infra preflight --stack {args.name}` checks it is in the bucket's manifest list;",
              f"{args.source}'s was {source_cfg.weights.revision}.")
    if args.environment:
        tags["environment"] = args.environment
        new.note("tags", "environment", "cost reports and budgets group resources by this tag")
    else:
        new.blank("tags", "environment",
                  f"the environment {args.name} belongs to (cost reports and budgets group by this tag);",
                  f"{args.source}'s is {source_cfg.tags.get('environment')!r}. A stack listed in stacks/<env>.yaml "
                  "carries <env>.")
    used = used_vpc_cidrs(project_dir, args.name)
    cidr = args.vpc_cidr or next_vpc_cidr(used)
    network["vpc_cidr"] = cidr
    others = ", ".join(f"{c} ({s})" for c, s in sorted(used.items())) or "none"
    new.note("network", "vpc_cidr",
             "a private /16 to /20 that no VPC this one may peer with uses (VPC peering and Transit Gateway",
             f"refuse overlapping ranges); other stacks: {others}")
    return new


def _arn_region(arn: str | None) -> str:
    return arn.split(":")[3] if arn else ""


def probe_entries(new: NewStack, project_dir: Path) -> dict[str, Any]:
    """The new entries with every blank filled by a valid stand-in: validates the rest of the
    config and gives the pack config, which depends on none of the blanks."""
    entries = copy.deepcopy(new.entries)
    region = entries.get("aws:region") or _section(entries, "fleet").get("region")
    for path in new.blanks:
        section, key = path.split(".", 1)
        values = _section(entries, section)
        if path == "ingress.tls_certificate_arn":
            values[key] = PROBE_CERTIFICATE.format(region=region)
        elif path == "weights.revision":
            values[key] = PROBE_REVISION
        elif path == "tags.environment":
            values[key] = new.name
        elif path == "gpu_nodes.capacity_reservation_ids":
            values.pop(key, None)
            _section(entries, "fleet")["capacity_type"] = "on-demand"
    return {**project_config_defaults(project_dir), **entries}


def _scalar(value: Any) -> str:
    import yaml

    return yaml.safe_dump([value], default_flow_style=True, width=10**6, sort_keys=False).strip()[1:-1]


def render(new: NewStack, command: str) -> str:
    """Pulumi.NAME.yaml: a header, then SOURCE's keys in SOURCE's order, comments above changed keys."""
    lines = [
        f"# {new.name}: made from Pulumi.{new.source}.yaml by `{command}`.",
        *(f"#   {c}" for c in new.changed),
        f"# Fill in every value marked {FILL_IN} (`python -m infra plan --stack {new.name}` names each one until",
        "# it is set), then plan it; after changing budget, region or instance types run",
        f"# `python -m infra docs --write` (it regenerates policies/config.{new.name}.json). README: \"Make your own stack\".",
        "config:",
    ]
    for key, value in new.entries.items():
        section = key[len(NAMESPACE):] if key.startswith(NAMESPACE) else None
        if section is None or not isinstance(value, dict):
            lines.append(f"  {key}: {_scalar(value)}")
            continue
        lines.append(f"  {key}:" + (" {}" if not value else ""))
        for name, item in value.items():
            lines += [f"    # {c}" if c else "    #" for c in new.comments.get((section, name), [])]
            lines.append(f"    {name}: {_scalar(item)}")
    return "\n".join(lines) + "\n"


def command_line(args: argparse.Namespace) -> str:
    """The new-stack command that made the file (for its header), from the parsed flags."""
    import shlex

    words = ["python", "-m", "infra", "new-stack", args.name, "--from", args.source]
    for flag in ("region", "model", "concurrent_requests", "azs", "budget_usd", "vpc_cidr", "environment"):
        value = getattr(args, flag)
        if value is not None:
            words += [f"--{flag.replace('_', '-')}", str(value)]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    import yaml

    from infra.core.resolve import resolve
    from infra.core.rollout.regions import find_environment
    from policies.config import config_path, render_pack_config, stack_pack_config

    project_dir = Path(args.project_dir) if args.project_dir else REPO_ROOT
    if not (project_dir / "Pulumi.yaml").is_file():
        raise InputError("--project-dir", str(project_dir), "a directory with a Pulumi.yaml")
    target = stack_file_path(args.name, project_dir)
    if args.name == args.source:
        raise InputError("NAME", args.name, f"a name other than --from {args.source} (a copy never replaces its source)")
    if target.exists() and not args.force:
        raise InputError("NAME", args.name, f"a stack name without a {target.name} (it exists; --force overwrites it)")

    new = build(args, project_dir)
    text = render(new, command_line(args))
    if yaml.safe_load(text)["config"] != new.entries:  # the comments must never change a value
        raise RuntimeError(f"bug: {target.name} as rendered does not read back as the config it was made from")
    probe = probe_entries(new, project_dir)
    resolved = resolve(args.name, project_dir, entries=probe)  # validates (flags included) and sizes: exit 2 if not
    pack = render_pack_config(stack_pack_config(resolved.config))

    pack_path = config_path(args.name, project_dir)
    pack_path.parent.mkdir(exist_ok=True)
    atomic_write(target, text)
    atomic_write(pack_path, pack)

    notes = []
    env = find_environment(args.source, project_dir)
    if env is not None:
        plan, path = env
        rel = path.relative_to(project_dir) if path.is_relative_to(project_dir) else path
        same = not any(c.startswith(("model ", "concurrent_requests ")) for c in new.changed)
        notes.append(
            f"{args.source} belongs to environment {plan.environment} ({rel}); {args.name} is in no environment, "
            "so it is sized for the whole declared workload. "
            + (f"To roll it out with {plan.environment}, add it to {rel}: a region entry (stack, region, "
               "traffic_share_pct: the shares must add up to 100) and a wave, and tag it "
               f"environment: {plan.environment}." if same else
               f"It cannot join {plan.environment}: every stack of an environment declares the same workload and model.")
        )
    from infra.core.catalog.prices import load_price_book

    if resolved.region not in load_price_book().regions:
        notes.append(f"{resolved.region} has no prices in infra/core/catalog/prices.yaml: the cost shows NOT PRICED "
                     f"until `python -m infra prices refresh --region {resolved.region}`")
    p = resolved.plan
    summary = {
        "instance_type": p.instance_type, "azs": p.azs, "nodes_per_az": vars(p.nodes_per_az),
        "gpus_baseline": p.gpus_baseline, "gpu_usd_per_hour_baseline": p.to_dict()["cost"]["usd_per_hour_baseline"],
    }
    wrote = [str(target), str(pack_path)]
    doc = {"stack": args.name, "from": args.source, "region": resolved.region, "wrote": wrote,
           "fill_in": [f"{NAMESPACE}{b}" for b in new.blanks], "changed": new.changed, "plan": summary, "notes": notes}
    if emit_json(args.json, doc):
        return EXIT_OK
    print(f"wrote {target.name} and {pack_path.relative_to(project_dir)} ({args.name} from {args.source})")
    for change in new.changed:
        print(f"  {change}")
    n = p.nodes_per_az
    print(f"sized: {p.instance_type} x {p.azs} AZs, nodes per AZ min/desired/max {n.min}/{n.desired}/{n.max}, "
          f"{p.gpus_baseline} GPUs at baseline, GPU nodes ${p.cost.usd_per_hour_baseline:,.2f}/h")
    print(f"\nfill in ({FILL_IN} in {target.name}; each comment says with what):")
    for i, blank in enumerate(new.blanks, 1):
        print(f"  {i}. {NAMESPACE}{blank}")
    print(f"then: python -m infra plan --stack {args.name}")
    for note in notes:
        print(f"\nnote: {note}")
    return EXIT_OK
