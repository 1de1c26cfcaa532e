"""The workloads composition `workloads/__main__.py` runs: everything behind the Kubernetes provider.

It reads the base stack (same stack name, project `llm-fleet`) through a StackReference: the
kubeconfig (secret; released by the base only once the system nodes and the deployer's access
are there) and the cluster name. The weights bucket name is derived as the base derives it, and
checked against the base's output, because the hydrator needs it as a plain value. Only
Kubernetes resources are registered: the AWS identities the charts assume are the base's. Its
outputs include what the global stack routes to: the region, the gateway NLB's DNS name and
canonical hosted zone, the regional hostname and the health path.
"""
from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from infra.core import deploy
from infra.core.catalog.charts import ecr_registry
from infra.core.errors import UserError
from infra.core.resolve import ResolvedStack
from infra.program.compose import stack_context
from infra.program.serving import Serving, ServingArgs, ServingDefaults, kubernetes_provider
from infra.program.serving.vllm import HEALTH_PATH


def _same_bucket(derived: str) -> Any:
    def check(exported: Any) -> str:
        if exported is not None and exported != derived:
            raise UserError(f"the base stack's weights bucket is {exported!r} but this program derives {derived!r}: "
                            "deploy the base project of this stack (same account, region and stack name) first")
        return derived

    return check


def workloads(resolved: ResolvedStack) -> dict[str, Any]:
    """Register the in-cluster layer against the base stack's cluster; returns the components."""
    sc = stack_context(resolved)
    cfg = resolved.config
    base = pulumi.StackReference("base", deploy.base_stack_reference(pulumi.get_organization(), sc.stack))
    provider = kubernetes_provider("k8s", base.require_output(deploy.OUT_KUBECONFIG))
    serving = Serving(
        "serving",
        ServingArgs(
            plan=resolved.plan,
            config=cfg,
            k8s_provider=provider,
            cluster_name=base.require_output(deploy.OUT_CLUSTER_NAME),
            weights_bucket_name=sc.weights_bucket,
            autoscaler_role_arn=base.require_output("autoscaler_role_arn"),
            autoscaler_association_id=base.require_output("autoscaler_pod_identity_association"),
            tags=sc.tags,
            # Derived as the base's ImageRegistry derives it (a plain value: images are strings).
            defaults=ServingDefaults(image_registry=ecr_registry(sc.aws.account_id, sc.aws.region, sc.aws.dns_suffix)),
        ),
    )
    pulumi.export("weights_bucket", base.get_output(deploy.OUT_WEIGHTS_BUCKET).apply(_same_bucket(sc.weights_bucket)))
    pulumi.export("hostname", cfg.ingress.hostname)
    pulumi.export(deploy.OUT_REGIONAL_HOSTNAME, cfg.regional_hostname)
    pulumi.export("health_url", f"https://{cfg.regional_hostname}{HEALTH_PATH}")
    pulumi.export("namespace", serving.spec.namespace)
    # What the global stack's records and health checks need (it reads them through StackReferences).
    pulumi.export(deploy.OUT_REGION, cfg.region)
    pulumi.export(deploy.OUT_HEALTH_PATH, HEALTH_PATH)
    pulumi.export(deploy.OUT_GATEWAY_DNS_NAME, serving.ingress.dns_name)
    # The NLB's canonical hosted zone (an alias record names it): the provider's table per region.
    pulumi.export(deploy.OUT_GATEWAY_ZONE_ID, aws.lb.get_hosted_zone_id_output(load_balancer_type="network").id)
    return {"base": base, "provider": provider, "serving": serving}
