"""The rollout bench gate's Kubernetes objects: the SLO benchmark as a Job in the region. Pure.

    Namespace      llm-fleet-bench (Pod Security `restricted`)
    ServiceAccount llm-fleet-bench, no API token mounted (the Job never talks to the API server)
    NetworkPolicy  the Job's pods: no ingress; egress to cluster DNS and to the gateway's Envoy
                   pods on their listener port (or, for a `url` outside the cluster, the VPC CIDR)
    Secret         llm-fleet-bench-token: the bench tenant's JWT, made by the gate from Secrets
                   Manager just before the Job and deleted after it (never in a manifest file)
    Job            one pod, no retries, a deadline: `python -m infra bench ... --json FILE`, then
                   `python -m infra in-vpc emit FILE` prints the result into the pod's log
                   (infra.core.deploy.result_lines), which the gate reads back

Envoy Gateway listens on the listener port + 10000 inside its pods when the port is below 1024
(`servicePortToContainerPort`, internal/gatewayapi/listener.go, v1.9.0): a NetworkPolicy names
pod ports, so the egress rule allows that port, not the Service's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

from infra.core.labels import BENCH_NAMESPACE, SYSTEM_NODE_LABELS, common_labels, k8s_key

SERVICE_ACCOUNT = BENCH_NAMESPACE
TOKEN_SECRET_NAME = f"{BENCH_NAMESPACE}-token"
TOKEN_KEY = "token"
TOKEN_ENV = "LLM_FLEET_BENCH_TOKEN"
RESULT_FILE = "/tmp/bench/result.json"
JOB_LABEL = k8s_key("bench-job")  # the Job's pods (the Job controller adds its own labels too)
MANAGED_BY = "llm-fleet-rollout"  # made and deleted by the rollout's gate, not by Pulumi
RUN_AS_USER = 65532  # the image's user (infra/ops/bench/Dockerfile)
DNS_PORT = 53
KUBE_DNS_LABELS = {"k8s-app": "kube-dns"}  # CoreDNS pods on EKS
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace
WELL_KNOWN_PORT_SHIFT = 10000  # Envoy Gateway: container port = listener port + 10000 below 1024
IMAGE_KEY = "llm-fleet"  # infra/core/catalog/charts.yaml images
REQUEST_TIMEOUT_S = 300.0  # one request of the Job may take this long (bench --timeout-s)
JOB_TTL_S = 3600  # a finished Job (and its pod's log) is kept an hour if the gate cannot delete it


@dataclass(frozen=True)
class GatewayTarget:
    """Where the gateway's Envoy pods are, as the serving layer deploys them."""

    namespace: str
    service: str
    port: int  # the Service's (listener) port
    pod_labels: Mapping[str, str]
    scheme: str = "http"  # TLS ends at the NLB (ACM): Envoy's listener is plain HTTP

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.service}.{self.namespace}.svc.cluster.local:{self.port}"

    @property
    def container_port(self) -> int:
        return self.port + WELL_KNOWN_PORT_SHIFT if self.port < 1024 else self.port


@dataclass(frozen=True)
class BenchJob:
    """Everything the Job's objects are built from (the command layer fills it from the gate,
    the stack's plan and config, and the base's outputs)."""

    name: str  # the Job's name (a DNS label)
    image: str
    served_name: str
    input_tokens: int
    output_tokens: int
    load: Mapping[str, float]  # {"concurrency": C} or {"rate_per_s": R}
    requests: int
    duration_s: float
    deadline_s: float
    request_timeout_s: float
    slo_ms: Mapping[str, float | None]  # ttft, tpot, e2e
    attainment_target_pct: float
    gateway: GatewayTarget
    hostname: str  # Host header for the gateway's listener
    url: str | None = None  # a URL outside the cluster instead of the gateway's Service
    vpc_cidr: str | None = None  # egress for that URL
    labels: Mapping[str, str] = field(default_factory=dict)  # stack, environment, rollout

    def to_json(self) -> str:
        import json
        from dataclasses import asdict

        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "BenchJob":
        import json

        doc = json.loads(text)
        return cls(**{**doc, "gateway": GatewayTarget(**doc["gateway"])})

    @property
    def target_url(self) -> str:
        return self.url or self.gateway.url

    def bench_args(self) -> list[str]:
        """The `python -m infra bench` command line the pod runs."""
        args = ["python", "-m", "infra", "bench", "--url", self.target_url, "--model", self.served_name,
                "--input-tokens", str(self.input_tokens), "--output-tokens", str(self.output_tokens)]
        args += (["--concurrency", str(int(self.load["concurrency"]))] if "concurrency" in self.load
                 else ["--rate", f"{self.load['rate_per_s']:g}"])
        args += ["--requests", str(self.requests), "--duration-s", f"{self.duration_s:g}",
                 "--timeout-s", f"{self.request_timeout_s:g}", "--api-key-env", TOKEN_ENV, "--retry"]
        if self.url is None:
            args += ["--host-header", self.hostname]
        for metric in ("ttft", "tpot", "e2e"):
            if self.slo_ms.get(metric) is not None:
                args += [f"--{metric}-p95-ms", f"{self.slo_ms[metric]:g}"]
        args += ["--attainment-target-pct", f"{self.attainment_target_pct:g}", "--json", RESULT_FILE]
        return args


def _meta(name: str, job: BenchJob, namespaced: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels(job)}
    if namespaced:
        meta["namespace"] = BENCH_NAMESPACE
    return meta


def _shell(args: list[str]) -> str:
    import shlex

    bench = " ".join(shlex.quote(a) for a in args)
    # The result goes back through the log whatever bench's exit code (a run with failures still
    # reports); the pod exits with bench's code.
    return (f"mkdir -p {shlex.quote(RESULT_FILE.rsplit('/', 1)[0])} && {{ {bench}; rc=$?; "
            f"python -m infra in-vpc emit {shlex.quote(RESULT_FILE)}; exit $rc; }}")


def labels(job: BenchJob) -> dict[str, str]:
    return {**common_labels("bench"), "app.kubernetes.io/managed-by": MANAGED_BY, **job.labels}


def pod_labels(job: BenchJob) -> dict[str, str]:
    return {JOB_LABEL: job.name}


def manifests(job: BenchJob) -> list[dict[str, Any]]:
    """Namespace, ServiceAccount, NetworkPolicy and Job, in the order they are applied."""
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {**_meta(BENCH_NAMESPACE, job, namespaced=False),
                              "labels": {**_meta(BENCH_NAMESPACE, job)["labels"],
                                         "pod-security.kubernetes.io/enforce": "restricted"}}}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(SERVICE_ACCOUNT, job),
               "automountServiceAccountToken": False}
    egress: list[dict[str, Any]] = [{
        "to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}},
                "podSelector": {"matchLabels": dict(KUBE_DNS_LABELS)}}],
        "ports": [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}],
    }]
    if job.url is None:
        egress.append({
            "to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: job.gateway.namespace}},
                    "podSelector": {"matchLabels": dict(job.gateway.pod_labels)}}],
            "ports": [{"protocol": "TCP", "port": job.gateway.container_port}],
        })
    else:
        parts = urlsplit(job.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        egress.append({"to": [{"ipBlock": {"cidr": job.vpc_cidr or "0.0.0.0/0"}}],
                       "ports": [{"protocol": "TCP", "port": port}]})
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _meta(job.name, job),
              "spec": {"podSelector": {"matchLabels": pod_labels(job)}, "policyTypes": ["Ingress", "Egress"],
                       "ingress": [], "egress": egress}}
    container = {
        "name": "bench", "image": job.image, "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", _shell(job.bench_args())],
        "env": [{"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": TOKEN_SECRET_NAME, "key": TOKEN_KEY}}}],
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "runAsUser": RUN_AS_USER, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    batch = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(job.name, job),
        "spec": {
            "backoffLimit": 0,  # one run: a retry would bench twice and hide the first failure
            "activeDeadlineSeconds": int(job.deadline_s),
            "ttlSecondsAfterFinished": JOB_TTL_S,
            "template": {
                "metadata": {"labels": {**labels(job), **pod_labels(job)}},
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT, "automountServiceAccountToken": False,
                    "restartPolicy": "Never", "nodeSelector": dict(SYSTEM_NODE_LABELS),
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
                },
            },
        },
    }
    return [namespace, account, policy, batch]


def token_secret(job: BenchJob, token: str) -> dict[str, Any]:
    """The JWT as a Secret the Job's env reads (built at run time; never written to a file)."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(TOKEN_SECRET_NAME, job), "type": "Opaque",
            "stringData": {TOKEN_KEY: token}}


def image_of(check) -> tuple[str, bool]:
    """(the bench image's upstream reference, pinned by digest?): the gate's `image`, else the
    catalog's llm-fleet image (charts.yaml), which may be pinned by tag only (`unpinned`)."""
    from infra.core.catalog.charts import image

    if check.image:
        return check.image, True
    ref = image(IMAGE_KEY)
    return (f"{ref.ref}@{ref.digest}" if ref.digest else ref.ref), ref.digest is not None


def token_secret_arn(check, cfg, stack: str) -> str:
    """The bench tenant's JWT secret for `stack`: the gate's, else the stack's
    `deployer.bench_token_secret_arn`; a private-endpoint stack's build may read only the latter."""
    from infra.core.errors import UserError

    own = cfg.deployer.bench_token_secret_arn
    arn = check.token_secret_arn or own
    if arn is None:
        raise UserError(f"gates.health.bench: {stack} has no JWT for the bench tenant; set "
                        f"llm-fleet:deployer.bench_token_secret_arn in Pulumi.{stack}.yaml (or token_secret_arn in "
                        "the gate) to a Secrets Manager secret holding it")
    if cfg.deploys_in_vpc and arn != own:
        raise UserError(f"gates.health.bench.token_secret_arn: {arn} is not allowed for {stack}: its endpoint is "
                        f"private, so the bench runs from its in-VPC build, which may read only "
                        f"llm-fleet:deployer.bench_token_secret_arn ({own or 'not set'}); set that instead")
    return arn


def peak_requests_per_minute(check, mean_latency_s: float) -> float:
    """The most requests the gate sends in one rate-limit window (a minute): open loop at its
    rate, closed loop at `concurrency / mean latency` (Little's law), never more than it sends."""
    rate_per_s = check.rate_per_s if check.rate_per_s is not None else check.load["concurrency"] / mean_latency_s
    return min(float(check.requests), rate_per_s * min(60.0, check.duration_s))


def ensure_within_bench_bucket(check, cfg, plan_load: Mapping[str, float]) -> None:
    """Refuse a gate whose load would hit the bench tenant's own rate limit: its 429s would read
    as misses and fail a healthy fleet. `plan_load`: the plan's `load` (Little's law latency)."""
    from infra.core.errors import UserError

    latency_s = plan_load["concurrent_requests"] / plan_load["arrival_rate_per_s"]
    peak = peak_requests_per_minute(check, latency_s)
    bucket = cfg.ingress.bench_rate_limit_requests_per_minute
    if peak > bucket:
        raise UserError(
            f"gates.health.bench: {check.name} would send about {peak:,.0f} requests a minute "
            f"({', '.join(f'{k} {v:g}' for k, v in check.load.items())}, at the plan's {latency_s:.2f} s mean latency), "
            f"over the bench tenant's bucket of llm-fleet:ingress.bench_rate_limit_requests_per_minute {bucket}; "
            "lower the gate's load or raise the bucket")


def bench_job(check, *, stack: str, environment: str, cfg, served_name: str, workload, url: str | None,
              registry: str | None, gateway: GatewayTarget, run_id: str) -> BenchJob:
    """The Job of the gate `check` for one stack: its lengths and SLOs from the stack's workload,
    its image through the stack's private registry (`registry`, the base's image_registry);
    `url`: the gate's, its placeholders filled (None: the gateway's Service)."""
    from infra.core.bench.results import attainment_target_pct
    from infra.core.images import through_ecr_ref
    from infra.core.sizing.simulate.scenarios import targets_ms

    import hashlib

    upstream, _ = image_of(check)
    suffix = hashlib.sha256(f"{run_id}:{stack}".encode()).hexdigest()[:8]  # one Job per rollout run and stack
    name = f"{check.name[: 62 - len(suffix)].rstrip('-')}-{suffix}"
    return BenchJob(
        name=name, image=through_ecr_ref(upstream, registry) if registry else upstream, served_name=served_name,
        input_tokens=check.input_tokens or workload.input_tokens, output_tokens=check.output_tokens or workload.output_tokens,
        load=check.load, requests=check.requests, duration_s=check.duration_s, deadline_s=check.deadline_s,
        request_timeout_s=REQUEST_TIMEOUT_S, slo_ms=targets_ms(workload),
        attainment_target_pct=check.min_attainment_pct or attainment_target_pct(workload.slo_attainment_pct),
        gateway=gateway, hostname=cfg.ingress.hostname,
        url=url,
        vpc_cidr=cfg.network.vpc_cidr,
        labels={"llm-fleet/stack": stack, "llm-fleet/environment": environment},
    )
