"""The gateway: TLS through an NLB, the OpenAI routes, JWT, per-tenant limits and overload shedding."""
from __future__ import annotations

import json
import math

import pytest

from infra.core.config import load_stack_config
from infra.core.labels import BENCH_TENANT
from infra.program.serving import ingress, vllm
from infra.program.serving.spec import ServingSpec

from .support import TAGS, spec_for


def _btp(spec: ServingSpec) -> dict:
    return ingress.backend_traffic_policy(spec)["spec"]


def test_route_sends_the_openai_paths_to_the_engine_service(any_spec: ServingSpec):
    route = ingress.http_route(any_spec)["spec"]
    (rule,) = route["rules"]
    assert {m["path"]["value"] for m in rule["matches"]} == {"/v1/chat/completions", "/v1/completions", "/v1/models"}
    assert all(m["path"]["type"] == "Exact" for m in rule["matches"])
    (backend,) = rule["backendRefs"]
    assert backend["name"] == any_spec.engine_service_name == f"vllm-{any_spec.model_key}-engine-service"
    assert backend["port"] == any_spec.defaults.vllm_service_port
    assert route["hostnames"] == [any_spec.config.ingress.hostname]
    assert route["parentRefs"][0]["name"] == ingress.GATEWAY_NAME


def test_streaming_timeouts_outlast_the_longest_answer(any_spec: ServingSpec):
    w, v = any_spec.config.workload, any_spec.plan.vllm
    longest_s = w.ttft_p95_ms / 1000 + v.max_model_len * w.tpot_p95_ms / 1000
    timeouts = ingress.http_route(any_spec)["spec"]["rules"][0]["timeouts"]
    assert timeouts["request"] == timeouts["backendRequest"] == f"{math.ceil(2 * longest_s)}s"
    assert int(timeouts["request"][:-1]) > longest_s


@pytest.mark.parametrize("name", ["prod", "8b-tp1"])
def test_tls_listener_and_nlb(name):
    spec = spec_for(name)
    ing = spec.config.ingress
    listeners = ingress.gateway(spec)["spec"]["listeners"]
    ann = ingress.nlb_annotations(spec, TAGS)
    nlb = "service.beta.kubernetes.io/aws-load-balancer-"
    # The service's name and this region's own, on the one port the NLB forwards.
    assert [(li["name"], li["hostname"]) for li in listeners] == [
        (ingress.LISTENER_NAME, ing.hostname), (ingress.REGIONAL_LISTENER_NAME, spec.config.regional_hostname)]
    assert ann[f"{nlb}type"] == "nlb"
    for listener in listeners:
        assert listener["port"] == 443
        if ing.tls_certificate_arn:  # TLS ends at the NLB listener with the ACM certificate
            assert listener["protocol"] == "HTTP" and "tls" not in listener
            assert ann[f"{nlb}ssl-cert"] == ing.tls_certificate_arn
            assert ann[f"{nlb}ssl-ports"] == "443"
            assert ann[f"{nlb}ssl-negotiation-policy"].startswith("ELBSecurityPolicy-TLS13")
        else:  # TLS ends at Envoy with the Kubernetes secret
            assert listener["protocol"] == "HTTPS"
            assert listener["tls"] == {"mode": "Terminate", "certificateRefs": [
                {"group": "", "kind": "Secret", "name": ing.tls_secret_name}]}
            assert not any(k.startswith(f"{nlb}ssl") for k in ann)
    svc = ingress.envoy_proxy(spec, TAGS)["spec"]["provider"]["kubernetes"]["envoyService"]
    assert svc["loadBalancerSourceRanges"] == list(ing.allowed_source_cidrs)
    assert svc["type"] == "LoadBalancer" and svc["externalTrafficPolicy"] == "Local"
    assert dict(kv.split("=") for kv in ann[f"{nlb}additional-resource-tags"].split(",")) == TAGS


def test_gateway_class_points_at_the_envoy_proxy(prod_spec: ServingSpec):
    gc = ingress.gateway_class(prod_spec)["spec"]
    proxy = ingress.envoy_proxy(prod_spec, TAGS)
    assert gc["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"
    assert (gc["parametersRef"]["name"], gc["parametersRef"]["namespace"]) == (
        proxy["metadata"]["name"], proxy["metadata"]["namespace"])
    assert ingress.gateway(prod_spec)["spec"]["gatewayClassName"] == ingress.gateway_class(prod_spec)["metadata"]["name"]


def test_jwt_from_config(any_spec: ServingSpec):
    sp = ingress.security_policy(any_spec)["spec"]
    (provider,) = sp["jwt"]["providers"]
    assert provider["issuer"] == any_spec.config.ingress.jwt_issuer
    assert provider["remoteJWKS"] == {"uri": any_spec.config.ingress.jwks_uri}
    assert sp["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": ingress.ROUTE_NAME}]
    (claim,) = provider["claimToHeaders"]
    # The rate-limit key is the verified claim's header.
    tenants = _btp(any_spec)["rateLimit"]["local"]["rules"][1]
    assert {"name": claim["header"], "type": "Distinct"} in tenants["clientSelectors"][0]["headers"]


def _applies(rule: dict, headers: dict[str, str]) -> bool:
    """Envoy Gateway's rate-limit rule matching (api/v1alpha1/ratelimit_types.go, v1.9.0): every
    header match of a client selector must hold; Distinct holds when the header is present,
    Exact when it equals the value; `invert` negates."""
    def holds(m: dict) -> bool:
        value = headers.get(m["name"])
        hit = value is not None if m.get("type") == "Distinct" else value == m["value"]
        return hit != bool(m.get("invert"))
    return all(holds(m) for sel in rule.get("clientSelectors", []) for m in sel["headers"])


def test_per_tenant_rate_limit_from_config(any_spec: ServingSpec):
    rl = _btp(any_spec)["rateLimit"]
    assert rl["type"] == "Local"
    bench, tenants = rl["local"]["rules"]
    ing = any_spec.config.ingress
    assert tenants["limit"] == {"requests": ing.rate_limit_requests_per_minute, "unit": "Minute"}
    assert bench["limit"] == {"requests": ing.bench_rate_limit_requests_per_minute, "unit": "Minute"}


@pytest.mark.parametrize("tenant, bucket", [(BENCH_TENANT, 0), ("acme", 1), ("llm-fleet-bench-2", 1)])
def test_the_benchmark_tenant_has_a_bucket_of_its_own(prod_spec: ServingSpec, tenant, bucket):
    """Every rule whose selectors hold applies (each its own bucket): the benchmark tenant
    meets only its rule, any other tenant only the per-tenant one."""
    rules = _btp(prod_spec)["rateLimit"]["local"]["rules"]
    headers = {prod_spec.defaults.tenant_header: tenant}
    assert [i for i, r in enumerate(rules) if _applies(r, headers)] == [bucket]


@pytest.mark.parametrize("claim_semantics", ["overwrite", "append"])
def test_a_client_cannot_pick_its_rate_limit_bucket(prod_spec: ServingSpec, claim_semantics):
    """The tenant header reaching the rate limiter is the JWT claim, whatever the client sent
    and whether Envoy's claim-to-header overwrites or appends: the ClientTrafficPolicy's
    `headers.earlyRequestHeaders` removes it "before envoy performs routing, tracing and
    built-in header manipulation" (api/v1alpha1/clienttrafficpolicy_types.go, v1.9.0; an HCM
    early header mutation, internal/xds/translator/listener.go), i.e. before the JWT filter."""
    header = prod_spec.defaults.tenant_header
    early = ingress.client_traffic_policy(prod_spec)["spec"]["headers"]["earlyRequestHeaders"]
    (provider,) = ingress.security_policy(prod_spec)["spec"]["jwt"]["providers"]
    (claim,) = provider["claimToHeaders"]
    assert claim["header"] == header
    request = {header: "someone-else", "authorization": "Bearer ..."}
    after_early = {k: v for k, v in request.items() if k not in early["remove"]}
    verified = "acme"  # the token's claim
    value = after_early.get(header)
    after_jwt = {**after_early, header: verified if value is None or claim_semantics == "overwrite"
                 else f"{value},{verified}"}
    assert after_jwt[header] == verified


def test_admission_is_per_engine_at_the_plans_limit(any_spec: ServingSpec):
    """Each Envoy opens at most `admission_connections_per_proxy` connections to one engine,
    one HTTP/1.1 request each: with every Envoy at its cap an engine holds exactly the control
    block's admission limit, at any fleet size; the cluster-wide budgets never bind first."""
    c = any_spec.plan.control
    cb = _btp(any_spec)["circuitBreaker"]
    proxy = ingress.envoy_proxy(any_spec, TAGS)["spec"]["provider"]["kubernetes"]["envoyDeployment"]
    assert proxy["replicas"] == c.gateway_proxies == any_spec.envoy_replicas
    assert cb["perEndpoint"] == {"maxConnections": c.admission_connections_per_proxy}
    assert cb["perEndpoint"]["maxConnections"] * proxy["replicas"] == c.admission_limit_per_replica
    assert c.admission_limit_per_replica > c.max_num_seqs  # a few may wait for a slot
    for replicas in range(c.min_replicas, c.max_replicas + 1):
        assert cb["maxConnections"] >= cb["perEndpoint"]["maxConnections"] * replicas
    assert cb["maxParallelRequests"] == cb["maxConnections"]
    # The pending queue is too small to be a queue (the simulator takes it as none).
    assert cb["maxPendingRequests"] == any_spec.defaults.pending_requests_per_proxy
    assert cb["maxPendingRequests"] * proxy["replicas"] < 0.1 * c.admission_limit_per_replica * c.min_replicas


@pytest.mark.parametrize("status, code", [(503, "overloaded"), (429, "rate_limit_exceeded")])
def test_shed_and_rate_limited_answers_carry_retry_after(any_spec: ServingSpec, status, code):
    """Both are Envoy's local replies (the router's circuit-breaker overflow, the local rate
    limit), and Envoy Gateway puts the custom-response filter first in the HTTP filter chain
    (internal/xds/translator/httpfilters.go, v1.9.0: custom response 0, JWT 10, local rate
    limit 302, router 310), so a local reply passes through it on the way out."""
    overrides = {o["match"]["statusCodes"][0]["value"]: o for o in _btp(any_spec)["responseOverride"]}
    override = overrides[status]
    assert override["match"]["statusCodes"] == [{"type": "Value", "value": status}]
    (header,) = override["response"]["header"]["set"]
    expected = math.ceil(any_spec.e2e_p95_ms / 1000) if status == 503 else 60
    assert header == {"name": "Retry-After", "value": str(expected)}
    assert "statusCode" not in override["response"]  # the status stays
    assert override["response"]["contentType"] == "application/json"
    body = json.loads(override["response"]["body"]["inline"])
    assert set(body["error"]) == {"message", "type", "code"} and body["error"]["code"] == code


def test_the_simulator_retries_after_what_the_gateway_sends(prod_spec: ServingSpec):
    from infra.cli.simulate import _retry_after_s
    from infra.core.resolve import resolve

    assert _retry_after_s(resolve("prod")) == ingress.retry_after_overloaded_s(prod_spec)


def test_retries_connect_failure_only_and_least_request(any_spec: ServingSpec):
    btp = _btp(any_spec)
    assert btp["retry"]["retryOn"] == {"triggers": ["connect-failure"]}
    assert btp["retry"]["numRetries"] == any_spec.defaults.connect_retries
    assert "timeout" not in btp["retry"].get("perRetry", {})  # a per-try timeout would cut streams
    assert btp["loadBalancer"] == {"type": "LeastRequest"}
    assert btp["timeout"]["tcp"]["connectTimeout"] == "5s"
    assert "requestTimeout" not in btp["timeout"]["http"]  # the route's stream-friendly timeouts rule


def test_registered_ingress(serving_run, prod_spec: ServingSpec):
    rel = serving_run.releases()["eg"]
    assert rel.inputs["chart"] == "oci://docker.io/envoyproxy/gateway-helm"
    assert rel.inputs["version"] == "v1.9.0" and "repositoryOpts" not in rel.inputs
    for obj in ingress.ingress_objects(prod_spec, TAGS):
        record = serving_run.custom(obj["kind"], obj["metadata"]["name"])
        assert record.inputs["spec"] == obj["spec"]
        assert record.inputs["apiVersion"] == obj["apiVersion"]
        assert serving_run.depends_on(record, rel)  # CRDs first


def _security_targets(objects: list[dict]) -> list[dict]:
    return [t for o in objects if o["kind"] == "SecurityPolicy" for t in o["spec"]["targetRefs"]]


def test_health_route_is_unauthenticated_and_answered_by_a_ready_engine(any_spec: ServingSpec):
    """`GET /health` on both hostnames goes to the engine Service's own /health, with no JWT.

    Envoy Gateway puts only Ready endpoints into Envoy's cluster (envoyproxy/gateway
    internal/gatewayapi/route.go `getIREndpointsFromEndpointSlice`: `conditions.ready` true or
    unset, or draining when not ready) and an engine is Ready only while its readiness probe on
    the same path answers; so the route answers 200 when at least one engine is ready.
    """
    route = ingress.health_route(any_spec)
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "Exact", "value": "/health"}, "method": "GET"}]
    assert rule["backendRefs"] == ingress.http_route(any_spec)["spec"]["rules"][0]["backendRefs"]
    assert vllm.probes(any_spec)["readinessProbe"]["httpGet"]["path"] == "/health"
    assert route["spec"]["hostnames"] == [any_spec.config.regional_hostname, any_spec.config.ingress.hostname]
    assert {p["sectionName"] for p in route["spec"]["parentRefs"]} == {ingress.LISTENER_NAME, ingress.REGIONAL_LISTENER_NAME}
    objects = ingress.ingress_objects(any_spec, TAGS)
    # JWT is attached to the OpenAI route only: never to this route, nor to the Gateway (which would cover it).
    assert _security_targets(objects) == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                           "name": ingress.ROUTE_NAME}]
    policy = ingress.health_traffic_policy(any_spec)["spec"]
    assert policy["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                     "name": ingress.HEALTH_ROUTE_NAME}]
    assert "connect-failure" in policy["retry"]["retryOn"]["triggers"]
    assert "clientSelectors" not in policy["rateLimit"]["local"]["rules"][0]  # one bucket for every anonymous caller


@pytest.mark.parametrize("stack", ["prod", "prod-us-west-2"])
def test_rollout_health_gate_probes_the_unauthenticated_route_of_its_region(stack):
    """The HTTP check of stacks/prod.yaml, filled for a region, names a host and path that an
    HTTPRoute without JWT serves on that region's gateway."""
    from urllib.parse import urlsplit

    from infra.core.paths import REPO_ROOT
    from infra.core.rollout.spec import fill, load_rollout_plan

    from .support import make_spec

    plan = load_rollout_plan(REPO_ROOT / "stacks" / "prod.yaml")
    share = plan.region_of(stack)
    (check,) = plan.gates.health.http
    url = urlsplit(fill(check.url, stack=stack, region=share.region, environment=plan.environment))
    spec = make_spec(load_stack_config(stack, REPO_ROOT), stack)
    objects = ingress.ingress_objects(spec, TAGS)
    unauthenticated = {t["name"] for t in _security_targets(objects)}
    serving = [o for o in objects if o["kind"] == "HTTPRoute" and url.hostname in o["spec"]["hostnames"]
               and o["metadata"]["name"] not in unauthenticated
               and any(m["path"] == {"type": "Exact", "value": url.path} for r in o["spec"]["rules"] for m in r["matches"])]
    assert [o["metadata"]["name"] for o in serving] == [ingress.HEALTH_ROUTE_NAME]
    assert url.scheme == "https" and check.expect_status == 200
    gateway = next(o for o in objects if o["kind"] == "Gateway")
    assert url.hostname in {li["hostname"] for li in gateway["spec"]["listeners"]}
    assert url.hostname == spec.config.regional_hostname != spec.config.ingress.hostname


def test_the_gateway_service_has_a_fixed_name_and_the_gateway_waits_for_its_address(prod_spec: ServingSpec):
    """The global stack's alias records need the NLB's DNS name: the Envoy Service is named (so the
    workloads can read it back) and the Gateway is awaited until Envoy Gateway marks it Programmed
    (it does once the Service has an address). pulumi-kubernetes reads `pulumi.com/waitFor` from
    4.18 on (its await logic for custom resources); we pin a later one in requirements.txt."""
    proxy = ingress.envoy_proxy(prod_spec, TAGS)["spec"]["provider"]["kubernetes"]["envoyService"]
    assert proxy["name"] == ingress.GATEWAY_SERVICE_NAME
    assert ingress.gateway(prod_spec)["metadata"]["annotations"] == {"pulumi.com/waitFor": "condition=Programmed"}


@pytest.mark.parametrize("status,hostname", [
    ({"loadBalancer": {"ingress": [{"hostname": "a-1.elb.us-east-1.amazonaws.com"}]}}, "a-1.elb.us-east-1.amazonaws.com"),
    ({"load_balancer": {"ingress": [{"hostname": "b-2.elb.us-west-2.amazonaws.com"}]}}, "b-2.elb.us-west-2.amazonaws.com"),
])
def test_the_nlb_hostname_is_read_from_the_service_status(status, hostname):
    assert ingress.load_balancer_hostname(status) == hostname


@pytest.mark.parametrize("status", [None, {}, {"loadBalancer": {}}, {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}])
def test_a_service_without_a_load_balancer_hostname_is_an_error_not_an_empty_record(status):
    with pytest.raises(ValueError, match="no load balancer hostname"):
        ingress.load_balancer_hostname(status)


def test_the_workloads_read_the_gateway_service_back_once_the_gateway_exists(serving_run):
    [read] = [n for n in serving_run.resources if n.type == "kubernetes:core/v1:Service"]
    assert read.inputs == {}  # a read: nothing of ours to price or to apply
    assert read.name == "serving-ingress-gateway-service"
