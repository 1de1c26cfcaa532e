"""NetworkPolicies: the engines are reachable through the gateway only.

The serving namespace (engines, hydrator, warm-pool placeholders) denies all traffic in and out
by default; explicit allows:

  DNS           every pod -> CoreDNS (kube-system, UDP/TCP 53)
  gateway       Envoy proxies (gateway namespace) -> engines, container port
  metrics       Prometheus (monitoring namespace) -> engines' /metrics, container port
  hydrator      -> the EKS Pod Identity agent (169.254.170.23:80, credentials) and S3 (HTTPS
                anywhere: S3's addresses are a prefix list a NetworkPolicy cannot name)
  warm pool     nothing: placeholders only hold a node; their init container reads a local file

In the gateway namespace the Envoy proxies accept their listener from the configured client
CIDRs (the NLB keeps client addresses: `externalTrafficPolicy: Local`) and from the benchmark
namespace (`labels.BENCH_NAMESPACE`, whose own egress policy is the benchmark's), and Prometheus
on Envoy's stats port. Envoy Gateway's controller there is not isolated (it reaches the API
server and serves xDS).

Enforced by the VPC CNI's network policy agent, which the cluster enables
(infra/program/components/cluster.py, VPC_CNI_CONFIGURATION).
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.core.config import LISTENER_PORT
from infra.core.labels import BENCH_NAMESPACE
from infra.program.serving.hydrator import APP_NAME as HYDRATOR_APP
from infra.program.serving.spec import ServingSpec, common_labels

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace
DNS_POD_LABELS = {"k8s-app": "kube-dns"}  # CoreDNS pods of the EKS add-on
DNS_NAMESPACE = "kube-system"
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus"}  # the operator's Prometheus pods
# Envoy Gateway's proxy pods (internal/infrastructure/kubernetes/proxy/resource.go, v1.9.0).
ENVOY_POD_LABELS = {"app.kubernetes.io/name": "envoy", "app.kubernetes.io/component": "proxy"}
ENVOY_STATS_PORT = 19001  # internal/xds/bootstrap/bootstrap.go EnvoyStatsPort
# Envoy binds a privileged listener port + 10000 (internal/gatewayapi/listener.go and
# translator.go wellKnownPortShift, v1.9.0): the NetworkPolicy names the container port.
ENVOY_WELL_KNOWN_PORT_SHIFT = 10000
POD_IDENTITY_AGENT = "169.254.170.23/32"  # EKS Pod Identity agent (link-local, port 80)
ANYWHERE = "0.0.0.0/0"


def envoy_container_port() -> int:
    return LISTENER_PORT + ENVOY_WELL_KNOWN_PORT_SHIFT if LISTENER_PORT < 1024 else LISTENER_PORT


def _in_namespace(namespace: str, pods: dict[str, str] | None = None) -> dict:
    peer: dict = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}
    if pods is not None:
        peer["podSelector"] = {"matchLabels": dict(pods)}
    return peer


def _tcp(port: int) -> dict:
    return {"protocol": "TCP", "port": port}


def _policy(name: str, namespace: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace, "labels": common_labels("network")}, "spec": spec}


def network_policies(spec: ServingSpec) -> list[dict]:
    d, ns = spec.defaults, spec.namespace
    dns = [{"to": [_in_namespace(DNS_NAMESPACE, DNS_POD_LABELS)],
            "ports": [{"protocol": "UDP", "port": 53}, _tcp(53)]}]
    return [
        _policy("default-deny", ns, {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        _policy("dns", ns, {"podSelector": {}, "policyTypes": ["Egress"], "egress": dns}),
        _policy("engine-from-gateway-and-prometheus", ns, {
            "podSelector": {"matchLabels": dict(spec.vllm_pod_labels)},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [_in_namespace(d.gateway_namespace, ENVOY_POD_LABELS),
                         _in_namespace(d.monitoring_namespace, PROMETHEUS_POD_LABELS)],
                "ports": [_tcp(d.vllm_container_port)],
            }],
        }),
        _policy("hydrator-to-s3", ns, {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": HYDRATOR_APP}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": POD_IDENTITY_AGENT}}], "ports": [_tcp(80)]},
                       {"to": [{"ipBlock": {"cidr": ANYWHERE}}], "ports": [_tcp(443)]}],
        }),
        _policy("envoy-listener", d.gateway_namespace, {
            "podSelector": {"matchLabels": dict(ENVOY_POD_LABELS)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"ipBlock": {"cidr": c}} for c in spec.config.ingress.allowed_source_cidrs]
                 + [_in_namespace(BENCH_NAMESPACE)],
                 "ports": [_tcp(envoy_container_port())]},
                {"from": [_in_namespace(d.monitoring_namespace, PROMETHEUS_POD_LABELS)],
                 "ports": [_tcp(ENVOY_STATS_PORT)]},
            ],
        }),
    ]


@dataclass(frozen=True)
class NetworkPoliciesArgs:
    spec: ServingSpec


class NetworkPolicies(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkPoliciesArgs, opts: pulumi.ResourceOptions) -> None:
        super().__init__("llm-fleet:serving:NetworkPolicies", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.policies = [
            k8s.networking.v1.NetworkPolicy(f"{name}-{p['metadata']['namespace']}-{p['metadata']['name']}",
                                            metadata=p["metadata"], spec=p["spec"], opts=child)
            for p in network_policies(args.spec)
        ]
        self.register_outputs({"policies": [p["metadata"]["name"] for p in network_policies(args.spec)]})
