"""The gateway: TLS through an NLB, the OpenAI routes, JWT, per-tenant limits and overload shedding."""
from __future__ import annotations

import json
import math

import pytest

from infra.program.serving import ingress
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
    (listener,) = ingress.gateway(spec)["spec"]["listeners"]
    ann = ingress.nlb_annotations(spec, TAGS)
    nlb = "service.beta.kubernetes.io/aws-load-balancer-"
    assert listener["port"] == 443 and listener["hostname"] == ing.hostname
    assert ann[f"{nlb}type"] == "nlb"
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
    rule = _btp(any_spec)["rateLimit"]["local"]["rules"][0]
    assert rule["clientSelectors"] == [{"headers": [{"name": claim["header"], "type": "Distinct"}]}]


def test_per_tenant_rate_limit_from_config(any_spec: ServingSpec):
    rl = _btp(any_spec)["rateLimit"]
    assert rl["type"] == "Local"
    (rule,) = rl["local"]["rules"]
    assert rule["limit"] == {"requests": any_spec.config.ingress.rate_limit_requests_per_minute, "unit": "Minute"}


def test_circuit_breaker_at_the_plans_admission_limit(any_spec: ServingSpec):
    plan = any_spec.plan
    cb = _btp(any_spec)["circuitBreaker"]
    fleet_limit = plan.control.admission_limit_per_replica * plan.replicas_max
    per_proxy = math.ceil(fleet_limit / any_spec.envoy_replicas)
    assert cb["maxConnections"] == cb["maxParallelRequests"] == per_proxy
    assert per_proxy * any_spec.envoy_replicas >= fleet_limit > (per_proxy - 1) * any_spec.envoy_replicas
    # The connection-pool queue is too small to be a queue.
    assert cb["maxPendingRequests"] <= max(any_spec.defaults.pending_min, 0.05 * per_proxy + 1)
    proxy = ingress.envoy_proxy(any_spec, TAGS)["spec"]["provider"]["kubernetes"]["envoyDeployment"]
    assert proxy["replicas"] == any_spec.envoy_replicas


def test_overload_answers_503_with_retry_after(any_spec: ServingSpec):
    (override,) = _btp(any_spec)["responseOverride"]
    assert override["match"]["statusCodes"] == [{"type": "Value", "value": 503}]
    (header,) = override["response"]["responseHeaderModifier"]["set"]
    assert header == {"name": "Retry-After", "value": str(math.ceil(any_spec.e2e_p95_s))}
    body = json.loads(override["response"]["body"]["inline"])
    assert body["error"]["code"] == "overloaded"


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
        record = serving_run.custom(obj["kind"])
        assert record.inputs["spec"] == obj["spec"]
        assert record.inputs["apiVersion"] == obj["apiVersion"]
        assert serving_run.depends_on(record, rel)  # CRDs first
