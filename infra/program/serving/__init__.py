"""Serving on the cluster (issue #4): one entry point, `Serving`, for the workloads project
(`workloads/__main__.py` -> `infra.program.workloads`).

    k8s_provider = kubernetes_provider("k8s", base.require_output("kubeconfig"))
    serving = Serving("serving", ServingArgs(
        plan=plan, config=cfg, k8s_provider=k8s_provider,
        cluster_name=base.require_output("cluster_name"), weights_bucket_name=bucket_name, tags=tags,
    ))

Children (each a `llm-fleet:serving:<Type>` component, everything parented and bound to the
cluster's provider): namespaces, GpuPlumbing, WeightsTier, VllmServing, Ingress, Autoscaling,
WarmPool, Observability, NetworkPolicies. Every count, threshold and engine flag comes from the fleet plan;
chart versions from infra/core/catalog/charts.yaml; metric names from metrics.py. Only
Kubernetes resources: the AWS identities the charts assume are the base project's
(`identities.py`, the WeightStore).

Importing this package registers nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s

from infra.program.serving import kube
from infra.program.serving.autoscaling import Autoscaling, AutoscalingArgs
from infra.program.serving.defaults import ServingDefaults
from infra.program.serving.gpu_plumbing import GpuPlumbing, GpuPlumbingArgs
from infra.program.serving.ingress import Ingress, IngressArgs
from infra.program.serving.network import NetworkPolicies, NetworkPoliciesArgs
from infra.program.serving.observability import Observability, ObservabilityArgs
from infra.program.serving.spec import ServingSpec, common_labels
from infra.program.serving.vllm import VllmArgs, VllmServing
from infra.program.serving.warm_pool import WarmPool, WarmPoolArgs
from infra.program.serving.weights_tier import WeightsTier, WeightsTierArgs
from infra.core.config import StackConfig
from infra.core.sizing.plan import FleetPlan


def kubernetes_provider(
    name: str, kubeconfig: pulumi.Input[str], *, depends_on: Sequence[pulumi.Resource] = (),
    parent: pulumi.Resource | None = None,
) -> k8s.Provider:
    """The provider every serving resource uses, bound to the cluster's kubeconfig (which
    authenticates with `aws eks get-token`). Server-side apply is what the Deployment patch
    in vllm.py relies on."""
    return k8s.Provider(
        name, kubeconfig=kubeconfig, enable_server_side_apply=True,
        opts=pulumi.ResourceOptions(depends_on=list(depends_on), parent=parent),
    )


def namespace_manifests(spec: ServingSpec) -> list[dict]:
    d = spec.defaults
    names = dict.fromkeys([spec.namespace, d.gpu_namespace, d.keda_namespace, d.gateway_namespace,
                           d.monitoring_namespace])  # ordered, unique
    return [{"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": n, "labels": common_labels("serving")}} for n in names]


@dataclass(frozen=True)
class ServingArgs:
    plan: FleetPlan
    config: StackConfig
    k8s_provider: k8s.Provider
    cluster_name: pulumi.Input[str]  # the base's `cluster_name` output
    weights_bucket_name: str  # the WeightStore bucket (a plain name: the hydrator validates it)
    autoscaler_role_arn: pulumi.Input[str]  # the base's ClusterAutoscalerIdentity
    autoscaler_association_id: pulumi.Input[str]
    tags: Mapping[str, str] = field(default_factory=dict)
    defaults: ServingDefaults = field(default_factory=ServingDefaults)


class Serving(pulumi.ComponentResource):
    spec: ServingSpec

    def __init__(self, name: str, args: ServingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-fleet:serving:Serving", name, None, opts)
        self.spec = spec = ServingSpec(plan=args.plan, config=args.config,
                                       weights_bucket=args.weights_bucket_name, defaults=args.defaults)
        tags = dict(args.tags)
        # Children inherit the cluster's provider for every kubernetes resource.
        bound = pulumi.ResourceOptions(parent=self, providers=[args.k8s_provider])

        self.namespaces = [kube.namespace(f"{name}-ns-{m['metadata']['name']}", m, bound) for m in namespace_manifests(spec)]
        in_namespaces = kube.with_deps(bound, self.namespaces)

        self.gpu = GpuPlumbing(f"{name}-gpu", GpuPlumbingArgs(spec, spec.defaults.gpu_namespace), in_namespaces)
        self.weights = WeightsTier(f"{name}-weights", WeightsTierArgs(spec), in_namespaces)
        self.observability = Observability(f"{name}-observability", ObservabilityArgs(spec), in_namespaces)
        self.autoscaling = Autoscaling(
            f"{name}-autoscaling",
            AutoscalingArgs(spec, args.cluster_name, args.autoscaler_role_arn, args.autoscaler_association_id),
            in_namespaces,
        )
        # The chart renders the engines' ScaledObject (KEDA's CRD), whose trigger asks Prometheus.
        self.vllm = VllmServing(f"{name}-vllm", VllmArgs(spec, (self.autoscaling.keda, self.observability.release)),
                                kube.with_deps(in_namespaces, [self.weights]))
        self.ingress = Ingress(f"{name}-ingress", IngressArgs(spec, tags), in_namespaces)
        self.network = NetworkPolicies(f"{name}-network", NetworkPoliciesArgs(spec), in_namespaces)
        self.warm_pool = WarmPool(f"{name}-warm-pool", WarmPoolArgs(spec), kube.with_deps(in_namespaces, [self.weights]))

        self.register_outputs({
            "namespace": spec.namespace,
            "deployment": spec.deployment_name,
            "hostname": spec.config.ingress.hostname,
            "replicas": {"min": spec.replicas_min, "max": spec.replicas_max},
            "placeholders": spec.placeholders,
        })


__all__ = ["Serving", "ServingArgs", "ServingDefaults", "ServingSpec", "kubernetes_provider"]
