"""The global composition `global/__main__.py` runs: one public hostname over every region stack.

For each region stack of the environment (`stacks/<env>.yaml`) a StackReference to its workloads
stack (`<org>/llm-fleet-workloads/<stack>`) gives the gateway NLB's DNS name and canonical hosted
zone, the region, the regional hostname and the health path. In the hosted zone `global.zone_name`:

  HealthCheck  HTTPS GET https://<regional hostname>:443<health path> (SNI on), every
               `request_interval_s`, unhealthy after `failure_threshold` failures in a row
  Record       <regional hostname> A, alias to the region's NLB: what the health check resolves
               (and what the rollout's HTTP gate probes)
  Record       <hostname> A, alias to the region's NLB, `set_identifier` the stack, latency
               (its region) or weighted (its weight) routing, the health check and the NLB's
               own target health: a region whose /health fails leaves the answers

A region at weight 0 (a rollout's drain) keeps its health check and regional record; its record
under the hostname stays at weight 0 with weighted routing and is left out with latency routing
(latency records take no weight). The health checks carry the tags every region shares. Route
53's API is global: one explicit provider in us-east-1, so nothing reads `aws:region`.
"""
from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from infra.core import deploy
from infra.core.config import LISTENER_PORT
from infra.core.errors import UserError
from infra.core.global_stack import ROUTE53_REGION, GlobalStack, RegionRecord
from infra.core.labels import GLOBAL_PROJECT
from infra.core.rollout.traffic import WEIGHTS_KEY

HEALTH_CHECK_TYPE = "HTTPS"  # TLS to the NLB's listener; Route 53 does not validate the certificate


def global_config_entries() -> dict[str, Any]:
    """The global stack's config as the resolver takes it: only the weights a traffic step sets."""
    return {WEIGHTS_KEY: pulumi.Config(GLOBAL_PROJECT).get_object("weights") or {}}


def _same_region(record: RegionRecord) -> Any:
    def check(exported: Any) -> str:
        if exported != record.region:
            raise UserError(f"the workloads stack {record.stack} exports region {exported!r} but stacks/<env>.yaml says "
                            f"{record.region!r}: deploy the stack from its current Pulumi.{record.stack}.yaml first")
        return record.region

    return check


def _zone_id(stack: GlobalStack, provider: aws.Provider) -> pulumi.Input[str]:
    endpoint = stack.endpoint
    if endpoint.zone_id:
        return endpoint.zone_id
    return aws.route53.get_zone_output(name=endpoint.zone_name, private_zone=False,
                                       opts=pulumi.InvokeOutputOptions(provider=provider)).zone_id


def global_endpoint(stack: GlobalStack) -> dict[str, Any]:
    """Register the health checks and records of every region; returns them by region stack."""
    endpoint, hostname = stack.endpoint, stack.hostname
    provider = aws.Provider("route53", region=ROUTE53_REGION)
    opts = pulumi.ResourceOptions(provider=provider)
    zone_id = _zone_id(stack, provider)
    org = pulumi.get_organization()
    out: dict[str, Any] = {}
    for record in stack.regions:
        ref = pulumi.StackReference(f"region-{record.stack}", deploy.workloads_stack_reference(org, record.stack))
        regional = ref.require_output(deploy.OUT_REGIONAL_HOSTNAME)
        alias = aws.route53.RecordAliasArgs(name=ref.require_output(deploy.OUT_GATEWAY_DNS_NAME),
                                            zone_id=ref.require_output(deploy.OUT_GATEWAY_ZONE_ID),
                                            evaluate_target_health=True)
        check = aws.route53.HealthCheck(
            f"health-{record.stack}",
            type=HEALTH_CHECK_TYPE,
            fqdn=regional,
            port=LISTENER_PORT,
            resource_path=ref.require_output(deploy.OUT_HEALTH_PATH),
            enable_sni=True,
            request_interval=endpoint.health_check.request_interval_s,
            failure_threshold=endpoint.health_check.failure_threshold,
            tags={**stack.tags, "Name": f"{hostname} {record.stack} ({record.region})"},
            opts=opts,
        )
        aws.route53.Record(f"regional-{record.stack}", zone_id=zone_id, name=regional, type="A", aliases=[alias],
                           allow_overwrite=True, opts=opts)  # takes over a record the runbook made by hand
        routing: dict[str, Any]
        if endpoint.routing == "weighted":
            routing = {"weighted_routing_policies": [aws.route53.RecordWeightedRoutingPolicyArgs(weight=record.weight)]}
        else:
            region = ref.require_output(deploy.OUT_REGION).apply(_same_region(record))
            routing = {"latency_routing_policies": [aws.route53.RecordLatencyRoutingPolicyArgs(region=region)]}
        answer = None
        if record.weight > 0 or endpoint.routing == "weighted":
            answer = aws.route53.Record(f"global-{record.stack}", zone_id=zone_id, name=hostname, type="A",
                                        aliases=[alias], set_identifier=record.stack, health_check_id=check.id,
                                        **routing, opts=opts)
        out[record.stack] = {"health_check": check, "record": answer, "reference": ref}
    pulumi.export("hostname", hostname)
    pulumi.export(deploy.OUT_ROUTING, endpoint.routing)
    pulumi.export("zone_id", zone_id)
    pulumi.export(deploy.OUT_WEIGHTS, stack.weights)
    pulumi.export("health_checks", {s: parts["health_check"].id for s, parts in out.items()})
    pulumi.export("in_dns", sorted(s for s, parts in out.items() if parts["record"] is not None and stack.weights[s] > 0))
    return {"provider": provider, "regions": out}
