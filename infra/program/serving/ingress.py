"""The public OpenAI-compatible endpoint: Envoy Gateway behind an AWS NLB.

Chain: NLB (TLS listener) -> Envoy (Gateway listeners: the service's hostname and this
region's own) -> HTTPRoute for the OpenAI paths -> the vLLM engine Service. Policies attached to
the OpenAI route:

  SecurityPolicy        JWT from the configured issuer (remote JWKS); the tenant claim is
                        copied into a header for the rate limiter.
  BackendTrafficPolicy  per-tenant local rate limit (429 + Retry-After), the benchmark tenant
                        in a bucket of its own; admission at the plan's limit per engine: a
                        per-endpoint circuit breaker (`perEndpoint.maxConnections`, per Envoy
                        replica, one HTTP/1.1 request per connection) with a small pending
                        queue, so an engine past its limit answers 503 + Retry-After at once
                        instead of queueing in vLLM, at every fleet size; retries on connect
                        failure only (a generation is not idempotent); least-request balancing;
                        timeouts long enough for the longest answer the context allows.
  ClientTrafficPolicy   client-side timeouts (slow request bodies, idle keep-alives), and the
                        tenant header removed from every client request before any filter runs
                        (`headers.earlyRequestHeaders`), so only the JWT claim can set it.

Error responses (503 at admission, 429 at the rate limit) carry an OpenAI-style JSON body and a
`Retry-After` header: `responseOverride[].response.header` (an HTTPHeaderFilter;
envoyproxy/gateway#6308, first in v1.6.0: api/v1alpha1/shared_types.go CustomResponse.Header
at v1.9.0). 503 says one e2e p95 (`control.retry_after_s`); 429 one rate-limit window.

Load balancer: the NLB is requested with annotations on the Envoy Service (through the
EnvoyProxy resource), which the in-tree AWS service controller of EKS honours with the cluster
role's permissions: nothing else to install or grant. The Service has a fixed name
(`GATEWAY_SERVICE_NAME`), and the Gateway waits (`pulumi.com/waitFor`) until Envoy Gateway marks it
Programmed, which it does once the Service has its load balancer's address: the workloads then
read that Service back for the NLB's DNS name, which the global stack's alias records point at. TLS ends at the NLB with the ACM
certificate (tls_certificate_arn) or at Envoy with a Kubernetes secret (tls_secret_name).
Limits of that choice (instance targets, no access logs) are in docs/serving.md.

Envoy counts circuit-breaker and local rate-limit budgets per proxy replica: the admission
limit per engine is `control.admission_connections_per_proxy` x `control.gateway_proxies`
Envoy replicas (the control block rounds it to a multiple), and the cluster-wide budgets are
set above what the per-endpoint ones allow at the largest fleet, so they never bind first.

Health: a second HTTPRoute serves `GET /health` on both hostnames without JWT (no
SecurityPolicy targets it, none targets the Gateway) from the engines' own `/health`. Envoy
Gateway puts only Ready endpoints of the engine Service into Envoy's cluster (a not-ready one
is dropped or drained: `getIREndpointsFromEndpointSlice`, internal/gatewayapi/route.go), and an
engine is Ready only while its `/health` answers (vllm.py's readiness probe), so the route
answers 200 when at least one engine is ready and 503 (no healthy upstream) when none is. Its
own BackendTrafficPolicy retries on connect failures and 5xx (in Envoy's panic mode, below 50 %
healthy hosts, a request may land on a loading engine first) and rate-limits anonymous callers
per proxy. The rollout's HTTP gate probes `https://<regional hostname>/health`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.core.catalog.charts import chart
from infra.core.config import LISTENER_PORT
from infra.core.labels import BENCH_TENANT
from infra.core.sizing.control import RATE_LIMIT_UNIT, RATE_LIMIT_WINDOW_S, retry_after_s
from infra.program.serving import kube
from infra.program.serving.spec import (
    SYSTEM_NODE_SELECTOR,
    ZONE_KEY,
    ServingSpec,
    common_labels,
    seconds,
)
from infra.program.serving.vllm import HEALTH_PATH, drain_timeout_s  # the engines' probe path, served as is

GATEWAY_API = "gateway.networking.k8s.io"
EG_API = "gateway.envoyproxy.io"
CONTROLLER_NAME = "gateway.envoyproxy.io/gatewayclass-controller"  # gateway-helm default
GATEWAY_CLASS = "llm-fleet"
GATEWAY_NAME = "llm-fleet"
PROXY_CONFIG_NAME = "llm-fleet-proxy"
GATEWAY_SERVICE_NAME = "llm-fleet-gateway"  # the Envoy Service (the NLB), in the controller's namespace
# pulumi-kubernetes (>= 4.18) waits on a custom resource for what this annotation names; Envoy
# Gateway sets Programmed once the Gateway's Service has an address (the NLB's DNS name).
WAIT_FOR_ANNOTATION = "pulumi.com/waitFor"
GATEWAY_READY = "condition=Programmed"
ROUTE_NAME = "openai"
HEALTH_ROUTE_NAME = "health"
LISTENER_NAME = "https"
REGIONAL_LISTENER_NAME = "https-regional"
OPENAI_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/models")
JWT_PROVIDER = "tenant-idp"
NLB = "service.beta.kubernetes.io/aws-load-balancer-"


# --- numbers derived from the plan ---------------------------------------------------------------

def connections_per_endpoint(spec: ServingSpec) -> int:
    """Each Envoy's share of an engine's admission limit (the control block's)."""
    return spec.plan.control.admission_connections_per_proxy


def connections_per_proxy(spec: ServingSpec) -> int:
    """Cluster-wide budget per Envoy: every engine of the largest fleet at its per-endpoint cap."""
    return connections_per_endpoint(spec) * spec.plan.control.max_replicas


def request_timeout_s(spec: ServingSpec) -> int:
    """Streams must outlive the longest answer the context allows, produced at the TPOT SLO;
    twice that is the bound past which a request is surely stuck."""
    w, v = spec.config.workload, spec.plan.vllm
    longest_s = w.ttft_p95_ms / 1000.0 + v.max_model_len * w.tpot_p95_ms / 1000.0
    return math.ceil(2 * longest_s)


def retry_after_overloaded_s(spec: ServingSpec) -> int:
    """503 at admission: come back after about one request's lifetime (control.retry_after_s)."""
    return retry_after_s(spec.e2e_p95_ms)


def retry_after_rate_limited_s(spec: ServingSpec) -> int:
    """429: the tenant's bucket refills within one rate-limit window."""
    return RATE_LIMIT_WINDOW_S


# --- chart and proxy ---------------------------------------------------------------------------

def gateway_helm_values(spec: ServingSpec) -> dict:
    return {
        "deployment": {
            "replicas": 2,  # leader-elected control plane; the data plane keeps serving without it
            "pod": {"affinity": _system_affinity()},
        },
        "podDisruptionBudget": {"minAvailable": 1},
        "config": {"envoyGateway": {"gateway": {"controllerName": CONTROLLER_NAME}}},
    }


def _system_affinity() -> dict:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": k, "operator": "In", "values": [v]} for k, v in SYSTEM_NODE_SELECTOR.items()]}
    ]}}}


def _nlb_tags(tags: dict[str, str]) -> str:
    for k, v in tags.items():
        if any(c in f"{k}{v}" for c in ",="):
            raise ValueError(f"tag {k}={v} cannot be passed in the NLB tag annotation (contains ',' or '=')")
    return ",".join(f"{k}={v}" for k, v in sorted(tags.items()))


def nlb_annotations(spec: ServingSpec, tags: dict[str, str]) -> dict[str, str]:
    ing = spec.config.ingress
    ann = {
        f"{NLB}type": "nlb",
        f"{NLB}cross-zone-load-balancing-enabled": "true",
        f"{NLB}additional-resource-tags": _nlb_tags(tags),
    }
    if ing.tls_certificate_arn:
        ann.update({
            f"{NLB}ssl-cert": ing.tls_certificate_arn,
            f"{NLB}ssl-ports": str(LISTENER_PORT),
            f"{NLB}ssl-negotiation-policy": spec.defaults.nlb_tls_policy,
            f"{NLB}backend-protocol": "tcp",
        })
    return ann


def envoy_proxy(spec: ServingSpec, tags: dict[str, str]) -> dict:
    d = spec.defaults
    proxy_labels = {"gateway.envoyproxy.io/owning-gateway-name": GATEWAY_NAME}
    return {
        "apiVersion": f"{EG_API}/v1alpha1",
        "kind": "EnvoyProxy",
        "metadata": {"name": PROXY_CONFIG_NAME, "namespace": spec.namespace, "labels": common_labels("ingress")},
        "spec": {
            "provider": {
                "type": "Kubernetes",
                "kubernetes": {
                    "envoyDeployment": {
                        "replicas": spec.envoy_replicas,
                        "pod": {
                            "nodeSelector": dict(SYSTEM_NODE_SELECTOR),
                            "topologySpreadConstraints": [{
                                "maxSkew": 1, "topologyKey": ZONE_KEY, "whenUnsatisfiable": "ScheduleAnyway",
                                "labelSelector": {"matchLabels": proxy_labels},
                            }],
                        },
                        "container": {"resources": {
                            "requests": {"cpu": "500m", "memory": "512Mi"},
                            "limits": {"cpu": "2", "memory": "1Gi"},
                        }},
                    },
                    "envoyService": {
                        "name": GATEWAY_SERVICE_NAME,
                        "type": "LoadBalancer",
                        # Keep the client address and send NLB traffic only to nodes with an Envoy.
                        "externalTrafficPolicy": "Local",
                        "annotations": nlb_annotations(spec, tags),
                        "loadBalancerSourceRanges": list(spec.config.ingress.allowed_source_cidrs),
                    },
                    "envoyPDB": {"minAvailable": 1},
                },
            },
            # Streams in flight when an Envoy pod stops get the same window as a draining engine.
            "shutdown": {"drainTimeout": seconds(d.endpoint_propagation_s + drain_timeout_s(spec)),
                         "minDrainDuration": seconds(d.endpoint_propagation_s)},
        },
    }


# --- Gateway API objects -----------------------------------------------------------------------

def gateway_class(spec: ServingSpec) -> dict:
    return {
        "apiVersion": f"{GATEWAY_API}/v1",
        "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS, "labels": common_labels("ingress")},
        "spec": {
            "controllerName": CONTROLLER_NAME,
            "parametersRef": {"group": EG_API, "kind": "EnvoyProxy", "name": PROXY_CONFIG_NAME,
                              "namespace": spec.namespace},
        },
    }


def _listener(spec: ServingSpec, name: str, hostname: str) -> dict:
    ing = spec.config.ingress
    listener: dict = {
        "name": name,
        "hostname": hostname,
        "port": LISTENER_PORT,
        "allowedRoutes": {"namespaces": {"from": "Same"}},
    }
    if ing.tls_secret_name:
        # TLS ends at Envoy; the NLB passes TCP through.
        listener.update(protocol="HTTPS", tls={
            "mode": "Terminate",
            "certificateRefs": [{"group": "", "kind": "Secret", "name": ing.tls_secret_name}],
        })
    else:
        # TLS ends at the NLB's TLS listener (ACM certificate); Envoy receives plain HTTP.
        listener["protocol"] = "HTTP"
    return listener


def gateway(spec: ServingSpec) -> dict:
    """One listener for the service's hostname, one for this region's own (the certificate must
    cover both)."""
    return {
        "apiVersion": f"{GATEWAY_API}/v1",
        "kind": "Gateway",
        "metadata": {"name": GATEWAY_NAME, "namespace": spec.namespace, "labels": common_labels("ingress"),
                     "annotations": {WAIT_FOR_ANNOTATION: GATEWAY_READY}},
        "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": [
            _listener(spec, LISTENER_NAME, spec.config.ingress.hostname),
            _listener(spec, REGIONAL_LISTENER_NAME, spec.config.regional_hostname),
        ]},
    }


def _parent(section: str) -> dict:
    return {"group": GATEWAY_API, "kind": "Gateway", "name": GATEWAY_NAME, "sectionName": section}


def _engine_backend(spec: ServingSpec) -> list[dict]:
    return [{"group": "", "kind": "Service", "name": spec.engine_service_name, "port": spec.defaults.vllm_service_port}]


def http_route(spec: ServingSpec) -> dict:
    timeout = seconds(request_timeout_s(spec))
    return {
        "apiVersion": f"{GATEWAY_API}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": ROUTE_NAME, "namespace": spec.namespace, "labels": common_labels("ingress")},
        "spec": {
            "parentRefs": [_parent(LISTENER_NAME)],
            "hostnames": [spec.config.ingress.hostname],
            "rules": [{
                "matches": [{"path": {"type": "Exact", "value": p}} for p in OPENAI_PATHS],
                "backendRefs": _engine_backend(spec),
                "timeouts": {"request": timeout, "backendRequest": timeout},
            }],
        },
    }


def health_route(spec: ServingSpec) -> dict:
    """`GET /health` on both hostnames, no JWT, answered by a Ready engine's own /health."""
    return {
        "apiVersion": f"{GATEWAY_API}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": HEALTH_ROUTE_NAME, "namespace": spec.namespace, "labels": common_labels("ingress")},
        "spec": {
            "parentRefs": [_parent(REGIONAL_LISTENER_NAME), _parent(LISTENER_NAME)],
            "hostnames": [spec.config.regional_hostname, spec.config.ingress.hostname],
            "rules": [{
                "matches": [{"path": {"type": "Exact", "value": HEALTH_PATH}, "method": "GET"}],
                "backendRefs": _engine_backend(spec),
                "timeouts": {"request": seconds(spec.defaults.health_timeout_s)},
            }],
        },
    }


def health_traffic_policy(spec: ServingSpec) -> dict:
    d = spec.defaults
    return {
        "apiVersion": f"{EG_API}/v1alpha1",
        "kind": "BackendTrafficPolicy",
        "metadata": {"name": f"{HEALTH_ROUTE_NAME}-backend", "namespace": spec.namespace,
                     "labels": common_labels("ingress")},
        "spec": {
            "targetRefs": [{"group": GATEWAY_API, "kind": "HTTPRoute", "name": HEALTH_ROUTE_NAME}],
            # One bucket per proxy for every anonymous caller (no client selector).
            "rateLimit": {"type": "Local", "local": {"rules": [
                {"limit": {"requests": d.health_requests_per_minute, "unit": "Minute"}}]}},
            # /health is idempotent: retry elsewhere when a loading engine refuses or fails.
            "retry": {
                "numRetries": d.health_retries,
                "retryOn": {"triggers": ["connect-failure", "refused-stream", "reset", "5xx"]},
                "perRetry": {"backOff": {"baseInterval": "100ms", "maxInterval": "1s"}},
            },
            "timeout": {"tcp": {"connectTimeout": seconds(d.connect_timeout_s)}},
        },
    }


def _route_target() -> list[dict]:
    return [{"group": GATEWAY_API, "kind": "HTTPRoute", "name": ROUTE_NAME}]


def security_policy(spec: ServingSpec) -> dict:
    ing, d = spec.config.ingress, spec.defaults
    return {
        "apiVersion": f"{EG_API}/v1alpha1",
        "kind": "SecurityPolicy",
        "metadata": {"name": f"{ROUTE_NAME}-jwt", "namespace": spec.namespace, "labels": common_labels("ingress")},
        "spec": {
            "targetRefs": _route_target(),
            "jwt": {"providers": [{
                "name": JWT_PROVIDER,
                "issuer": ing.jwt_issuer,
                "remoteJWKS": {"uri": ing.jwks_uri},
                # The rate-limit key is the verified claim: the ClientTrafficPolicy removes any
                # client-sent value before this filter runs (client_traffic_policy).
                "claimToHeaders": [{"claim": d.tenant_claim, "header": d.tenant_header}],
            }]},
        },
    }


def rate_limit_rules(spec: ServingSpec) -> list[dict]:
    """One bucket per tenant (distinct header values), and the benchmark tenant's own, larger
    one: every rule whose selectors all match applies, so the tenants' rule excludes it."""
    ing, header = spec.config.ingress, spec.defaults.tenant_header
    return [
        {"clientSelectors": [{"headers": [{"name": header, "type": "Exact", "value": BENCH_TENANT}]}],
         "limit": {"requests": ing.bench_rate_limit_requests_per_minute, "unit": RATE_LIMIT_UNIT}},
        {"clientSelectors": [{"headers": [
            {"name": header, "type": "Distinct"},
            {"name": header, "type": "Exact", "value": BENCH_TENANT, "invert": True},
        ]}],
         "limit": {"requests": ing.rate_limit_requests_per_minute, "unit": RATE_LIMIT_UNIT}},
    ]


def error_override(status: int, message: str, code: str, retry_after: int) -> dict:
    """A responseOverride: the status keeps, the body is OpenAI's error shape, plus Retry-After."""
    return {
        "match": {"statusCodes": [{"type": "Value", "value": status}]},
        "response": {
            "contentType": "application/json",
            "body": {"type": "Inline", "inline": json_error(message, code)},
            "header": {"set": [{"name": "Retry-After", "value": str(retry_after)}]},
        },
    }


def backend_traffic_policy(spec: ServingSpec) -> dict:
    d = spec.defaults
    per_proxy = connections_per_proxy(spec)
    return {
        "apiVersion": f"{EG_API}/v1alpha1",
        "kind": "BackendTrafficPolicy",
        "metadata": {"name": f"{ROUTE_NAME}-backend", "namespace": spec.namespace, "labels": common_labels("ingress")},
        "spec": {
            "targetRefs": _route_target(),
            "rateLimit": {"type": "Local", "local": {"rules": rate_limit_rules(spec)}},
            # vLLM speaks HTTP/1.1: one request per upstream connection, so an engine's
            # connections from this Envoy bound its requests in flight from it. Past the cap
            # a request waits in the small pending queue, then fails at once (503).
            "circuitBreaker": {
                "perEndpoint": {"maxConnections": connections_per_endpoint(spec)},
                "maxConnections": per_proxy,
                "maxParallelRequests": per_proxy,
                "maxPendingRequests": d.pending_requests_per_proxy,
                "maxParallelRetries": max(1, math.ceil(per_proxy / 10)),
            },
            "retry": {
                "numRetries": d.connect_retries,
                "retryOn": {"triggers": ["connect-failure"]},
                "perRetry": {"backOff": {"baseInterval": "100ms", "maxInterval": "1s"}},
            },
            "loadBalancer": {"type": "LeastRequest"},
            "timeout": {
                "tcp": {"connectTimeout": seconds(d.connect_timeout_s)},
                "http": {"connectionIdleTimeout": "3600s"},
            },
            # Overflow (circuit breaker) and draining engines answer 503, the rate limit 429:
            # tell clients when to come back.
            "responseOverride": [
                error_override(503, "The service is at capacity; retry after the Retry-After delay.", "overloaded",
                               retry_after_overloaded_s(spec)),
                error_override(429, "Rate limit exceeded for this tenant; retry after the Retry-After delay.",
                               "rate_limit_exceeded", retry_after_rate_limited_s(spec)),
            ],
        },
    }


def json_error(message: str, code: str) -> str:
    """OpenAI-style error body, so client SDKs surface the message."""
    return json.dumps({"error": {"message": message, "type": code, "code": code}}, sort_keys=True)


def client_traffic_policy(spec: ServingSpec) -> dict:
    d = spec.defaults
    return {
        "apiVersion": f"{EG_API}/v1alpha1",
        "kind": "ClientTrafficPolicy",
        "metadata": {"name": f"{GATEWAY_NAME}-clients", "namespace": spec.namespace, "labels": common_labels("ingress")},
        "spec": {
            "targetRefs": [{"group": GATEWAY_API, "kind": "Gateway", "name": GATEWAY_NAME}],
            # Before routing and every HTTP filter (Envoy's early header mutation,
            # internal/xds/translator/listener.go buildEarlyHeaderMutation): a client cannot
            # pick its rate-limit bucket; the JWT filter sets the header from the claim.
            "headers": {"earlyRequestHeaders": {"remove": [d.tenant_header]}},
            "timeout": {"http": {
                "requestReceivedTimeout": seconds(d.client_request_received_timeout_s),
                "idleTimeout": seconds(d.client_idle_timeout_s),
            }},
        },
    }


def ingress_objects(spec: ServingSpec, tags: dict[str, str]) -> list[dict]:
    """Every custom resource of the ingress, in apply order."""
    return [
        envoy_proxy(spec, tags), gateway_class(spec), gateway(spec), http_route(spec),
        security_policy(spec), backend_traffic_policy(spec), client_traffic_policy(spec),
        health_route(spec), health_traffic_policy(spec),
    ]


# --- component ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class IngressArgs:
    spec: ServingSpec
    tags: dict[str, str]


class Ingress(pulumi.ComponentResource):
    def __init__(self, name: str, args: IngressArgs, opts: pulumi.ResourceOptions) -> None:
        super().__init__("llm-fleet:serving:Ingress", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        spec = args.spec
        self.release = kube.release(
            f"{name}-envoy-gateway", chart("gateway-helm"), release_name="eg",
            namespace=spec.defaults.gateway_namespace, values=gateway_helm_values(spec), opts=child,
        )
        # The chart installs the Gateway API and Envoy Gateway CRDs these objects need.
        after_crds = kube.with_deps(child, [self.release])
        self.objects = {
            (obj["kind"], obj["metadata"]["name"]): kube.custom_resource(resource_name(name, obj), obj, after_crds)
            for obj in ingress_objects(spec, args.tags)
        }
        # Read once the Gateway is created and Programmed: its id is unknown until then (a first
        # preview skips the read), and the Service exists with the NLB's hostname from then on.
        service_id = self.objects[("Gateway", GATEWAY_NAME)].id.apply(
            lambda _: f"{spec.defaults.gateway_namespace}/{GATEWAY_SERVICE_NAME}")
        self.service = k8s.core.v1.Service.get(f"{name}-gateway-service", service_id, opts=child)
        self.dns_name = self.service.status.apply(load_balancer_hostname)
        self.register_outputs({
            "hostname": spec.config.ingress.hostname,
            "regional_hostname": spec.config.regional_hostname,
            "paths": list(OPENAI_PATHS),
            "health_path": HEALTH_PATH,
            "connections_per_endpoint": connections_per_endpoint(spec),
        })


def load_balancer_hostname(status: Any) -> str:
    """The DNS name a LoadBalancer Service's status carries (`status.loadBalancer.ingress[0].hostname`)."""
    lb = (status or {}).get("load_balancer") or (status or {}).get("loadBalancer") or {}
    ingress = lb.get("ingress") or [{}]
    hostname = ingress[0].get("hostname")
    if not hostname:
        raise ValueError(f"the gateway Service {GATEWAY_SERVICE_NAME} has no load balancer hostname yet: {status!r}")
    return str(hostname)


def resource_name(component: str, obj: dict) -> str:
    """`<component>-<kind>`, plus the object's name for the health route's objects (two
    HTTPRoutes and two BackendTrafficPolicies); the first ones keep their names and URNs."""
    kind = obj["kind"].lower()
    name = obj["metadata"]["name"]
    return f"{component}-{kind}-{name}" if name.startswith(HEALTH_ROUTE_NAME) else f"{component}-{kind}"
