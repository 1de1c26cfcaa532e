"""The NetworkPolicies, evaluated as Kubernetes defines them (kubernetes.io, "Network Policies"):
a pod selected by a policy of a direction is isolated in it, and traffic passes when some rule
of a policy selecting it matches the peer (namespace and pod selectors ANDed within a peer)
and the port. Connections need both the sender's egress and the receiver's ingress."""
from __future__ import annotations

import ipaddress

import pytest

from infra.core.config import LISTENER_PORT
from infra.core.labels import BENCH_NAMESPACE
from infra.program.serving import network
from infra.program.serving.hydrator import APP_NAME as HYDRATOR_APP
from infra.program.serving.spec import ServingSpec

from .support import spec_for

Pod = tuple[str, dict[str, str]]  # (namespace, labels)


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


POD_IP = "10.40.3.7"  # every pod's address is in the VPC (VPC CNI)


def _peer_matches(peer: dict, other: Pod | str) -> bool:
    if "ipBlock" in peer:  # pods match by their IP, external peers are IPs
        ip = other if isinstance(other, str) else POD_IP
        return ipaddress.ip_address(ip) in ipaddress.ip_network(peer["ipBlock"]["cidr"])
    if isinstance(other, str):
        return False
    ns, labels = other
    ns_ok = "namespaceSelector" not in peer or _selects(peer["namespaceSelector"],
                                                         {network.NAMESPACE_NAME_LABEL: ns})
    pod_ok = "podSelector" not in peer or _selects(peer["podSelector"], labels)
    return ns_ok and pod_ok and ("namespaceSelector" in peer or ns == peer.get("_ns"))


def _allowed(policies: list[dict], pod: Pod, peer: Pod | str, port: int, direction: str) -> bool:
    key, rules_key, peers_key = direction, direction.lower(), "from" if direction == "Ingress" else "to"
    mine = [p for p in policies if p["metadata"]["namespace"] == pod[0]
            and _selects(p["spec"]["podSelector"], pod[1]) and key in p["spec"]["policyTypes"]]
    if not mine:
        return True
    for p in mine:
        for rule in p["spec"].get(rules_key, []):
            ports = [x["port"] for x in rule.get("ports", [])]
            peers = [{**x, "_ns": p["metadata"]["namespace"]} for x in rule.get(peers_key, [])]
            if (not ports or port in ports) and (not peers or any(_peer_matches(x, peer) for x in peers)):
                return True
    return False


def _connects(policies, src: Pod | str, dst: Pod | str, port: int) -> bool:
    out = isinstance(src, str) or _allowed(policies, src, dst, port, "Egress")
    return out and (isinstance(dst, str) or _allowed(policies, dst, src, port, "Ingress"))


@pytest.fixture(scope="module")
def world():
    spec: ServingSpec = spec_for("prod")
    d = spec.defaults
    return {
        "spec": spec,
        "policies": network.network_policies(spec),
        "engine": (spec.namespace, dict(spec.vllm_pod_labels)),
        "envoy": (d.gateway_namespace, dict(network.ENVOY_POD_LABELS)),
        "prometheus": (d.monitoring_namespace, dict(network.PROMETHEUS_POD_LABELS)),
        "hydrator": (spec.namespace, {"app.kubernetes.io/name": HYDRATOR_APP}),
        "placeholder": (spec.namespace, {"app.kubernetes.io/name": "gpu-warm-placeholder"}),
        "dns": (network.DNS_NAMESPACE, dict(network.DNS_POD_LABELS)),
        "bench": (BENCH_NAMESPACE, {"job-name": "bench"}),
        "intruder": ("default", {"app": "curl"}),
        "neighbour": (spec.namespace, {"app": "debug"}),
    }


@pytest.mark.parametrize("src, dst, port_key, allowed", [
    ("envoy", "engine", "engine", True),
    ("prometheus", "engine", "engine", True),
    ("intruder", "engine", "engine", False),  # no bypass of the gateway's JWT and limits
    ("neighbour", "engine", "engine", False),
    ("bench", "envoy", "listener", True),  # the benchmark Job reaches the gateway
    ("intruder", "hydrator", "engine", False),
    ("engine", "dns", "dns", True),
    ("engine", "intruder", "engine", False),  # engines call nothing
    ("placeholder", "intruder", "https", False),
    ("hydrator", "s3", "https", True),
    ("hydrator", "pod-identity", "http", True),
    ("engine", "s3", "https", False),
])
def test_who_may_talk_to_whom(world, src, dst, port_key, allowed):
    ports = {"engine": world["spec"].defaults.vllm_container_port, "dns": 53, "https": 443, "http": 80,
             "listener": network.envoy_container_port()}
    ips = {"s3": "52.216.0.1", "pod-identity": "169.254.170.23"}
    a, b = world.get(src, ips.get(src)), world.get(dst, ips.get(dst))
    assert _connects(world["policies"], a, b, ports[port_key]) is allowed


@pytest.mark.parametrize("src, allowed", [("bench", True), ("intruder", False), ("203.0.113.9", True),
                                          ("198.51.100.1", False)])
def test_with_restricted_client_cidrs_the_benchmark_namespace_still_reaches_the_gateway(src, allowed):
    spec = spec_for("8b-tp1")
    assert spec.config.ingress.allowed_source_cidrs == ("203.0.113.0/24",)
    pods = {"bench": (BENCH_NAMESPACE, {"job-name": "bench"}), "intruder": ("default", {"app": "curl"})}
    envoy = (spec.defaults.gateway_namespace, dict(network.ENVOY_POD_LABELS))
    assert _connects(network.network_policies(spec), pods.get(src, src), envoy, network.envoy_container_port()) is allowed


def test_envoy_listens_on_the_shifted_listener_port():
    assert LISTENER_PORT == 443 and network.envoy_container_port() == 10443
