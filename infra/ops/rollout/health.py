"""The health gate's checks: PromQL SLO queries against Prometheus and HTTP checks (urllib).

`GateHealthChecker(gate, environment, slo_targets)` implements `interfaces.HealthChecker`: one
round runs every query (an instant vector or scalar) and every HTTP check, filling `{stack}`,
`{region}`, `{environment}`. The queries go to the stack's `PrometheusClient`
(`prometheus_for(stack)`): by default `UrlPrometheus`, `GET <prometheus_url>/api/v1/query?query=...`
from here; for a private cluster the command layer hands the in-VPC one
(`infra.ops.deploy.prometheus.InVpcPrometheus`). HTTP checks run from here: they probe what
clients reach. A query that names an SLO (`slo: ttft_p95`) is bound to the stack's served model
and target by `slo_targets(stack)` (the command layer asks the resolver). A check that cannot
reach its endpoint fails with the reason (never raises). `fetch` is injectable for tests.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Sequence

from infra.core.config import Workload

from infra.core.rollout.gates import query_verdict
from infra.core.rollout.interfaces import CheckReport, CheckResult, PrometheusClient
from infra.core.rollout.spec import HealthGate, HttpCheck, PromQuery, fill

# fetch(url, timeout_s) -> (status, body bytes); raises OSError/URLError when unreachable.
Fetch = Callable[[str, float], tuple[int, bytes]]
# slo_targets(stack) -> (served model name, declared workload with its SLO targets)
SloTargets = Callable[[str], tuple[str, Workload]]
PROM_TIMEOUT_S = 15.0


def urllib_fetch(url: str, timeout_s: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "llm-fleet-rollout"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310 - http(s) URLs from the plan
            return resp.status, resp.read(1 << 20)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(1 << 16) if exc.fp else b""


def parse_prometheus(body: bytes) -> list[tuple[str, float]]:
    """Samples of a Prometheus instant-query response; ValueError when it is not one."""
    doc = json.loads(body)
    if not isinstance(doc, dict) or doc.get("status") != "success":
        error = doc.get("error") if isinstance(doc, dict) else None
        raise ValueError(f"query failed: {error or 'status is not success'}")
    data = doc.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return [("", float(result[1]))]
    if kind == "vector":
        out = []
        for item in result or []:
            labels = item.get("metric") or {}
            text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__")
            out.append((text, float(item["value"][1])))
        return out
    raise ValueError(f"resultType {kind!r} is not an instant vector or scalar")


def query_url(base: str, promql: str) -> str:
    return f"{base.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": promql})


class UrlPrometheus:
    """`PrometheusClient` straight to `<prometheus_url>` (filled for the stack) from here."""

    def __init__(self, url_template: str, environment: str, fetch: Fetch = urllib_fetch) -> None:
        self.url_template = url_template
        self.environment = environment
        self.fetch = fetch

    def query(self, stack: str, region: str, queries: Sequence[str]) -> list[tuple[int, bytes]]:
        base = fill(self.url_template, stack=stack, region=region, environment=self.environment).rstrip("/")
        out = []
        for q in queries:
            try:
                out.append(self.fetch(query_url(base, q), PROM_TIMEOUT_S))
            except (OSError, urllib.error.URLError) as exc:
                out.append((0, f"cannot query {base}: {exc}".encode()))
        return out


class GateHealthChecker:
    def __init__(self, gate: HealthGate, environment: str, fetch: Fetch = urllib_fetch,
                 slo_targets: SloTargets | None = None,
                 prometheus_for: Callable[[str], PrometheusClient] | None = None) -> None:
        self.gate = gate
        self.environment = environment
        self.fetch = fetch
        self.slo_targets = slo_targets
        direct = UrlPrometheus(gate.prometheus_url or "", environment, fetch)
        self.prometheus_for = prometheus_for or (lambda stack: direct)

    def _values(self, stack: str, region: str) -> dict[str, str]:
        return {"stack": stack, "region": region, "environment": self.environment}

    def _bound(self, q: PromQuery, stack: str) -> PromQuery:
        if q.slo is None:
            return q
        if self.slo_targets is None:
            raise ValueError(f"health query {q.name} names slo {q.slo}; the checker needs the stacks' SLO targets")
        return q.bind(*self.slo_targets(stack))

    def _verdict(self, q: PromQuery, answer: tuple[int, bytes]) -> CheckResult:
        status, body = answer
        if status == 0:
            return CheckResult(q.name, "fail", body.decode(errors="replace"))
        if status != 200:
            return CheckResult(q.name, "fail", f"Prometheus answered HTTP {status}")
        try:
            samples = parse_prometheus(body)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            return CheckResult(q.name, "fail", f"cannot read Prometheus' answer: {exc}")
        verdict, detail = query_verdict(q, samples)
        return CheckResult(q.name, verdict, detail)

    def _http(self, c: HttpCheck, values: dict[str, str]) -> CheckResult:
        url = fill(c.url, **values)
        try:
            status, _ = self.fetch(url, c.timeout_s)
        except (OSError, urllib.error.URLError) as exc:
            return CheckResult(c.name, "fail", f"{url}: unreachable ({exc})")
        if status != c.expect_status:
            return CheckResult(c.name, "fail", f"{url}: HTTP {status}, expected {c.expect_status}")
        return CheckResult(c.name, "pass", f"{url}: HTTP {status}")

    def check(self, stack: str, region: str) -> CheckReport:
        values = self._values(stack, region)
        queries = [self._bound(q, stack) for q in self.gate.queries]
        answers = self.prometheus_for(stack).query(stack, region, [fill(q.query, **values) for q in queries]) if queries else []
        results: list[Any] = [self._verdict(q, a) for q, a in zip(queries, answers)]
        results += [self._http(c, values) for c in self.gate.http]
        return CheckReport(tuple(results))
