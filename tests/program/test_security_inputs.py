"""Security-relevant inputs of each component, read from the prod plan as the engine sees them."""
from __future__ import annotations

import base64
import email
import json

import pytest
import yaml

from infra.core.config import load_stack_config
from infra.core.paths import REPO_ROOT as PROJECT_DIR
from tests.program.support import CLUSTER, LAUNCH_TEMPLATE, ROLE, gpu_node_groups, run_variant


def _policy(doc: str) -> dict:
    return json.loads(doc)


# -- cluster ----------------------------------------------------------------------------------


def test_cluster_endpoint_is_private(prod_run):
    vpc = prod_run.one(CLUSTER, "cluster").inputs["vpcConfig"]
    assert vpc["endpointPrivateAccess"] is True
    assert vpc["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in vpc


def test_public_endpoint_only_for_listed_cidrs():
    run = run_variant(cluster__endpoint_public_access=True, cluster__public_access_cidrs=["203.0.113.0/24"])
    vpc = run.one(CLUSTER, "cluster").inputs["vpcConfig"]
    assert vpc["endpointPublicAccess"] is True
    assert vpc["publicAccessCidrs"] == ["203.0.113.0/24"]


def test_cluster_secrets_encrypted_with_rotating_kms_key(prod_run):
    cluster = prod_run.one(CLUSTER, "cluster").inputs
    enc = cluster["encryptionConfig"]
    assert enc["resources"] == ["secrets"]
    key = prod_run.one("aws:kms/key:Key", "cluster-secrets-key")
    assert enc["provider"]["keyArn"].startswith("arn:aws:kms:us-east-1:123456789012:key/")
    assert key.inputs["enableKeyRotation"] is True


def test_cluster_logs_all_five_types_and_access_entries(prod_run):
    cluster = prod_run.one(CLUSTER, "cluster").inputs
    assert sorted(cluster["enabledClusterLogTypes"]) == sorted(
        ["api", "audit", "authenticator", "controllerManager", "scheduler"]
    )
    assert cluster["accessConfig"]["authenticationMode"] == "API"
    assert cluster["upgradePolicy"]["supportType"] == "STANDARD"
    log_group = prod_run.one("aws:cloudwatch/logGroup:LogGroup", "cluster-log-group").inputs
    assert log_group["name"] == "/aws/eks/llm-fleet-prod/cluster"
    assert log_group["retentionInDays"] == 90


DEPLOYER = "arn:aws:iam::123456789012:role/llm-fleet-deployer"  # the mocks' caller identity, as an IAM role


def _cluster_children(run, typ: str) -> list:
    """The resources of `typ` the Cluster component registers (the in-VPC deployer has its own)."""
    cluster = run.one("llm-fleet:cluster:Cluster", "cluster").urn
    return [r for r in run.of_type(typ) if r.parent == cluster]


def _entries(run) -> dict[str, str]:
    return {r.inputs["principalArn"]: r.name for r in _cluster_children(run, "aws:eks/accessEntry:AccessEntry")}


def test_the_deployer_gets_an_explicit_admin_entry_and_the_creator_flag_is_always_false(prod_run):
    """`bootstrap_cluster_creator_admin_permissions` is ForceNew (terraform-provider-aws
    internal/service/eks/cluster.go: access_config.bootstrap_cluster_creator_admin_permissions,
    ForceNew: true; EKS API CreateCluster only): it is fixed at false, and the deployer is an
    explicit access entry with AmazonEKSClusterAdminPolicy (EKS user guide, "Grant IAM users and
    roles access to Kubernetes APIs")."""
    assert prod_run.one(CLUSTER, "cluster").inputs["accessConfig"]["bootstrapClusterCreatorAdminPermissions"] is False
    assert set(_entries(prod_run)) == {DEPLOYER}
    (assoc,) = _cluster_children(prod_run, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert assoc.inputs["policyArn"].endswith("AmazonEKSClusterAdminPolicy") and assoc.inputs["accessScope"] == {"type": "cluster"}
    # Exported for the workloads project, whose provider acts as the deployer (the base releases
    # its kubeconfig only once this association exists).
    assert prod_run.projects["llm-fleet"].outputs["cluster_deployer_access"] == assoc.id


def test_adding_admins_replaces_nothing(prod_run):
    admin = "arn:aws:iam::123456789012:role/platform-admin"
    run = run_variant(cluster__admin_principal_arns=[admin, DEPLOYER])
    assert run.one(CLUSTER, "cluster").inputs == prod_run.one(CLUSTER, "cluster").inputs
    entries = _entries(run)
    assert set(entries) == {admin, DEPLOYER}  # the deployer listed as an admin too: one entry
    assert entries[DEPLOYER] == _entries(prod_run)[DEPLOYER]  # same resource: not replaced
    assocs = {r.inputs["principalArn"] for r in _cluster_children(run, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation")}
    assert assocs == {admin, DEPLOYER}


def test_a_deployer_role_with_a_path_is_named_in_config():
    role = "arn:aws:iam::123456789012:role/ci/llm-fleet-deployer"
    run = run_variant(cluster__deployer_principal_arn=role)
    assert set(_entries(run)) == {role}


def test_core_addons_node_monitoring_and_ebs_csi(prod_run):
    addons = {r.inputs["addonName"]: r for r in prod_run.of_type("aws:eks/addon:Addon")}
    assert set(addons) == {"vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent", "eks-node-monitoring-agent",
                           "aws-ebs-csi-driver"}
    system = prod_run.one("aws:eks/nodeGroup:NodeGroup", "cluster-system").urn
    for name in ("coredns", "eks-node-monitoring-agent", "aws-ebs-csi-driver"):
        assert system in addons[name].depends_on, name  # they need somewhere to run
    (assoc,) = addons["aws-ebs-csi-driver"].inputs["podIdentityAssociations"]
    role = prod_run.one(ROLE, "cluster-ebs-csi-role")
    assert assoc["serviceAccount"] == "ebs-csi-controller-sa"
    assert assoc["roleArn"] == f"arn:aws:iam::123456789012:role/{role.id}"
    (stmt,) = _policy(role.inputs["assumeRolePolicy"])["Statement"]
    assert stmt["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert stmt["Condition"]["ArnEquals"] == {"aws:SourceArn": "arn:aws:eks:us-east-1:123456789012:cluster/llm-fleet-prod"}
    attached = {r.inputs["policyArn"] for r in prod_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                if r.name == "cluster-ebs-csi-role-policy"}
    assert attached == {"arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"}


def test_every_node_group_has_auto_repair_and_follows_the_cluster_version(prod_run):
    """Node auto repair acts on the node monitoring agent's conditions (EKS user guide, "Enable
    node auto repair and investigate node health issues"); node groups name the cluster's
    Kubernetes version so a control-plane upgrade is followed by theirs."""
    version = prod_run.one(CLUSTER, "cluster").inputs["version"]
    for ng in prod_run.of_type("aws:eks/nodeGroup:NodeGroup"):
        assert ng.inputs["nodeRepairConfig"] == {"enabled": True}, ng.name
        assert ng.inputs["version"] == version, ng.name


def test_node_groups_wait_for_the_node_roles_policies_and_the_cni(prod_run):
    """Nodes join only with the node role's managed policies and the VPC CNI in place (EKS user
    guide, "Amazon EKS node IAM role"); depending on them also orders destroy: node groups go
    first, so a destroy never strips the policies from running nodes and then hangs."""
    attachments = {r.urn for r in prod_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                   if r.name.startswith("cluster-node-role-")}
    cni = prod_run.one("aws:eks/addon:Addon", "cluster-addon-vpc-cni").urn
    assert len(attachments) == 4
    for ng in prod_run.of_type("aws:eks/nodeGroup:NodeGroup"):
        assert attachments | {cni} <= set(ng.depends_on), ng.name


def test_system_node_group_is_general_purpose_and_sized_from_config(prod_run):
    system = [r for r in prod_run.of_type("aws:eks/nodeGroup:NodeGroup") if r.name == "cluster-system"]
    assert len(system) == 1
    inputs = system[0].inputs
    cfg = load_stack_config("prod", PROJECT_DIR).cluster
    assert inputs["instanceTypes"] == [cfg.system_node_instance_type] and not cfg.system_node_instance_type.startswith(("p", "g"))
    assert inputs["amiType"] == "AL2023_x86_64_STANDARD"
    n = cfg.system_node_count
    assert inputs["scalingConfig"] == {"minSize": n, "desiredSize": n, "maxSize": n + 1}


# -- launch templates (GPU and system) --------------------------------------------------------


def test_every_launch_template_requires_imdsv2_with_one_hop_and_encrypted_gp3(prod_run):
    templates = prod_run.of_type(LAUNCH_TEMPLATE)
    assert len(templates) == 4  # 3 GPU AZs + system
    for lt in templates:
        md = lt.inputs["metadataOptions"]
        assert md["httpTokens"] == "required", lt.name
        assert md["httpPutResponseHopLimit"] == 1, lt.name
        (bdm,) = lt.inputs["blockDeviceMappings"]
        assert bdm["ebs"]["encrypted"] == "true", lt.name
        assert bdm["ebs"]["volumeType"] == "gp3", lt.name


def test_gpu_launch_template_efa_interfaces_and_no_public_ip(prod_run):
    lt = prod_run.one(LAUNCH_TEMPLATE, "gpu-us-east-1a-lt").inputs
    nics = lt["networkInterfaces"]
    assert len(nics) == 32  # p5.48xlarge: 32 EFA-capable network cards
    assert [n["networkCardIndex"] for n in nics] == list(range(32))
    assert nics[0]["interfaceType"] == "efa" and nics[0]["deviceIndex"] == 0
    assert {n["interfaceType"] for n in nics[1:]} == {"efa-only"}
    assert {n["deviceIndex"] for n in nics[1:]} == {1}
    for nic in nics:
        assert nic["associatePublicIpAddress"] == "false"
        # the EFA group (self-referencing) and the EKS cluster security group
        assert len(nic["securityGroups"]) == 2 and nic["securityGroups"] == nics[0]["securityGroups"]


def test_no_placement_group_when_every_engine_fits_in_one_node(prod_run):
    """TP inside one node needs no cluster placement group (EFA does not require one: EC2 user
    guide, "Elastic Fabric Adapter"), and a cluster group raises insufficient-capacity errors
    for the whole group at once (EC2 user guide, "Placement groups": "If you receive a capacity
    error when launching an instance in a placement group that already has running instances,
    stop and start all of the instances")."""
    assert prod_run.plan.tensor_parallel <= prod_run.plan.gpus_per_node
    assert prod_run.of_type("aws:ec2/placementGroup:PlacementGroup") == []
    assert all("placement" not in lt.inputs for lt in prod_run.of_type(LAUNCH_TEMPLATE))


def test_placement_group_when_configured():
    run = run_variant(gpu_nodes__cluster_placement_group=True)
    for az in ("us-east-1a", "us-east-1b", "us-east-1c"):
        pg = run.one("aws:ec2/placementGroup:PlacementGroup", f"gpu-{az}-pg")
        assert pg.inputs["strategy"] == "cluster" and "name" not in pg.inputs  # generated name
        assert run.one(LAUNCH_TEMPLATE, f"gpu-{az}-lt").inputs["placement"] == {"groupName": pg.id}


def test_an_existing_placement_group_named_in_config_is_used_not_created():
    """A capacity reservation can be bound to a cluster placement group created beforehand (EC2
    user guide, "Capacity Reservations in cluster placement groups"): the launch template names
    that group, and the stack neither creates nor deletes it."""
    azs = ["us-east-1a", "us-east-1b", "us-east-1c"]
    names = {az: f"p5-block-{az}" for az in azs}
    run = run_variant(network__availability_zones=azs, gpu_nodes__placement_group_names=names)
    assert run.of_type("aws:ec2/placementGroup:PlacementGroup") == []
    for az in azs:
        assert run.one(LAUNCH_TEMPLATE, f"gpu-{az}-lt").inputs["placement"] == {"groupName": names[az]}


def test_gpu_user_data_is_mime_nodeconfig_with_raid0_and_no_secrets(prod_run):
    lt = prod_run.one(LAUNCH_TEMPLATE, "gpu-us-east-1b-lt").inputs
    raw = base64.b64decode(lt["userData"]).decode()
    msg = email.message_from_string(raw)
    assert msg.is_multipart()
    (part,) = msg.get_payload()
    assert part.get_content_type() == "application/node.eks.aws"
    doc = yaml.safe_load(part.get_payload())
    assert doc["kind"] == "NodeConfig" and doc["apiVersion"] == "node.eks.aws/v1alpha1"
    assert doc["spec"]["instance"]["localStorage"]["strategy"] == "RAID0"
    for word in ("password", "secret", "AKIA", "token"):
        assert word.lower() not in raw.lower()


def test_gpu_node_groups_taints_labels_ami_and_placement(prod_run):
    groups = gpu_node_groups(prod_run)
    assert len(groups) == 3
    for ng in groups:
        i = ng.inputs
        assert i["amiType"] == "AL2023_x86_64_NVIDIA"
        assert i["instanceTypes"] == ["p5.48xlarge"]
        assert i["taints"] == [{"effect": "NO_SCHEDULE", "key": "nvidia.com/gpu", "value": "true"}]
        assert i["labels"]["nvidia.com/gpu.present"] == "true"
        assert i["labels"]["llm-fleet/az"] == ng.name.removeprefix("gpu-")
        assert len(i["subnetIds"]) == 1  # one AZ: the placement group's
        assert i["capacityType"] == "ON_DEMAND"


def test_efa_security_group_admits_only_itself(prod_run):
    rules = prod_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") + prod_run.of_type(
        "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
    )
    rules = [r for r in rules if r.name.startswith("network-")]  # the deployer's: tests/program/test_deployer.py
    assert {r.name for r in rules} == {"network-efa-ingress-self", "network-efa-egress-self"}
    for rule in rules:
        assert rule.inputs["ipProtocol"] == "-1"
        assert rule.inputs["referencedSecurityGroupId"] == rule.inputs["securityGroupId"]
        assert "cidrIpv4" not in rule.inputs


def test_no_security_group_opens_anything_to_the_internet(prod_run):
    default_sg = prod_run.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "network-default-sg").inputs
    assert not default_sg.get("ingress") and not default_sg.get("egress")
    for r in prod_run.resources:
        assert "0.0.0.0/0" not in json.dumps(r.inputs.get("ingress", [])), r.name


def test_subnets_never_map_public_ips_and_s3_uses_a_gateway_endpoint(prod_run):
    for subnet in prod_run.of_type("aws:ec2/subnet:Subnet"):
        assert subnet.inputs["mapPublicIpOnLaunch"] is False
    endpoint = prod_run.one("aws:ec2/vpcEndpoint:VpcEndpoint", "network-s3-endpoint").inputs
    assert endpoint["vpcEndpointType"] == "Gateway"
    assert endpoint["serviceName"] == "com.amazonaws.us-east-1.s3"
    private_rts = {r.urn for r in prod_run.of_type("aws:ec2/routeTable:RouteTable") if "private" in r.name}
    assert len(endpoint["routeTableIds"]) == len(private_rts) == 3


# -- weights ----------------------------------------------------------------------------------


def test_weight_bucket_encryption_versioning_public_block_ownership(prod_run):
    enc = prod_run.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "weights-encryption"
    ).inputs
    (rule,) = enc["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"].startswith("arn:aws:kms:")
    assert rule["bucketKeyEnabled"] is True
    versioning = prod_run.one("aws:s3/bucketVersioning:BucketVersioning", "weights-versioning").inputs
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    pab = prod_run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "weights-public-access-block").inputs
    assert all(pab[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    own = prod_run.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls", "weights-ownership").inputs
    assert own["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    assert prod_run.one("aws:kms/key:Key", "weights-key").inputs["enableKeyRotation"] is True


def test_weight_bucket_policy_denies_insecure_transport(prod_run):
    policy = _policy(prod_run.one("aws:s3/bucketPolicy:BucketPolicy", "weights-policy").inputs["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    tls = by_sid["DenyInsecureTransport"]
    assert tls["Effect"] == "Deny" and tls["Principal"] == "*" and tls["Action"] == "s3:*"
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    bucket = "arn:aws:s3:::llm-fleet-prod-weights-123456789012-us-east-1"
    assert sorted(tls["Resource"]) == [bucket, f"{bucket}/*"]
    assert by_sid["DenyOutdatedTls"]["Condition"] == {"NumericLessThan": {"s3:TlsVersion": "1.2"}}


def test_weight_bucket_lifecycle_expires_old_revisions(prod_run):
    rules = prod_run.one(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "weights-lifecycle"
    ).inputs["rules"]
    by_id = {r["id"]: r for r in rules}
    assert by_id["expire-noncurrent-versions"]["noncurrentVersionExpiration"]["noncurrentDays"] == 30
    assert by_id["expire-retired-revisions"]["filter"]["tag"] == {
        "key": "llm-fleet:revision-state", "value": "retired"
    }
    assert by_id["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7
    assert all(r["status"] == "Enabled" for r in rules)


def test_weight_reader_is_read_only_and_bound_to_one_service_account(prod_run):
    role = prod_run.one(ROLE, "weights-reader-role").inputs
    trust = _policy(role["assumeRolePolicy"])
    (stmt,) = trust["Statement"]
    assert stmt["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert stmt["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    assert stmt["Condition"]["ArnEquals"] == {"aws:SourceArn": "arn:aws:eks:us-east-1:123456789012:cluster/llm-fleet-prod"}

    policy = _policy(prod_run.one("aws:iam/rolePolicy:RolePolicy", "weights-reader-policy").inputs["policy"])
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert actions == {"s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "kms:Decrypt"}
    for s in policy["Statement"]:
        assert s["Effect"] == "Allow"
        assert "*" not in s["Resource"]
        assert s["Condition"]["StringEquals"]["aws:PrincipalTag/kubernetes-service-account"] == "weight-hydrator"
        assert s["Condition"]["StringEquals"]["aws:PrincipalTag/kubernetes-namespace"] == "llm-serving"

    assoc = prod_run.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "weights-reader").inputs
    assert (assoc["namespace"], assoc["serviceAccount"]) == ("llm-serving", "weight-hydrator")
    assert assoc["roleArn"].endswith(":role/" + "weights-reader-role-" + assoc["roleArn"].rsplit("-", 1)[-1])
    assert assoc["clusterName"] == "llm-fleet-prod"


@pytest.mark.parametrize("typ", [ROLE])
def test_roles_trust_only_aws_services(prod_run, typ):
    for role in prod_run.of_type(typ):
        for stmt in _policy(role.inputs["assumeRolePolicy"])["Statement"]:
            assert set(stmt["Principal"]) == {"Service"}, role.name


def test_every_taggable_aws_resource_carries_the_required_tags(prod_run):
    untaggable = {
        "aws:ec2/route:Route", "aws:ec2/routeTableAssociation:RouteTableAssociation", "aws:kms/alias:Alias",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "aws:iam/rolePolicy:RolePolicy",
        "aws:eks/accessPolicyAssociation:AccessPolicyAssociation",
        "aws:ecr/pullThroughCacheRule:PullThroughCacheRule",  # takes no tags
    }
    for r in prod_run.resources:
        if not r.type.startswith("aws:") or r.type in untaggable or (
            r.type.startswith("aws:s3/bucket") and r.type != "aws:s3/bucket:Bucket"
        ):
            continue
        tags = r.inputs.get("tags") or {}
        for key in ("environment", "cost-center", "owner"):
            assert key in tags, f"{r.type} {r.name} lacks tag {key}"


def test_alertmanager_publishes_to_its_topics_only_through_pod_identity(prod_run):
    role = prod_run.one(ROLE, "alerts-role")
    (stmt,) = _policy(role.inputs["assumeRolePolicy"])["Statement"]
    assert stmt["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert stmt["Condition"]["ArnEquals"] == {"aws:SourceArn": "arn:aws:eks:us-east-1:123456789012:cluster/llm-fleet-prod"}
    (allow,) = _policy(prod_run.one("aws:iam/rolePolicy:RolePolicy", "alerts-policy").inputs["policy"])["Statement"]
    assert allow["Action"] == ["sns:Publish"]
    assert allow["Resource"] == ["arn:aws:sns:us-east-1:123456789012:llm-fleet-prod-alerts"]
    assoc = prod_run.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "alerts-alertmanager").inputs
    assert (assoc["namespace"], assoc["serviceAccount"]) == ("monitoring", "alertmanager")
