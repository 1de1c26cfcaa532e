"""The in-cluster weights tier: the hydrator DaemonSet and its service account.

The manifests are the weights module's (infra/program/serving/hydrator.py); this component only registers
them. The service account carries no role annotation: the WeightStore component's Pod Identity
association binds the read-only role to exactly this namespace/service account.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.program.serving import kube
from infra.program.serving.spec import ServingSpec
from infra.program.serving import hydrator as weights_k8s


def hydrator_manifests(spec: ServingSpec) -> list[dict]:
    return weights_k8s.manifests(spec.hydrator, role_arn=None)


@dataclass(frozen=True)
class WeightsTierArgs:
    spec: ServingSpec


class WeightsTier(pulumi.ComponentResource):
    def __init__(self, name: str, args: WeightsTierArgs, opts: pulumi.ResourceOptions) -> None:
        super().__init__("llm-fleet:serving:WeightsTier", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        sa, ds = hydrator_manifests(args.spec)
        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=sa["metadata"],
            automount_service_account_token=sa.get("automountServiceAccountToken"), opts=child,
        )
        self.daemonset = k8s.apps.v1.DaemonSet(
            # Hydrating ~70 GB on every GPU node outlasts Pulumi's await; the marker-based
            # readiness probe reports progress instead.
            f"{name}-hydrator", metadata=kube.skip_await(ds["metadata"]), spec=ds["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service_account]),
        )
        self.register_outputs({"daemonset": ds["metadata"]["name"], "service_account": sa["metadata"]["name"]})
