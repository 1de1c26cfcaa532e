"""Fabricated stack documents for tests: an offline plan or a preview digest in a few lines.

`plan_document()` builds `{"stack", "region", "plan", "resources"}` from a FleetPlan-like dict
and a resource list shaped like the Pulumi program's (camelCase inputs, pulumi-aws 7 tokens).
`preview_document()` turns the same resources into `pulumi preview --json` steps. Pure data;
nothing here talks to Pulumi or AWS.
"""
from __future__ import annotations

import copy
import json
from typing import Any, Iterable, Mapping

PROJECT = "llm-fleet"
TAGS = {"environment": "prod", "cost-center": "ml-platform", "owner": "sre-llm@example.com"}


def fleet_plan(**overrides: Any) -> dict[str, Any]:
    """A FleetPlan.to_dict()-shaped dict (the seed-004 prod shape); nested keys by `a__b=`."""
    plan: dict[str, Any] = {
        "model": "llama-3.3-70b",
        "served_name": "llama-3.3-70b-instruct",
        "region": "us-east-1",
        "engine": "vllm",
        "instance_type": "p5.48xlarge",
        "gpu": "H100-SXM-80GB",
        "gpus_per_node": 8,
        "tensor_parallel": 8,
        "precision": "fp8",
        "azs": 3,
        "survive_az_loss": True,
        "replicas_sustained": 6,
        "replicas_per_az": 3,
        "replicas_per_node": 1,
        "replicas_max": 15,
        "nodes_per_az": {"min": 3, "desired": 3, "max": 5},
        "warm_spares_per_az": 1,
        "weights_gib_per_gpu": 8.46,
        "load": {"concurrent_requests": 200, "burst_concurrent_requests": 800.0, "output_tokens_per_s": 5000.0,
                 "input_tokens": 500, "output_tokens": 200},
        "cost": {
            "usd_per_gpu_hour": 6.88,
            "usd_per_node_hour": 55.04,
            "price_source": "aws/karpenter-provider-aws zz_generated.pricing_aws.go (2026-07-20), on-demand us-east-1",
            "usd_per_hour_baseline": 495.36,
            "usd_per_hour_max": 825.6,
            "usd_per_million_output_tokens": 27.52,
        },
    }
    for key, value in overrides.items():
        target = plan
        parts = key.split("__")
        for p in parts[:-1]:
            target = target[p]
        target[parts[-1]] = value
    return plan


def urn(stack: str, rtype: str, name: str, parent_type: str | None = None) -> str:
    chain = f"{parent_type}${rtype}" if parent_type else rtype
    return f"urn:pulumi:{stack}::{PROJECT}::{chain}::{name}"


def resource(rtype: str, name: str, inputs: Mapping[str, Any], *, stack: str = "prod", parent: str | None = None,
             parent_type: str | None = None) -> dict[str, Any]:
    return {"urn": urn(stack, rtype, name, parent_type), "type": rtype, "name": name, "parent": parent,
            "inputs": copy.deepcopy(dict(inputs))}


def _policy(statements: list[dict]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def launch_template_inputs(volume_gb: int = 200) -> dict[str, Any]:
    return {
        "metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1,
                            "instanceMetadataTags": "disabled"},
        "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeSize": volume_gb, "volumeType": "gp3",
                                                                    "encrypted": "true", "deleteOnTermination": "true"}}],
        "networkInterfaces": [{"deviceIndex": 0, "interfaceType": "efa", "associatePublicIpAddress": "false"}],
        "tags": dict(TAGS),
    }


def gpu_node_group_inputs(instance_type: str, az: str, nodes: Mapping[str, int], spares: int,
                          pool_state: str = "STOPPED") -> dict[str, Any]:
    """A GPU node group as the program builds it from the plan's counts for one AZ.

    `nodes` are FleetPlan.nodes_per_az (warm spares included), all in service; the warm pool
    pre-initialises the burst headroom (`maxGroupPreparedCapacity` = plan max), never fewer
    than `spares` instances.
    """
    inputs: dict[str, Any] = {
        "clusterName": "llm-fleet-prod",
        "nodeGroupName": f"llm-fleet-prod-gpu-{az}",
        "instanceTypes": [instance_type],
        "capacityType": "ON_DEMAND",
        "scalingConfig": {"minSize": nodes["min"], "desiredSize": nodes["desired"], "maxSize": nodes["max"]},
        "launchTemplate": {"id": f"lt-{az}", "version": "1"},
        "labels": {"llm-fleet/role": "gpu", "llm-fleet/az": az},
        "tags": {**TAGS, "llm-fleet:az": az},
    }
    if nodes["max"] > nodes["min"] or spares:
        inputs["warmPoolConfig"] = {"minSize": spares, "maxGroupPreparedCapacity": nodes["max"],
                                    "poolState": pool_state, "reuseOnScaleIn": True}
    return inputs


def stack_resources(plan: Mapping[str, Any] | None = None, *, stack: str = "prod", region: str = "us-east-1",
                    s3_endpoint: bool = True, system_instance_type: str = "m7i.xlarge", system_nodes: int = 2) -> list[dict]:
    """A secure-by-default resource list shaped like the program's, sized from `plan`."""
    plan = dict(plan or fleet_plan())
    azs = [f"{region}{chr(ord('a') + i)}" for i in range(int(plan.get("azs", 3)))]
    nodes = plan["nodes_per_az"]
    spares = int(plan.get("warm_spares_per_az") or 0)
    out: list[dict] = [
        resource("pulumi:providers:aws", "default", {"region": region, "defaultTags": {"tags": dict(TAGS)}}, stack=stack),
        resource("aws:kms/key:Key", "cluster-secrets-key", {"enableKeyRotation": True, "deletionWindowInDays": 30,
                                                            "tags": dict(TAGS)}, stack=stack),
        resource("aws:eks/cluster:Cluster", "cluster", {
            "name": f"llm-fleet-{stack}", "version": "1.33",
            "vpcConfig": {"endpointPrivateAccess": True, "endpointPublicAccess": False, "subnetIds": ["subnet-1", "subnet-2"]},
            "encryptionConfig": {"provider": {"keyArn": "arn:aws:kms:us-east-1:123456789012:key/abc"}, "resources": ["secrets"]},
            "enabledClusterLogTypes": ["api", "audit", "authenticator", "controllerManager", "scheduler"],
            "tags": dict(TAGS),
        }, stack=stack),
        resource("aws:iam/role:Role", "cluster-node-role", {
            "assumeRolePolicy": _policy([{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                          "Action": ["sts:AssumeRole"]}]),
            "tags": dict(TAGS),
        }, stack=stack),
        resource("aws:ec2/launchTemplate:LaunchTemplate", "cluster-system-lt", launch_template_inputs(50), stack=stack),
        resource("aws:eks/nodeGroup:NodeGroup", "cluster-system", {
            "instanceTypes": [system_instance_type], "capacityType": "ON_DEMAND",
            "scalingConfig": {"minSize": system_nodes, "desiredSize": system_nodes, "maxSize": system_nodes + 1},
            "launchTemplate": {"id": "cluster-system-lt_id", "version": "1"},
            "labels": {"llm-fleet/role": "system"}, "tags": dict(TAGS),
        }, stack=stack),
    ]
    for az in azs:
        out.append(resource("aws:ec2/eip:Eip", f"network-nat-eip-{az}", {"domain": "vpc", "tags": dict(TAGS)}, stack=stack))
        out.append(resource("aws:ec2/natGateway:NatGateway", f"network-nat-{az}",
                            {"connectivityType": "public", "tags": dict(TAGS)}, stack=stack))
        gparent = urn(stack, "llm-fleet:gpu:GpuNodeGroup", f"gpu-{az}")
        out.append(resource("aws:ec2/placementGroup:PlacementGroup", f"gpu-{az}-pg", {"strategy": "cluster", "tags": dict(TAGS)},
                            stack=stack, parent=gparent, parent_type="llm-fleet:gpu:GpuNodeGroup"))
        out.append(resource("aws:ec2/launchTemplate:LaunchTemplate", f"gpu-{az}-lt", launch_template_inputs(200),
                            stack=stack, parent=gparent, parent_type="llm-fleet:gpu:GpuNodeGroup"))
        out.append(resource("aws:eks/nodeGroup:NodeGroup", f"gpu-{az}",
                            gpu_node_group_inputs(str(plan["instance_type"]), az, nodes, spares),
                            stack=stack, parent=gparent, parent_type="llm-fleet:gpu:GpuNodeGroup"))
    if s3_endpoint:
        out.append(resource("aws:ec2/vpcEndpoint:VpcEndpoint", "network-s3-endpoint",
                            {"serviceName": f"com.amazonaws.{region}.s3", "vpcEndpointType": "Gateway", "tags": dict(TAGS)},
                            stack=stack))
    out.append(resource("aws:ec2/securityGroup:SecurityGroup", "network-efa-sg",
                        {"description": "EFA", "tags": dict(TAGS)}, stack=stack))
    out.append(resource("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "network-efa-ingress-self",
                        {"ipProtocol": "-1", "referencedSecurityGroupId": "sg-123"}, stack=stack))
    bucket_arn = "arn:aws:s3:::llm-fleet-prod-weights"
    wparent = urn(stack, "llm-fleet:weights:WeightStore", "weights")
    kw = dict(stack=stack, parent=wparent, parent_type="llm-fleet:weights:WeightStore")
    out += [
        resource("aws:kms/key:Key", "weights-key", {"enableKeyRotation": True, "tags": dict(TAGS)}, **kw),
        resource("aws:s3/bucket:Bucket", "weights-bucket", {"bucket": "llm-fleet-prod-weights", "tags": dict(TAGS)}, **kw),
        resource("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "weights-public-access-block", {
            "bucket": "llm-fleet-prod-weights", "blockPublicAcls": True, "blockPublicPolicy": True,
            "ignorePublicAcls": True, "restrictPublicBuckets": True}, **kw),
        resource("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "weights-sse", {
            "bucket": "llm-fleet-prod-weights",
            "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": "arn:aws:kms:k"},
                       "bucketKeyEnabled": True}]}, **kw),
        resource("aws:s3/bucketVersioning:BucketVersioning", "weights-versioning", {
            "bucket": "llm-fleet-prod-weights", "versioningConfiguration": {"status": "Enabled"}}, **kw),
        resource("aws:s3/bucketPolicy:BucketPolicy", "weights-policy", {
            "bucket": "llm-fleet-prod-weights",
            "policy": _policy([{"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}}}])}, **kw),
        resource("aws:iam/role:Role", "weights-reader", {
            "assumeRolePolicy": _policy([{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                                          "Action": ["sts:AssumeRole", "sts:TagSession"],
                                          "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"},
                                                        "ArnEquals": {"aws:SourceArn": "arn:aws:eks:us-east-1:123456789012:cluster/x"}}}]),
            "tags": dict(TAGS)}, **kw),
        resource("aws:iam/rolePolicy:RolePolicy", "weights-reader-policy", {
            "policy": _policy([{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"{bucket_arn}/models/*"]},
                               {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket_arn]}])}, **kw),
    ]
    out.append(resource("kubernetes:core/v1:Service", "ingress-gateway", {
        "metadata": {"name": "envoy-gateway", "annotations": {
            "service.beta.kubernetes.io/aws-load-balancer-type": "external",
            "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
            "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing"}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 443, "targetPort": 10443, "protocol": "TCP"}]},
    }, stack=stack))
    return out


def plan_document(plan: Mapping[str, Any] | None = None, resources: Iterable[Mapping[str, Any]] | None = None, *,
                  stack: str = "prod", region: str | None = None) -> dict[str, Any]:
    plan = dict(plan or fleet_plan())
    region = region or str(plan.get("region") or "us-east-1")
    res = [dict(r) for r in (resources if resources is not None else stack_resources(plan, stack=stack, region=region))]
    return {"stack": stack, "region": region, "plan": plan, "resources": res}


def preview_document(resources: Iterable[Mapping[str, Any]], *, region: str = "us-east-1", op: str = "create") -> dict[str, Any]:
    """The same resources as `pulumi preview --json` would print them."""
    steps = [{"op": op, "urn": r["urn"], "provider": "",
              "newState": {"urn": r["urn"], "type": r["type"], "inputs": copy.deepcopy(r["inputs"]),
                           "parent": r.get("parent") or "", "custom": True}}
             for r in resources]
    return {"config": {"aws:region": region}, "steps": steps, "diagnostics": [], "duration": 1,
            "changeSummary": {op: len(steps)}}


def find(resources: list[dict], name: str) -> dict:
    """The resource called `name` (tests mutate its inputs)."""
    for r in resources:
        if r["name"] == name:
            return r
    raise KeyError(name)
