"""Cluster: EKS with a private endpoint, KMS envelope encryption of secrets, all five
control-plane log types, access-entry authentication, the Pod Identity agent, a small system
node group on general-purpose instances, and the add-ons.

Access. `bootstrap_cluster_creator_admin_permissions` is ForceNew on the cluster (changing it
replaces the cluster), so it is always false: every admin, the deploying identity included, gets
an explicit access entry and an AmazonEKSClusterAdminPolicy association, named by a hash of its
ARN so that adding or removing one never renames the others. `deployer_access` is the
association the workloads' Kubernetes provider must wait for.

Add-ons: vpc-cni (with its network policy agent on), kube-proxy, the Pod Identity agent, CoreDNS, the EKS node monitoring agent
(what lets node auto-repair see GPU, NVLink, kernel and network failures instead of only the
Ready condition: EKS user guide, "Enable node auto repair and investigate node health issues")
and the EBS CSI driver (Prometheus' volume), whose controller assumes a role through a Pod
Identity association the add-on manages. Add-on versions are left to EKS, which installs the
default version for the cluster's Kubernetes version (CreateAddon without addonVersion).

Workload identity is EKS Pod Identity (the `eks-pod-identity-agent` add-on plus one
`PodIdentityAssociation` per service account) rather than IRSA: no OIDC provider to manage, and
the binding to one namespace/service account is made by EKS itself.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from infra.program.components.common import AwsContext, assume_role_policy, merge_tags, short_hash
from infra.program.components.weight_store import pod_identity_trust_policy
from infra.core.labels import SYSTEM_NODE_LABELS

CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
# Managed add-ons that every node needs (networking, DNS, kube-proxy, workload identity).
CORE_ADDONS = ("vpc-cni", "kube-proxy", "eks-pod-identity-agent", "coredns")
# Installed once nodes exist: node health for auto repair, and EBS volumes.
NODE_MONITORING_ADDON = "eks-node-monitoring-agent"
EBS_CSI_ADDON = "aws-ebs-csi-driver"
# The VPC CNI enforces Kubernetes NetworkPolicies only when asked (its network policy agent is
# off by default): EKS user guide, "Limit pod traffic with Kubernetes network policies" (set the
# add-on's configuration value `enableNetworkPolicy` to "true"; VPC CNI >= 1.14, the add-on's
# default for every Kubernetes version we allow). The serving namespaces' default-deny policies
# (infra/program/serving/network.py) rely on it.
VPC_CNI_CONFIGURATION = {"enableNetworkPolicy": "true"}
ADDON_EXTRA: dict[str, dict[str, object]] = {"vpc-cni": {"configuration_values": json.dumps(VPC_CNI_CONFIGURATION)}}
ADDONS = (*CORE_ADDONS, NODE_MONITORING_ADDON, EBS_CSI_ADDON)
# The EBS CSI controller's service account (the add-on creates it in kube-system).
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
EBS_CSI_MANAGED_POLICY = "service-role/AmazonEBSCSIDriverPolicy"
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
NODE_MANAGED_POLICIES = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryPullOnly",
    "AmazonSSMManagedInstanceCore",  # shell access through SSM, never SSH
)


def imdsv2_metadata_options() -> dict:
    """IMDSv2 only, one hop: pods cannot reach the node's credentials through IMDS."""
    return {
        "http_endpoint": "enabled",
        "http_tokens": "required",
        "http_put_response_hop_limit": 1,
        "instance_metadata_tags": "disabled",
    }


def encrypted_root_volume(size_gib: int) -> dict:
    return {
        "device_name": "/dev/xvda",
        "ebs": {
            "volume_size": size_gib,
            "volume_type": "gp3",
            "encrypted": "true",
            "delete_on_termination": "true",
        },
    }


def render_kubeconfig(cluster_name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig that authenticates with `aws eks get-token` (no static credentials)."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
        "users": [
            {
                "name": cluster_name,
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": "aws",
                        "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region],
                        "interactiveMode": "Never",
                    }
                },
            }
        ],
    }
    return json.dumps(doc, indent=2)


@dataclass(frozen=True)
class ClusterArgs:
    cluster_name: str
    aws: AwsContext
    kubernetes_version: str
    vpc_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]  # private subnets, one per AZ
    # From llm-fleet:cluster (infra/core/config.py ClusterConfig holds the defaults).
    endpoint_public_access: bool
    public_access_cidrs: tuple[str, ...]
    system_node_instance_type: str
    system_node_count: int
    admin_principal_arns: tuple[str, ...]
    log_retention_days: int
    deletion_protection: bool
    upgrade_policy: str  # STANDARD | EXTENDED (llm-fleet:cluster.upgrade_policy)
    # The identity that deploys the in-cluster layer (None: none to grant, e.g. an account root).
    deployer_principal_arn: str | None
    system_root_volume_gib: int = 50
    tags: Mapping[str, str] = field(default_factory=dict)


class Cluster(pulumi.ComponentResource):
    """EKS control plane, node IAM role, system node group and core add-ons."""

    eks: aws.eks.Cluster
    node_role: aws.iam.Role
    secrets_key: aws.kms.Key
    system_nodes: aws.eks.NodeGroup
    addons: dict[str, aws.eks.Addon]
    kubeconfig: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-fleet:cluster:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ctx, tags, cname = args.aws, args.tags, args.cluster_name

        self.secrets_key = aws.kms.Key(
            f"{name}-secrets-key",
            description=f"EKS secrets envelope encryption for {cname}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=merge_tags(tags, Name=f"{cname}-secrets"),
            opts=child,
        )
        # Fixed names (an alias, the log group EKS writes to) are released before a replacement.
        fixed = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        aws.kms.Alias(
            f"{name}-secrets-key-alias", name=f"alias/{cname}-secrets", target_key_id=self.secrets_key.key_id,
            opts=fixed,
        )

        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=assume_role_policy(f"eks.{ctx.dns_suffix}", ("sts:AssumeRole", "sts:TagSession")),
            description=f"EKS control plane of {cname}",
            tags=tags,
            opts=child,
        )
        role_policy = aws.iam.RolePolicyAttachment(
            f"{name}-role-cluster-policy",
            role=role.name,
            policy_arn=ctx.managed_policy("AmazonEKSClusterPolicy"),
            opts=child,
        )
        # Created before the cluster so that its retention applies (EKS would create it unbounded).
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-log-group",
            name=f"/aws/eks/{cname}/cluster",
            retention_in_days=args.log_retention_days,
            tags=tags,
            opts=fixed,
        )

        vpc_config: dict = {
            "subnet_ids": list(args.subnet_ids),
            "endpoint_private_access": True,
            "endpoint_public_access": args.endpoint_public_access,
        }
        if args.endpoint_public_access:
            vpc_config["public_access_cidrs"] = list(args.public_access_cidrs)
        self.eks = aws.eks.Cluster(
            name,
            name=cname,
            version=args.kubernetes_version,
            role_arn=role.arn,
            vpc_config=vpc_config,
            encryption_config={"provider": {"key_arn": self.secrets_key.arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=list(CONTROL_PLANE_LOG_TYPES),
            access_config={
                "authentication_mode": "API",
                # ForceNew: fixed, never derived from the admin list (explicit entries below).
                "bootstrap_cluster_creator_admin_permissions": False,
            },
            # STANDARD unless the stack chose extended support explicitly (config validation).
            upgrade_policy={"support_type": args.upgrade_policy},
            deletion_protection=args.deletion_protection,
            tags=merge_tags(tags, Name=cname),
            # A fixed name: the old cluster must go before its replacement can take the name
            # (and deletion protection refuses that until it is turned off).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy, log_group], delete_before_replace=True),
        )

        self.admin_access: dict[str, aws.eks.AccessPolicyAssociation] = {}
        for principal in admin_principals(args.admin_principal_arns, args.deployer_principal_arn):
            self.admin_access[principal] = self._admin(name, principal, tags)
        self.deployer_access = self.admin_access.get(args.deployer_principal_arn or "")

        # One node role for system and GPU nodes (EKS adds its access entry for managed node groups).
        self.node_role = aws.iam.Role(
            f"{name}-node-role",
            assume_role_policy=assume_role_policy(f"ec2.{ctx.dns_suffix}"),
            description=f"EKS nodes of {cname}",
            tags=tags,
            opts=child,
        )
        node_policies = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-role-{policy}",
                role=self.node_role.name,
                policy_arn=ctx.managed_policy(policy),
                opts=child,
            )
            for policy in NODE_MANAGED_POLICIES
        ]

        self.addons = {}
        for addon in ("vpc-cni", "kube-proxy", "eks-pod-identity-agent"):
            self.addons[addon] = self._addon(name, addon, tags, child, **ADDON_EXTRA.get(addon, {}))
        # What every node group waits for, and outlives on destroy: without the role's policies
        # or the CNI, nodes never join (and a destroy that strips them first hangs).
        self.node_prerequisites: list[pulumi.Resource] = [*node_policies, self.addons["vpc-cni"]]

        system_lt = aws.ec2.LaunchTemplate(
            f"{name}-system-lt",
            description=f"System nodes of {cname}",
            metadata_options=imdsv2_metadata_options(),
            block_device_mappings=[encrypted_root_volume(args.system_root_volume_gib)],
            tag_specifications=[
                {"resource_type": kind, "tags": merge_tags(tags, Name=f"{cname}-system")}
                for kind in ("instance", "volume", "network-interface")
            ],
            update_default_version=True,
            tags=tags,
            opts=child,
        )
        self.system_nodes = aws.eks.NodeGroup(
            f"{name}-system",
            cluster_name=self.eks.name,
            # A generated suffix: a replacement (ForceNew fields such as instance_types or
            # subnet_ids) comes up beside the old group before the old one is deleted.
            node_group_name_prefix=f"{cname}-system-",
            node_role_arn=self.node_role.arn,
            subnet_ids=list(args.subnet_ids),
            ami_type="AL2023_x86_64_STANDARD",
            capacity_type="ON_DEMAND",
            instance_types=[args.system_node_instance_type],
            version=args.kubernetes_version,
            scaling_config={
                "min_size": args.system_node_count,
                "desired_size": args.system_node_count,
                "max_size": args.system_node_count + 1,
            },
            launch_template={"id": system_lt.id, "version": system_lt.latest_version.apply(str)},
            labels=dict(SYSTEM_NODE_LABELS),
            update_config={"max_unavailable": 1},
            node_repair_config={"enabled": True},
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=self.node_prerequisites,
                ignore_changes=["scalingConfig.desiredSize"],
            ),
        )
        # CoreDNS, the node monitoring agent and the EBS CSI controller need somewhere to run.
        on_nodes = pulumi.ResourceOptions(parent=self, depends_on=[self.system_nodes])
        self.addons["coredns"] = self._addon(name, "coredns", tags, on_nodes)
        self.addons[NODE_MONITORING_ADDON] = self._addon(name, NODE_MONITORING_ADDON, tags, on_nodes)
        self.ebs_csi_role = aws.iam.Role(
            f"{name}-ebs-csi-role",
            description=f"EBS CSI controller of {cname} (EKS Pod Identity, kube-system/{EBS_CSI_SERVICE_ACCOUNT})",
            assume_role_policy=self.eks.arn.apply(
                lambda arn: pod_identity_trust_policy(ctx.account_id, arn, ctx.dns_suffix)),
            max_session_duration=3600,
            tags=tags,
            opts=child,
        )
        ebs_policy = aws.iam.RolePolicyAttachment(
            f"{name}-ebs-csi-role-policy",
            role=self.ebs_csi_role.name,
            # AWS's policy for the driver: volume and snapshot calls, creation scoped by the
            # driver's request tags (ebs.csi.aws.com/cluster), deletion to volumes it tagged.
            policy_arn=ctx.managed_policy(EBS_CSI_MANAGED_POLICY),
            opts=child,
        )
        self.addons[EBS_CSI_ADDON] = self._addon(
            name, EBS_CSI_ADDON, tags, pulumi.ResourceOptions(parent=self, depends_on=[self.system_nodes, ebs_policy]),
            pod_identity_associations=[{"role_arn": self.ebs_csi_role.arn, "service_account": EBS_CSI_SERVICE_ACCOUNT}],
        )

        ca_data = self.eks.certificate_authority.apply(lambda ca: ca["data"] if isinstance(ca, dict) else ca.data)
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(self.eks.name, self.eks.endpoint, ca_data).apply(
                lambda v: render_kubeconfig(v[0], v[1], v[2], ctx.region)
            )
        )
        self.cluster_security_group_id = self.eks.vpc_config.apply(
            lambda vc: vc["cluster_security_group_id"] if isinstance(vc, dict) else vc.cluster_security_group_id
        )
        self.register_outputs(
            {
                "cluster_name": self.eks.name,
                "endpoint": self.eks.endpoint,
                "arn": self.eks.arn,
                "cluster_security_group_id": self.cluster_security_group_id,
                "node_role_arn": self.node_role.arn,
                "secrets_key_arn": self.secrets_key.arn,
                "kubeconfig": self.kubeconfig,
            }
        )

    def _addon(self, name: str, addon: str, tags: Mapping[str, str], opts: pulumi.ResourceOptions,
               **extra: object) -> aws.eks.Addon:
        return aws.eks.Addon(
            f"{name}-addon-{addon}",
            cluster_name=self.eks.name,
            addon_name=addon,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="PRESERVE",
            tags=tags,
            **extra,
            # One add-on of a name per cluster: a replacement must delete the old one first.
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True)),
        )

    def _admin(self, name: str, principal: str, tags: Mapping[str, str]) -> aws.eks.AccessPolicyAssociation:
        """An access entry + cluster-admin association for one principal, named by its ARN."""
        key = short_hash(principal)
        # One entry per principal and cluster: replacing one must delete it first.
        once = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        entry = aws.eks.AccessEntry(
            f"{name}-admin-{key}", cluster_name=self.eks.name, principal_arn=principal, type="STANDARD",
            tags=tags, opts=once,
        )
        return aws.eks.AccessPolicyAssociation(
            f"{name}-admin-{key}-policy", cluster_name=self.eks.name, principal_arn=entry.principal_arn,
            policy_arn=CLUSTER_ADMIN_POLICY, access_scope={"type": "cluster"}, opts=once,
        )


def admin_principals(admins: Sequence[str], deployer: str | None) -> list[str]:
    """Configured admins plus the deployer, each once (EKS allows one access entry per principal)."""
    return list(dict.fromkeys([*admins, *([deployer] if deployer else [])]))
