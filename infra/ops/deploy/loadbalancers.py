"""Destroy's wait for the gateway's load balancer (boto3, elbv2).

Envoy Gateway's Service of type LoadBalancer is turned into an NLB by the cluster's service
controller, which keeps a finalizer on the Service until the NLB is deleted. The NLB and its
network interfaces live in the VPC's public subnets, so the base may only be destroyed once it is
gone. The in-tree AWS service controller tags every load balancer it creates with
`kubernetes.io/cluster/<cluster>: owned` (and `kubernetes.io/service-name: <ns>/<name>`); the AWS
Load Balancer Controller with `elbv2.k8s.aws/cluster: <cluster>`. `wait_gone` polls until no load
balancer carries either tag for the cluster.
"""
from __future__ import annotations

from typing import Any, Callable

from infra.core.errors import WorkspaceError
from infra.core.rollout.interfaces import Clock, OnOutput, SystemClock

LEGACY_CLUSTER_TAG = "kubernetes.io/cluster/{cluster}"
LBC_CLUSTER_TAG = "elbv2.k8s.aws/cluster"
SERVICE_TAG = "kubernetes.io/service-name"
DESCRIBE_TAGS_BATCH = 20  # DescribeTags takes at most 20 ARNs


def owned_by(tags: dict[str, str], cluster: str) -> bool:
    return tags.get(LEGACY_CLUSTER_TAG.format(cluster=cluster)) == "owned" or tags.get(LBC_CLUSTER_TAG) == cluster


class ElbV2LoadBalancers:
    """`workspace.LoadBalancerWaiter` over elbv2; `client_for(stack)` is the stack region's client."""

    def __init__(self, client_for: Callable[[str], Any], *, clock: Clock | None = None, timeout_s: float = 900,
                 poll_s: float = 15) -> None:
        self.client_for = client_for
        self.clock = clock or SystemClock()
        self.timeout_s = timeout_s
        self.poll_s = poll_s

    def of_cluster(self, stack: str, cluster: str) -> list[tuple[str, str]]:
        """(ARN, service it serves) of every load balancer the cluster's controllers made."""
        client = self.client_for(stack)
        arns = [lb["LoadBalancerArn"] for page in client.get_paginator("describe_load_balancers").paginate()
                for lb in page.get("LoadBalancers", [])]
        out = []
        for i in range(0, len(arns), DESCRIBE_TAGS_BATCH):
            for desc in client.describe_tags(ResourceArns=arns[i:i + DESCRIBE_TAGS_BATCH]).get("TagDescriptions", []):
                tags = {t["Key"]: t.get("Value", "") for t in desc.get("Tags", [])}
                if owned_by(tags, cluster):
                    out.append((desc["ResourceArn"], tags.get(SERVICE_TAG, "?")))
        return out

    def wait_gone(self, stack: str, cluster_name: str, *, on_output: OnOutput) -> None:
        deadline = self.clock.now() + self.timeout_s
        while True:
            left = self.of_cluster(stack, cluster_name)
            if not left:
                on_output(f"no load balancer of cluster {cluster_name} is left")
                return
            names = ", ".join(f"{arn.rsplit('/', 2)[-2]} (Service {svc})" for arn, svc in left)
            if self.clock.now() >= deadline:
                raise WorkspaceError(
                    f"{cluster_name}: load balancers still exist after {self.timeout_s:g} s: {names}; the VPC cannot be "
                    "deleted before them: delete their Services (or the load balancers), then destroy again")
            on_output(f"waiting for {len(left)} load balancer(s) to be deleted: {names}")
            self.clock.sleep(self.poll_s)

