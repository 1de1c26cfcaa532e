"""The gates that need the cluster from inside (PromQL through the in-VPC deployer and the API
server proxy) and destroy's wait for the gateway's load balancer (moto's elbv2 on 127.0.0.1)."""
from __future__ import annotations

import base64
import json
import urllib.parse

import boto3
import pytest
from botocore.stub import Stubber

from infra.core import deploy
from infra.core.errors import WorkspaceError
from infra.core.rollout.interfaces import InVpcResult
from infra.core.rollout.spec import HealthGate
from infra.ops.deploy.loadbalancers import ElbV2LoadBalancers
from infra.ops.deploy.prometheus import ApiServerPrometheus, InVpcPrometheus, eks_token
from infra.ops.rollout.health import GateHealthChecker

from deploy_support import FakeRunner

REGION = "us-east-1"
CLUSTER = "llm-fleet-prod"
VECTOR = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "0.2"]}]}})


def test_in_vpc_prometheus_runs_a_round_of_queries_as_one_build():
    runner = FakeRunner()
    runner.results[deploy.PROMETHEUS] = InVpcResult("p:1", "SUCCEEDED", {"answers": [
        {"status": 200, "body": VECTOR}, {"status": 503, "body": "unavailable"}]})
    answers = InVpcPrometheus(runner).query("prod", REGION, ["q1", "q2"])
    assert answers == [(200, VECTOR.encode()), (503, b"unavailable")]
    ((stack, action, env, _),) = runner.runs
    assert (stack, action) == ("prod", "prometheus") and json.loads(env[deploy.QUERIES_ENV]) == ["q1", "q2"]


@pytest.mark.parametrize("result", [InVpcResult("p:2", "FAILED", None, ("cannot reach",)),
                                    InVpcResult("p:3", "SUCCEEDED", {"answers": []})])
def test_a_failed_round_fails_every_query_with_the_reason(result):
    runner = FakeRunner()
    runner.results[deploy.PROMETHEUS] = result
    answers = InVpcPrometheus(runner).query("prod", REGION, ["q1", "q2"])
    assert [status for status, _ in answers] == [0, 0] and result.build_id.encode() in answers[0][1]


def test_the_health_gate_sends_private_stacks_queries_into_the_vpc():
    """HTTP checks stay where the rollout runs (they probe what clients reach); PromQL goes to the
    stack's Prometheus client."""
    gate = HealthGate.model_validate({
        "prometheus_url": "https://prometheus.{region}.internal.example.com",
        "queries": [{"name": "ttft-p95", "query": 'histogram_quantile(0.95, x{region="{region}"})', "max_value": 0.6}],
        "http": [{"name": "gateway-health", "url": "https://llm.{region}.example.com/health"}],
    })
    runner = FakeRunner()
    runner.results[deploy.PROMETHEUS] = InVpcResult("p:1", "SUCCEEDED", {"answers": [{"status": 200, "body": VECTOR}]})
    fetched: list[str] = []

    def fetch(url, timeout_s):
        fetched.append(url)
        return 200, b"ok"

    checker = GateHealthChecker(gate, "prod", fetch=fetch, prometheus_for=lambda stack: InVpcPrometheus(runner))
    report = checker.check("prod", REGION)
    assert report.ok, report.summary()
    assert json.loads(runner.runs[0][2][deploy.QUERIES_ENV]) == ['histogram_quantile(0.95, x{region="us-east-1"})']
    assert fetched == ["https://llm.us-east-1.example.com/health"]


def _session():
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


def test_eks_token_is_a_presigned_get_caller_identity_naming_the_cluster():
    """aws-iam-authenticator's token: `k8s-aws-v1.` + unpadded base64url of a presigned STS
    GetCallerIdentity URL whose signed headers include x-k8s-aws-id (what `aws eks get-token` prints)."""
    token = eks_token(_session(), CLUSTER, REGION)
    assert token.startswith("k8s-aws-v1.") and "=" not in token
    raw = token.removeprefix("k8s-aws-v1.")
    url = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert url.startswith(f"https://sts.{REGION}.amazonaws.com/?")
    assert query["Action"] == ["GetCallerIdentity"] and "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0]
    assert query["X-Amz-Expires"] == ["60"]


def test_api_server_prometheus_goes_through_the_service_proxy():
    session = _session()
    eks = session.client("eks", region_name=REGION)
    stub = Stubber(eks)  # moto's EKS returns no usable CA: the stub answers DescribeCluster
    stub.add_response("describe_cluster", {"cluster": {
        "name": CLUSTER, "endpoint": "https://ABC.gr7.us-east-1.eks.amazonaws.com",
        "certificateAuthority": {"data": base64.b64encode(b"not a real CA").decode()}}}, {"name": CLUSTER})
    session.client = lambda service, region_name=None: eks if service == "eks" else boto3.Session.client(
        session, service, region_name=region_name)
    requests = []

    def opener(request, ca_pem, timeout_s):
        requests.append((request, ca_pem))
        return 200, VECTOR.encode()

    with stub:
        client = ApiServerPrometheus(session, CLUSTER, REGION, namespace="monitoring", service="prometheus-operated",
                                     port=9090, opener=opener)
        answers = client.query("prod", REGION, ['sum(vllm:num_requests_waiting{model_name="m"})'])
    assert answers == [(200, VECTOR.encode())]
    ((request, ca_pem),) = requests
    assert ca_pem == "not a real CA"  # the cluster's CA is the only trust anchor
    split = urllib.parse.urlsplit(request.full_url)
    assert split.path == "/api/v1/namespaces/monitoring/services/prometheus-operated:9090/proxy/api/v1/query"
    assert urllib.parse.parse_qs(split.query)["query"] == ['sum(vllm:num_requests_waiting{model_name="m"})']
    assert request.get_header("Authorization").startswith("Bearer k8s-aws-v1.")


# --- destroy: the gateway's load balancer -------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def elbv2(moto_endpoint):
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint)
    client = boto3.client("elbv2", region_name=REGION, endpoint_url=moto_endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24", AvailabilityZone=f"{REGION}{z}")["Subnet"]["SubnetId"]
               for i, z in enumerate("ab")]
    made = []

    def nlb(name: str, tags: dict[str, str]) -> str:
        arn = client.create_load_balancer(Name=name, Subnets=subnets, Type="network", Scheme="internet-facing",
                                          Tags=[{"Key": k, "Value": v} for k, v in tags.items()])["LoadBalancers"][0]["LoadBalancerArn"]
        made.append(arn)
        return arn

    yield client, nlb
    for arn in made:
        try:
            client.delete_load_balancer(LoadBalancerArn=arn)
        except client.exceptions.LoadBalancerNotFoundException:
            pass


def test_destroy_waits_for_the_clusters_nlb_and_ignores_others(elbv2):
    """The in-tree AWS service controller tags the NLB of a LoadBalancer Service with
    kubernetes.io/cluster/<cluster>=owned and kubernetes.io/service-name=<ns>/<name>
    (kubernetes/legacy-cloud-providers, aws_loadbalancer.go); the AWS Load Balancer Controller
    with elbv2.k8s.aws/cluster=<cluster>."""
    client, nlb = elbv2
    ours = nlb("k8s-envoy", {f"kubernetes.io/cluster/{CLUSTER}": "owned",
                             "kubernetes.io/service-name": "envoy-gateway-system/envoy-llm-serving-llm-fleet"})
    nlb("someone-elses", {"kubernetes.io/cluster/other": "owned"})
    waiter = ElbV2LoadBalancers(lambda stack: client, clock=Clock(), timeout_s=60, poll_s=15)
    assert waiter.of_cluster("prod", CLUSTER) == [(ours, "envoy-gateway-system/envoy-llm-serving-llm-fleet")]
    said: list[str] = []
    with pytest.raises(WorkspaceError, match="load balancers still exist after 60 s: k8s-envoy"):
        waiter.wait_gone("prod", CLUSTER, on_output=said.append)
    assert len(said) == 4  # polled every 15 s until the 60 s were up
    client.delete_load_balancer(LoadBalancerArn=ours)
    waiter.wait_gone("prod", CLUSTER, on_output=said.append)
    assert said[-1] == f"no load balancer of cluster {CLUSTER} is left"


def test_load_balancer_controller_tag_counts_too(elbv2):
    client, nlb = elbv2
    arn = nlb("k8s-lbc", {"elbv2.k8s.aws/cluster": CLUSTER})
    assert [a for a, _ in ElbV2LoadBalancers(lambda stack: client).of_cluster("prod", CLUSTER)] == [arn]
