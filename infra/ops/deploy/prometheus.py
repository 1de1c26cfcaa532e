"""`interfaces.PrometheusClient`s: the health gate's PromQL, from where the cluster can be reached.

* `infra.ops.rollout.health.UrlPrometheus`: GET `<prometheus_url>/api/v1/query` directly (a
  cluster whose Prometheus the operator's network reaches);
* `InVpcPrometheus`: one build of the stack's in-VPC deployer per round of queries (action
  `prometheus`), which runs `ApiServerPrometheus` there and prints the answers back;
* `ApiServerPrometheus`: inside the VPC, each query through the EKS API server's service proxy,
  `GET <endpoint>/api/v1/namespaces/<ns>/services/<service>:<port>/proxy/api/v1/query?query=...`,
  authenticated with an EKS token (a presigned STS GetCallerIdentity, as `aws eks get-token`
  makes it) and the cluster's CA. Kubernetes documents the proxy path ("Manually constructing
  apiserver proxy URLs": `services/[https:]service_name[:port_name]/proxy`, and a port number may
  stand in for the name).
"""
from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Sequence

from infra.core import deploy
from infra.core.rollout.interfaces import InVpcRunner
from infra.ops.rollout.health import query_url

TIMEOUT_S = 15.0
TOKEN_PREFIX = "k8s-aws-v1."
TOKEN_TTL_S = 60
CLUSTER_ID_HEADER = "x-k8s-aws-id"


class InVpcPrometheus:
    """A round of queries as one in-VPC build (it needs minutes to start: docs/rollout.md)."""

    def __init__(self, runner: InVpcRunner, on_output: Callable[[str], None] = lambda line: None) -> None:
        self.runner = runner
        self.on_output = on_output

    def query(self, stack: str, region: str, queries: Sequence[str]) -> list[tuple[int, bytes]]:
        from infra.core.errors import WorkspaceError

        try:
            result = self.runner.run(stack, deploy.PROMETHEUS, on_output=self.on_output,
                                     env={deploy.QUERIES_ENV: json.dumps(list(queries))})
        except WorkspaceError as exc:
            return [(0, f"in-VPC query failed: {exc}".encode())] * len(queries)
        answers = (result.document or {}).get("answers") if isinstance(result.document, dict) else None
        if not result.succeeded or not isinstance(answers, list) or len(answers) != len(queries):
            tail = " | ".join(result.log_tail[-4:])
            return [(0, f"in-VPC query build {result.build_id} {result.status}: {tail}".encode())] * len(queries)
        return [(int(a.get("status", 0)), str(a.get("body", "")).encode()) for a in answers]


def eks_token(session: Any, cluster_name: str, region: str) -> str:
    """The bearer token `aws eks get-token` prints: a presigned STS GetCallerIdentity URL naming
    the cluster in the signed `x-k8s-aws-id` header (aws-iam-authenticator's token format)."""
    from botocore.signers import RequestSigner

    sts = session.client("sts", region_name=region)
    signer = RequestSigner(sts.meta.service_model.service_id, region, "sts", "v4", session.get_credentials(),
                           session.events)
    url = signer.generate_presigned_url(
        {"method": "GET", "url": f"https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
         "body": {}, "headers": {CLUSTER_ID_HEADER: cluster_name}, "context": {}},
        region_name=region, expires_in=TOKEN_TTL_S, operation_name="")
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


class ApiServerPrometheus:
    """Inside the VPC: Prometheus through the API server's service proxy."""

    def __init__(self, session: Any, cluster_name: str, region: str, *, namespace: str, service: str, port: int,
                 opener: Callable[[urllib.request.Request, str, float], tuple[int, bytes]] | None = None) -> None:
        self.session = session
        self.cluster_name = cluster_name
        self.region = region
        self.proxy = f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy"
        self.opener = opener or _open

    def query(self, stack: str, region: str, queries: Sequence[str]) -> list[tuple[int, bytes]]:
        cluster = self.session.client("eks", region_name=self.region).describe_cluster(name=self.cluster_name)["cluster"]
        token = eks_token(self.session, self.cluster_name, self.region)
        ca_pem = base64.b64decode(cluster["certificateAuthority"]["data"]).decode()
        out = []
        for q in queries:
            request = urllib.request.Request(query_url(cluster["endpoint"] + self.proxy, q),
                                             headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
            try:
                out.append(self.opener(request, ca_pem, TIMEOUT_S))
            except (OSError, urllib.error.URLError, ssl.SSLError) as exc:
                out.append((0, f"cannot reach the API server proxy: {exc}".encode()))
        return out


def _open(request: urllib.request.Request, ca_pem: str, timeout_s: float) -> tuple[int, bytes]:
    """GET with the cluster's CA as the only trust anchor."""
    context = ssl.create_default_context(cadata=ca_pem)
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout_s) as resp:  # noqa: S310 - the API server
            return resp.status, resp.read(1 << 20)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(1 << 16) if exc.fp else b""
