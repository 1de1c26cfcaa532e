"""The bench gate's Job, run against a cluster's API server: apply, wait, read the result, clean up.

`KubeBenchRunner.run` (an `interfaces.BenchRunner` once bound to a stack's Job) applies the objects
of `infra.core.bench.job.manifests` (the Namespace and ServiceAccount are kept when they exist;
the NetworkPolicy, token Secret and Job are made for this run), waits for the Job to complete or
fail within its deadline, reads the result its pod printed into its log
(`infra.core.deploy.parse_result`), and deletes the run's objects whatever happened.

`ApiServerKube` is the REST client: the EKS API server with an EKS token (a presigned STS
GetCallerIdentity, renewed before it expires) and the cluster's CA, from wherever the API server
is reachable: here for a public endpoint, the in-VPC deployer's build for a private one
(`python -m infra in-vpc bench`). `secret_string` reads the bench tenant's JWT from Secrets Manager.

Kubernetes API facts relied on: POST to a collection answers 201 (409 AlreadyExists when the name
is taken); DELETE with `propagationPolicy=Background` removes a Job's pods after it; a Job's
`status.conditions` carry `Complete` or `Failed` (`DeadlineExceeded` past activeDeadlineSeconds);
`GET .../pods/<name>/log?container=<c>` returns the container's log as text.
"""
from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any, Callable, Mapping, Protocol

from infra.core.bench.job import BENCH_NAMESPACE, JOB_LABEL, BenchJob, manifests, token_secret
from infra.core.deploy import parse_result
from infra.core.rollout.interfaces import BenchOutcome, Clock, SystemClock

LOG_LIMIT_BYTES = 4 << 20
LOG_TAIL_LINES = 20
KEEP_IF_PRESENT = ("Namespace", "ServiceAccount")  # shared by every run: made once, never deleted
COLLECTIONS = {
    ("v1", "Namespace"): "/api/v1/namespaces",
    ("v1", "ServiceAccount"): "/api/v1/namespaces/{ns}/serviceaccounts",
    ("v1", "Secret"): "/api/v1/namespaces/{ns}/secrets",
    ("v1", "Pod"): "/api/v1/namespaces/{ns}/pods",
    ("networking.k8s.io/v1", "NetworkPolicy"): "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
    ("batch/v1", "Job"): "/apis/batch/v1/namespaces/{ns}/jobs",
}


class KubeApi(Protocol):
    """One REST call to a cluster's API server: (HTTP status, body); status 0 when unreachable."""

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> tuple[int, bytes]: ...


def collection(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return COLLECTIONS[(obj["apiVersion"], obj["kind"])].format(ns=meta.get("namespace", ""))


def object_path(obj: Mapping[str, Any]) -> str:
    return f"{collection(obj)}/{obj['metadata']['name']}"


class BenchError(Exception):
    pass


class KubeBenchRunner:
    """One bench Job on one cluster."""

    def __init__(self, api: KubeApi, *, token: Callable[[], str], clock: Clock | None = None, poll_s: float = 10.0,
                 on_output: Callable[[str], None] = lambda line: None) -> None:
        self.api = api
        self.token = token
        self.clock = clock or SystemClock()
        self.poll_s = poll_s
        self.on_output = on_output

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None,
              ok: tuple[int, ...] = (200, 201)) -> tuple[int, bytes]:
        status, data = self.api.request(method, path, body)
        if status not in ok:
            detail = data.decode(errors="replace")[:300]
            raise BenchError(f"{method} {path}: HTTP {status}" + (f": {detail}" if detail else ""))
        return status, data

    def _apply(self, obj: Mapping[str, Any]) -> None:
        if obj["kind"] in KEEP_IF_PRESENT:
            self._call("POST", collection(obj), obj, ok=(201, 409))
            return
        self._call("DELETE", object_path(obj), None, ok=(200, 202, 404))  # a leftover of a crashed run
        self._call("POST", collection(obj), obj, ok=(201,))

    def run(self, job: BenchJob) -> BenchOutcome:
        objects = manifests(job)
        made: list[Mapping[str, Any]] = []
        try:
            secret = token_secret(job, self.token())
        except Exception as exc:  # noqa: BLE001 - Secrets Manager: denied, missing, unreachable
            return BenchOutcome(job.name, None, f"cannot read the bench tenant's JWT: {exc}")
        try:
            for obj in (*objects[:-1], secret, objects[-1]):
                self._apply(obj)
                if obj["kind"] not in KEEP_IF_PRESENT:
                    made.append(obj)
            self.on_output(f"bench: Job {BENCH_NAMESPACE}/{job.name} started ({job.target_url})")
            state = self._wait(objects[-1], job.deadline_s)
            lines = self._log(job)
            try:
                document = parse_result(lines)
            except ValueError as exc:
                return BenchOutcome(job.name, None, f"Job {state}: {exc}", tuple(lines[-LOG_TAIL_LINES:]))
            if document is None:
                tail = " | ".join(lines[-4:])
                return BenchOutcome(job.name, None, f"Job {state} without a result" + (f": {tail}" if tail else ""),
                                    tuple(lines[-LOG_TAIL_LINES:]))
            return BenchOutcome(job.name, document, "" if state == "Complete" else f"Job {state}",
                                tuple(lines[-LOG_TAIL_LINES:]))
        except BenchError as exc:
            return BenchOutcome(job.name, None, str(exc))
        finally:
            for obj in reversed(made):
                path = object_path(obj) + ("?propagationPolicy=Background" if obj["kind"] == "Job" else "")
                self.api.request("DELETE", path, None)

    def _wait(self, job_obj: Mapping[str, Any], deadline_s: float) -> str:
        """Poll until the Job has a Complete or Failed condition; its name. The Job's own deadline
        ends it first; this one (a poll later) only guards against a controller that never answers."""
        end = self.clock.now() + deadline_s + 2 * self.poll_s
        while True:
            _, data = self._call("GET", object_path(job_obj))
            conditions = (json.loads(data).get("status") or {}).get("conditions") or []
            for c in conditions:
                if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
                    return c["type"] if c["type"] == "Complete" else f"Failed ({c.get('reason', '?')})"
            if self.clock.now() >= end:
                raise BenchError(f"Job {job_obj['metadata']['name']} did not finish within {deadline_s:g} s")
            self.clock.sleep(self.poll_s)

    def _log(self, job: BenchJob) -> list[str]:
        pods = COLLECTIONS[("v1", "Pod")].format(ns=BENCH_NAMESPACE)
        query = urllib.parse.urlencode({"labelSelector": f"{JOB_LABEL}={job.name}"})
        _, data = self._call("GET", f"{pods}?{query}")
        items = json.loads(data).get("items") or []
        if not items:
            return []
        name = items[-1]["metadata"]["name"]
        query = urllib.parse.urlencode({"container": "bench", "limitBytes": LOG_LIMIT_BYTES})
        _, log = self._call("GET", f"{pods}/{name}/log?{query}")
        return log.decode(errors="replace").splitlines()


# --- the real API server and Secrets Manager ---------------------------------------------------------


class ApiServerKube:
    """`KubeApi` over the EKS API server (endpoint and CA from DescribeCluster, an EKS token)."""

    TOKEN_REFRESH_S = 45.0  # the presigned token is valid for a minute

    def __init__(self, session: Any, cluster_name: str, region: str, *,
                 opener: Callable[..., tuple[int, bytes]] | None = None) -> None:
        from infra.ops.deploy.prometheus import _open

        self.session, self.cluster_name, self.region = session, cluster_name, region
        self.opener = opener or _open
        self._cluster: Mapping[str, Any] | None = None
        self._token: tuple[float, str] | None = None

    def _auth(self) -> tuple[str, str, str]:
        import base64

        from infra.ops.deploy.prometheus import eks_token

        if self._cluster is None:
            self._cluster = self.session.client("eks", region_name=self.region).describe_cluster(
                name=self.cluster_name)["cluster"]
        if self._token is None or time.monotonic() - self._token[0] > self.TOKEN_REFRESH_S:
            self._token = (time.monotonic(), eks_token(self.session, self.cluster_name, self.region))
        ca_pem = base64.b64decode(self._cluster["certificateAuthority"]["data"]).decode()
        return self._cluster["endpoint"], self._token[1], ca_pem

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> tuple[int, bytes]:
        import ssl
        import urllib.error
        import urllib.request

        from infra.ops.deploy.prometheus import TIMEOUT_S

        endpoint, token, ca_pem = self._auth()
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(endpoint + path, data=data, method=method, headers=headers)
        try:
            return self.opener(request, ca_pem, TIMEOUT_S)
        except (OSError, urllib.error.URLError, ssl.SSLError) as exc:
            return 0, f"cannot reach the API server: {exc}".encode()


def secret_string(session: Any, arn: str) -> str:
    """A Secrets Manager secret's value (its `token` key when it is a JSON object), read in the
    secret's own region."""
    region = arn.split(":")[3]
    value = session.client("secretsmanager", region_name=region).get_secret_value(SecretId=arn)["SecretString"]
    try:
        doc = json.loads(value)
    except ValueError:
        return value.strip()
    if isinstance(doc, dict) and isinstance(doc.get("token"), str):
        return doc["token"]
    return value.strip()
