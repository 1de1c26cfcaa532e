"""The rollout plan of an environment (`stacks/<env>.yaml`): regions, waves, gates. Pure.

    environment: prod
    regions:            # region stacks and their traffic shares (infra/core/rollout/regions.py)
      - {stack: prod-us-west-2, region: us-west-2, traffic_share_pct: 40, absorb_region_failure: true}
      - {stack: prod, region: us-east-1, traffic_share_pct: 60, absorb_region_failure: true}
    global:             # optional: one public hostname over every region (global/Pulumi.yaml)
      zone_name: example.com
      routing: weighted   # or latency (the default)
      health_check: {request_interval_s: 30, failure_threshold: 3}
    waves:              # in order; the first is the canary (exactly one stack)
      - {name: canary, stacks: [prod-us-west-2], bake_minutes: 60, traffic: {prod-us-west-2: 10}}
      - {name: main, stacks: [prod], bake_minutes: 30}
    gates:
      policy: {fail_on_advisory: false}
      cost: {scenario: worst, max_monthly_increase_usd: 50000}
      health: {prometheus_url: ..., queries: [...], http: [...]}
    on_failure: {action: halt, rollback: failed-wave}
    state: {local_dir: .rollout, s3: {bucket: ..., region: ...}}

Unknown keys are refused; every error names the key path, the value and what is allowed.
"""
from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from infra.core.files import read_yaml_file
from infra.core.errors import UserError, shown
from infra.core import metrics, patterns
from infra.core.config import MAX_MONTHLY_USD, StrictModel, Workload, joined_problems, problem_lines

Routing = Literal["latency", "weighted"]

SHARE_TOTAL_TOLERANCE = Decimal("0.01")
# Placeholders a health URL or query may use; filled per stack.
TEMPLATE_FIELDS = ("stack", "region", "environment")


def fill(template: str, **values: str) -> str:
    """Replace exactly `{stack}`, `{region}`, `{environment}`; PromQL's own braces are left alone."""
    for name in TEMPLATE_FIELDS:
        if name in values:
            template = template.replace("{" + name + "}", values[name])
    return template


def _check_template(value: str) -> str:
    for name in re.findall(r"\{([^{}]*)\}", value):
        if name not in TEMPLATE_FIELDS:
            raise ValueError(f"placeholder {{{name}}} is unknown; allowed: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}")
    return value


class RegionShare(StrictModel):
    """One region stack of an environment and the share of its traffic it serves."""

    stack: str = Field(pattern=patterns.STACK, description="Pulumi stack name (reads Pulumi.<stack>.yaml).")
    region: str = Field(pattern=patterns.REGION, description="AWS region of the stack; must equal its aws:region.")
    traffic_share_pct: Decimal = Field(
        gt=0, le=100, description="Percent of the environment's declared traffic this region serves."
    )
    absorb_region_failure: bool = Field(
        default=False,
        description="Also size for the largest other region's share (the region survives another region's loss).",
    )


class Wave(StrictModel):
    """A group of region stacks updated one after another, then baked together."""

    name: str = Field(pattern=patterns.DNS_LABEL, description="Wave name (lowercase letters, digits, '-').")
    stacks: tuple[str, ...] = Field(min_length=1, description="Region stacks of this wave, updated in this order.")
    bake_minutes: float = Field(
        ge=0, le=7 * 24 * 60, description="Minutes to watch the wave's health after its last stack is up."
    )
    traffic: dict[str, Decimal] = Field(
        default_factory=dict,
        description="Region stack -> percent of the environment's traffic it gets from the wave's first up until "
        "its bake ends (0 takes it out of DNS; the other regions share the rest by their shares); restored after "
        "the bake. Needs a global section.",
    )

    @field_validator("traffic", mode="before")
    @classmethod
    def _traffic_numbers(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for stack, pct in value.items():
                if isinstance(pct, bool) or not isinstance(pct, (int, float, str, Decimal)):
                    raise ValueError(f"{stack}: {shown(pct)} is not a percent of traffic (0 to 100)")
        return value

    @field_validator("traffic")
    @classmethod
    def _traffic_range(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for stack, pct in value.items():
            if not Decimal(0) <= pct <= Decimal(100):
                raise ValueError(f"{stack}: {pct} is not allowed; a percent of traffic from 0 to 100")
        return value


class HealthCheckSettings(StrictModel):
    """The Route 53 health check of each region's record: HTTPS GET of its /health route."""

    request_interval_s: Literal[10, 30] = Field(
        default=30, description="Seconds between checks from each Route 53 checker: 30, or 10 (billed as fast interval).")
    failure_threshold: int = Field(
        default=3, ge=1, le=10, description="Consecutive failed (or passed) checks that make a region unhealthy (healthy).")


class GlobalEndpoint(StrictModel):
    """One public hostname for every region of the environment (the global/ Pulumi project).

    The hostname is the regions' `ingress.hostname` (they must agree): each gateway already serves it
    and its certificate covers it. Records are alias A records to each region's gateway NLB in the
    hosted zone, one per region with a health check on the region's /health.
    """

    zone_name: str = Field(max_length=253, pattern=patterns.HOSTNAME,
                           description="Public Route 53 hosted zone holding the hostname (and the regional hostnames).")
    zone_id: str | None = Field(default=None, pattern=patterns.ROUTE53_ZONE_ID,
                                description="The zone's id, when several public zones share its name.")
    routing: Routing = Field(
        default="latency",
        description="latency: each client to the region nearest it; weighted: by traffic_share_pct (whole percents).")
    health_check: HealthCheckSettings = Field(default_factory=HealthCheckSettings,
                                              description="Interval and failure threshold of every region's health check.")
    budget_monthly_usd: Decimal = Field(
        default=Decimal(100), gt=0, le=MAX_MONTHLY_USD,
        description="Spending cap of the global stack itself (Route 53 health checks, queries), USD a month.")


class PolicyGate(StrictModel):
    """Mandatory policies must pass (CrossGuard pack on preview; the same rules offline)."""

    enabled: bool = Field(default=True, description="Run the policy gate.")
    policy_packs: tuple[str, ...] = Field(
        default=("policies",), min_length=1, description="Policy pack directories passed to preview (repo-relative)."
    )
    fail_on_advisory: bool = Field(default=False, description="Also stop on advisory violations.")


class CostGate(StrictModel):
    """The monthly cost increase of a stack must stay within a limit unless approved."""

    enabled: bool = Field(default=True, description="Run the cost gate.")
    scenario: Literal["baseline", "expected", "worst"] = Field(
        default="worst", description="Cost scenario compared (infra/core/cost): baseline, expected or worst."
    )
    max_monthly_increase_usd: Decimal = Field(
        ge=0, le=MAX_MONTHLY_USD, description="Largest allowed increase of the stack's monthly cost, USD."
    )
    max_monthly_increase_pct: Decimal | None = Field(
        default=None, ge=0, le=10_000, description="Also limit the increase to this percent of the deployed cost."
    )


SloName = Literal["ttft_p95", "tpot_p95", "e2e_p95"]


class PromQuery(StrictModel):
    """A PromQL query whose every sample must lie within [min_value, max_value].

    `slo: ttft_p95` (or tpot_p95, e2e_p95) names one of the stack's SLOs instead: the query is
    built by infra/core/metrics.py (the builder the alert rules use) for the stack's served model,
    and the bound is the stack's own target, so neither is typed twice.
    """

    name: str = Field(pattern=patterns.DNS_LABEL, description="Check name shown in progress and reports.")
    slo: SloName | None = Field(default=None, description="An SLO of the stack: ttft_p95, tpot_p95 or e2e_p95.")
    window: str = Field(default="5m", pattern=r"^\d+[smh]$", description="Rate window of an `slo` query.")
    query: str | None = Field(
        default=None,
        min_length=1,
        description="PromQL instant query; {stack}, {region}, {environment} are filled in (other braces are PromQL's).",
    )
    max_value: float | None = Field(default=None, description="Largest allowed value of every sample.")
    min_value: float | None = Field(default=None, description="Smallest allowed value of every sample.")
    on_no_data: Literal["fail", "pass"] = Field(
        default="fail", description="Verdict when the query returns no samples (no traffic yet)."
    )

    @model_validator(mode="after")
    def _bounds(self) -> "PromQuery":
        if self.slo is not None:
            if self.query is not None or self.max_value is not None or self.min_value is not None:
                raise ValueError("an `slo` query takes its PromQL and bound from the stack; drop query/max_value/min_value")
            return self
        if self.query is None:
            raise ValueError("set `slo` (ttft_p95, tpot_p95, e2e_p95) or `query` with a bound")
        if self.max_value is None and self.min_value is None:
            raise ValueError("set max_value, min_value or both")
        if self.max_value is not None and self.min_value is not None and self.min_value > self.max_value:
            raise ValueError(f"min_value {self.min_value} is above max_value {self.max_value}")
        return self

    def bind(self, served_name: str, workload: Workload) -> "PromQuery":
        """The query as it runs for one stack: an `slo` query becomes PromQL and a bound (seconds)."""
        if self.slo is None:
            return self
        target_ms = getattr(workload, metrics.SLO_TARGET_FIELDS[self.slo])
        if target_ms is None:
            raise UserError(f"health gate query {self.name}: slo {self.slo} has no target in the stack's workload")
        return PromQuery(name=self.name, query=metrics.slo_query(self.slo, served_name, self.window),
                         max_value=target_ms / 1000, on_no_data=self.on_no_data)


class HttpCheck(StrictModel):
    """An HTTP GET that must answer with the expected status."""

    name: str = Field(pattern=patterns.DNS_LABEL, description="Check name shown in progress and reports.")
    url: str = Field(pattern=patterns.HTTP_URL, description="http(s) URL; may use {stack}, {region}, {environment}.")
    expect_status: int = Field(default=200, ge=100, le=599, description="HTTP status that means healthy.")
    timeout_s: float = Field(default=10, gt=0, le=300, description="Request timeout, seconds.")

    _url = field_validator("url")(_check_template)


# Bounds of the bench gate: a check, not a load test (the gateway's bench bucket is sized for it).
BENCH_MAX_REQUESTS = 2000
BENCH_MAX_DURATION_S = 900.0
BENCH_MAX_CONCURRENCY = 256


class BenchCheck(StrictModel):
    """The SLO benchmark after `up`: `python -m infra bench` as a Kubernetes Job in the region
    (namespace llm-fleet-bench, its own tenant), failing the stack when attainment is below target.

    It runs inside the cluster, so it works with a private endpoint: by default against the
    gateway's Service (with the stack's hostname as Host), through the same JWT check and rate
    limiter clients get. The JWT is the bench tenant's: the gate reads it from Secrets Manager and
    hands it to the Job as a Kubernetes Secret in the bench namespace (an env var), deleted after.
    """

    name: str = Field(default="slo-bench", pattern=patterns.DNS_LABEL, description="Check name (and the Job's name).")
    token_secret_arn: str | None = Field(
        default=None, pattern=patterns.SECRETS_MANAGER_ARN,
        description="Secrets Manager secret with the bench tenant's JWT (tenant claim llm-fleet-bench); default: "
        "each stack's deployer.bench_token_secret_arn (which a private-endpoint stack needs: its build reads it).")
    url: str | None = Field(
        default=None, pattern=patterns.HTTP_URL,
        description="Endpoint the Job calls; may use {stack}, {region}, {environment}. Default: the gateway's "
        "Service inside the cluster, with the stack's ingress.hostname as Host.")
    concurrency: int | None = Field(default=None, ge=1, le=BENCH_MAX_CONCURRENCY,
                                    description="Closed loop: requests in flight (default 16 unless rate_per_s).")
    rate_per_s: float | None = Field(default=None, gt=0, le=1000, description="Open loop: Poisson arrivals per second.")
    requests: int = Field(default=200, ge=1, le=BENCH_MAX_REQUESTS, description="Requests at most.")
    duration_s: float = Field(default=180, gt=0, le=BENCH_MAX_DURATION_S, description="Seconds of sending at most.")
    input_tokens: int | None = Field(default=None, ge=1, le=1_000_000, description="Prompt tokens (default: the stack's).")
    output_tokens: int | None = Field(default=None, ge=1, le=1_000_000, description="Answer tokens (default: the stack's).")
    min_attainment_pct: float | None = Field(
        default=None, gt=0, le=100,
        description="Share of requests within every SLO (failures are misses) the stack must reach; default: the "
        "workload's slo_attainment_pct.sustained, else 95.")
    image: str | None = Field(
        default=None, pattern=patterns.IMAGE_BY_DIGEST,
        description="Image with llm-fleet, pinned by digest (default: infra/core/catalog/charts.yaml images.llm-fleet).")

    _url = field_validator("url")(lambda v: None if v is None else _check_template(v))

    @model_validator(mode="after")
    def _load(self) -> "BenchCheck":
        if self.concurrency is not None and self.rate_per_s is not None:
            raise ValueError("set concurrency or rate_per_s, not both")
        return self

    @property
    def load(self) -> dict[str, float]:
        return {"rate_per_s": self.rate_per_s} if self.rate_per_s is not None else {"concurrency": self.concurrency or 16}

    @property
    def deadline_s(self) -> float:
        """How long the Job may run: the sending window, then the longest request (timeout) to finish."""
        from infra.core.bench.job import REQUEST_TIMEOUT_S

        return self.duration_s + REQUEST_TIMEOUT_S + 60


class HealthGate(StrictModel):
    """Health after `up` and during the bake: PromQL SLO queries and/or HTTP checks, and once
    after `up` the SLO benchmark (`bench`)."""

    prometheus_url: str | None = Field(
        default=None, pattern=patterns.HTTP_URL, description="Prometheus base URL; may use {stack}, {region}, {environment}."
    )
    queries: tuple[PromQuery, ...] = Field(default=(), description="SLO queries (need prometheus_url).")
    http: tuple[HttpCheck, ...] = Field(default=(), description="HTTP checks.")
    bench: BenchCheck | None = Field(default=None, description="The SLO benchmark, once after up (a Kubernetes Job).")
    wait_timeout_s: float = Field(
        default=900, ge=0, le=24 * 3600, description="After up: how long to wait for every check to pass, seconds."
    )
    interval_s: float = Field(default=60, gt=0, le=3600, description="Seconds between check rounds (wait and bake).")

    @field_validator("prometheus_url")
    @classmethod
    def _prom_template(cls, value: str | None) -> str | None:
        return None if value is None else _check_template(value)

    @model_validator(mode="after")
    def _checks(self) -> "HealthGate":
        if not self.queries and not self.http and self.bench is None:
            raise ValueError("list at least one check under queries, http or bench (or remove the health gate)")
        if self.queries and not self.prometheus_url:
            raise ValueError("queries need prometheus_url")
        names = [c.name for c in (*self.queries, *self.http, *((self.bench,) if self.bench else ()))]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"check names must be unique; repeated: {', '.join(dupes)}")
        return self


class Gates(StrictModel):
    policy: PolicyGate = Field(default_factory=PolicyGate, description="Mandatory policies pass.")
    cost: CostGate = Field(description="Monthly cost increase within a limit unless approved.")
    health: HealthGate | None = Field(default=None, description="Health after up and during the bake.")


class OnFailure(StrictModel):
    action: Literal["halt"] = Field(default="halt", description="What a failed step or gate does: halt the rollout.")
    rollback: Literal["none", "failed-wave"] = Field(
        default="none",
        description="failed-wave: re-apply each updated stack of the failed wave with its last deployed config.",
    )


class S3State(StrictModel):
    bucket: str = Field(pattern=patterns.BUCKET, description="S3 bucket holding the journal, lock and deployed records.")
    prefix: str = Field(default="rollouts", pattern=patterns.S3_PREFIX, description="Key prefix.")
    region: str = Field(pattern=patterns.REGION, description="Region of the bucket.")


class StateConfig(StrictModel):
    local_dir: str = Field(default=".rollout", min_length=1, description="Local directory for journal and lock.")
    s3: S3State | None = Field(default=None, description="Keep the journal and lock in S3 instead (shared).")


class RolloutPlan(StrictModel):
    """`stacks/<env>.yaml`."""

    # `global` is a Python keyword: the field is `global_`, read and written as `global`.
    model_config = ConfigDict(**StrictModel.model_config, serialize_by_alias=True)

    environment: str = Field(pattern=patterns.DNS_LABEL, description="Environment name (the lock and journal key).")
    regions: tuple[RegionShare, ...] = Field(min_length=1, description="Region stacks and their traffic shares.")
    global_: GlobalEndpoint | None = Field(
        default=None, alias="global", description="One public hostname over every region (Route 53, global/).")
    waves: tuple[Wave, ...] = Field(min_length=1, description="Waves in order; the first (canary) has one stack.")
    gates: Gates = Field(description="Policy, cost and health gates.")
    on_failure: OnFailure = Field(default_factory=OnFailure, description="Halt, and optionally roll back.")
    state: StateConfig = Field(default_factory=StateConfig, description="Where the journal and lock live.")

    def region_of(self, stack: str) -> RegionShare:
        return next(r for r in self.regions if r.stack == stack)

    def stacks_in_order(self) -> list[tuple[int, Wave, str]]:
        return [(i, w, s) for i, w in enumerate(self.waves) for s in w.stacks]

    def structure_digest(self) -> str:
        """What a resumed rollout must share with the one it resumes: waves and their stacks."""
        shape = [[w.name, list(w.stacks)] for w in self.waves]
        return hashlib.sha256(json.dumps([self.environment, shape]).encode()).hexdigest()[:16]


def cross_checks(plan: RolloutPlan) -> list[str]:
    """Rules across sections; each line names the key path to change."""
    problems = []
    stacks = [r.stack for r in plan.regions]
    for i, r in enumerate(plan.regions):
        if stacks.count(r.stack) > 1 and stacks.index(r.stack) != i:
            problems.append(f"regions.{i}.stack: {shown(r.stack)} is not allowed; each stack is listed once")
    regions = [r.region for r in plan.regions]
    for i, r in enumerate(plan.regions):
        if regions.count(r.region) > 1 and regions.index(r.region) != i:
            problems.append(f"regions.{i}.region: {shown(r.region)} is not allowed; one stack per region")
    total = sum((r.traffic_share_pct for r in plan.regions), Decimal(0))
    if abs(total - 100) > SHARE_TOTAL_TOLERANCE:
        problems.append(
            f"regions.*.traffic_share_pct: shares total {total} is not allowed; they must add up to 100 "
            f"({', '.join(f'{r.stack}={r.traffic_share_pct}' for r in plan.regions)})"
        )
    if len(plan.regions) < 2:
        for i, r in enumerate(plan.regions):
            if r.absorb_region_failure:
                problems.append(f"regions.{i}.absorb_region_failure: true is not allowed; it needs at least two regions")
    names = [w.name for w in plan.waves]
    seen: dict[str, str] = {}
    for i, wave in enumerate(plan.waves):
        if names.count(wave.name) > 1 and names.index(wave.name) != i:
            problems.append(f"waves.{i}.name: {shown(wave.name)} is not allowed; wave names are unique")
        for j, stack in enumerate(wave.stacks):
            if stack not in stacks:
                problems.append(
                    f"waves.{i}.stacks.{j}: {shown(stack)} is not allowed; waves list region stacks "
                    f"({', '.join(stacks)})"
                )
            elif stack in seen:
                problems.append(
                    f"waves.{i}.stacks.{j}: {shown(stack)} is not allowed; it is already in wave {seen[stack]!r}"
                )
            else:
                seen[stack] = wave.name
    missing = [s for s in stacks if s not in seen]
    if missing:
        problems.append(f"waves: region stacks {missing!r} are in no wave; add each to exactly one wave")
    if len(plan.waves[0].stacks) != 1:
        problems.append(
            f"waves.0.stacks: {shown(list(plan.waves[0].stacks))} is not allowed; the first wave is the canary "
            "and holds exactly one stack"
        )
    return problems + _routing_checks(plan)


def _routing_checks(plan: RolloutPlan) -> list[str]:
    """The global section and the waves' traffic steps (what Route 53 records can express)."""
    problems = []
    endpoint = plan.global_
    if endpoint is not None and endpoint.routing == "weighted":
        for i, r in enumerate(plan.regions):
            if r.traffic_share_pct != r.traffic_share_pct.to_integral_value():
                problems.append(f"regions.{i}.traffic_share_pct: {r.traffic_share_pct} is not allowed with "
                                "global.routing weighted; Route 53 weights are whole numbers (write a whole percent)")
    stacks = {r.stack for r in plan.regions}
    for i, wave in enumerate(plan.waves):
        if not wave.traffic:
            continue
        where = f"waves.{i}.traffic"
        if endpoint is None:
            problems.append(f"{where}: is not allowed without a global section; weights are the global stack's "
                            "Route 53 records")
            continue
        for stack, pct in wave.traffic.items():
            if stack not in stacks:
                problems.append(f"{where}: {shown(stack)} is not allowed; traffic names region stacks "
                                f"({', '.join(r.stack for r in plan.regions)})")
            elif endpoint.routing == "latency" and pct != 0:
                problems.append(f"{where}.{stack}: {pct} is not allowed with global.routing latency; latency "
                                "records take no weight: 0 takes the region out of DNS, or set routing: weighted")
            elif pct != pct.to_integral_value():
                problems.append(f"{where}.{stack}: {pct} is not allowed; Route 53 weights are whole numbers")
        named = sum((p for s, p in wave.traffic.items() if s in stacks), Decimal(0))
        rest = [r.stack for r in plan.regions if r.stack not in wave.traffic]
        if not rest and named == 0:
            problems.append(f"{where}: every region at 0 is not allowed; at least one region must stay in DNS")
        elif not rest and abs(named - 100) > SHARE_TOTAL_TOLERANCE:
            problems.append(f"{where}: percents total {named} is not allowed; naming every region they add up to 100")
        elif rest and named >= 100:
            problems.append(f"{where}: percents total {named} is not allowed; they must leave the regions not named "
                            f"({', '.join(rest)}) some traffic (name them with 0 to take them out of DNS)")
        queries = plan.gates.health.queries if plan.gates.health else ()
        blind = [q.name for q in queries if q.on_no_data == "fail"]
        for stack in wave.stacks:
            if wave.traffic.get(stack) == 0 and blind:
                problems.append(f"{where}.{stack}: 0 is not allowed while health queries {', '.join(blind)} fail on no "
                                f"data: {stack} would serve nothing while its health gate waits for samples; give it a "
                                "canary percent, or set on_no_data: pass on those queries")
    return problems


def parse_rollout_plan(data: Any, source: str = "rollout plan") -> RolloutPlan:
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping (environment, regions, waves, gates), got {type(data).__name__}")
    try:
        plan = RolloutPlan.model_validate(data)
    except ValidationError as exc:
        problems = problem_lines(exc, RolloutPlan)
    else:
        problems = cross_checks(plan)
    if problems:
        raise UserError(f"{source}: {joined_problems(problems)}")
    return plan


def load_rollout_plan(path: str | Path) -> RolloutPlan:
    return parse_rollout_plan(read_yaml_file(path, "rollout plan"), source=str(path))


def plan_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
