"""The preflight checks, one function each, over boto3 clients the caller hands in.

Every check returns a `CheckResult` (pass / fail / warn / skip) and never raises for an AWS
answer: an error code becomes a failed check naming the API, the code and what to do. Clients
come from a `clients(service) -> client` factory so tests point them at moto or a Stubber.

    ec2 describe_availability_zones, describe_instance_type_offerings   -> instance-offering
    service-quotas get_service_quota (L-417A185B; L-7212CCBC for spot)  -> vcpu-quota
    ec2 describe_capacity_reservations                                  -> capacity-reservations
    s3 head_bucket / kms describe_key / s3 head_object                  -> weights-bucket, kms-key, weights-manifest
    (the EKS calendar, no call)                                          -> eks-version
    eks describe_nodegroup                                              -> capacity-block-upgrade
    ecr describe_images / describe_repositories                         -> ecr-images
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from infra.core import clock
from infra.core.catalog.eks import load_eks_calendar
from infra.core.images import is_ecr_host
from infra.ops.preflight.inputs import PreflightInputs, preflight_inputs
from infra.core.rollout.interfaces import CheckReport, CheckResult
from infra.core.weights_layout import MANIFEST_NAME, MODELS_PREFIX

# Warn this long before a version leaves standard support (EKS then upgrades the control plane
# itself, and every later `up` would try to move it back).
EKS_SUPPORT_WARNING_DAYS = 60
MIRROR_STEP = "python -m infra images --stack {stack} --script | bash"

Clients = Callable[[str], Any]


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code") or exc.__class__.__name__)


def _client_error() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


# --- AZs and offerings -------------------------------------------------------------------


def chosen_azs(inputs: PreflightInputs, ec2: Any) -> tuple[list[str], CheckResult]:
    """The AZs the stack runs in and whether the instance type is offered in each."""
    name = "instance-offering"
    try:
        zones = ec2.describe_availability_zones(
            Filters=[{"Name": "opt-in-status", "Values": ["opt-in-not-required"]},
                     {"Name": "state", "Values": ["available"]}]
        )["AvailabilityZones"]
        available = sorted(z["ZoneName"] for z in zones)
        offered: set[str] = set()
        pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": [inputs.instance_type]}],
        )
        for page in pages:
            offered.update(o["Location"] for o in page.get("InstanceTypeOfferings", []))
    except _client_error() as exc:
        return [], CheckResult(name, "fail", f"ec2 DescribeInstanceTypeOfferings in {inputs.region}: {_code(exc)}")
    usable = sorted(offered & set(available))
    if inputs.named_azs:
        azs = list(inputs.named_azs)
        missing = [az for az in azs if az not in usable]
        if missing:
            return azs, CheckResult(
                name, "fail",
                f"{inputs.instance_type} is not offered in {', '.join(missing)} ({inputs.sources.get('azs', 'named AZs')}); "
                f"offered in: {', '.join(usable) or 'no AZ'} of {inputs.region}",
            )
        return azs, CheckResult(name, "pass", f"{inputs.instance_type} offered in {', '.join(azs)}")
    if len(usable) < inputs.azs:
        return usable, CheckResult(
            name, "fail",
            f"{inputs.instance_type} is offered in {len(usable)} AZ(s) of {inputs.region} ({', '.join(usable) or 'none'}); "
            f"the plan needs {inputs.azs} (lower llm-fleet:fleet.azs or pick another region)",
        )
    azs = usable[: inputs.azs]
    return azs, CheckResult(name, "pass", f"{inputs.instance_type} offered in {', '.join(azs)} (first {inputs.azs} of {len(usable)})")


# --- quota ---------------------------------------------------------------------------------


def vcpu_quota(inputs: PreflightInputs, quotas: Any) -> CheckResult:
    name = "vcpu-quota"
    quota = inputs.quota
    need = inputs.required_vcpus
    how = (f"{inputs.nodes_max_per_az} nodes/AZ max (warm spares incl.) x {inputs.azs} AZs x "
           f"{inputs.vcpus_per_instance} vCPUs = {need}")
    if quota is None:
        return CheckResult(name, "skip", f"no quota code known here for {inputs.instance_type} ({inputs.capacity_type}); "
                                         f"check its vCPU quota by hand: needs {how}")
    code, title = quota
    try:
        value = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
    except _client_error() as exc:
        return CheckResult(name, "fail", f"service-quotas GetServiceQuota ec2/{code} ({title}): {_code(exc)}")
    have = int(float(value))
    if have >= need:
        return CheckResult(name, "pass", f"{title} ({code}) {have} vCPUs covers {how}")
    detail = (f"{title} ({code}) is {have} vCPUs; the plan needs {how}: request an increase of "
              f"{need - have} vCPUs in {inputs.region} (Service Quotas console or request-service-quota-increase)")
    if inputs.capacity_type == "capacity-block":
        # Whether Capacity Block instances draw on this quota is not confirmed here: warn only.
        return CheckResult(name, "warn", detail + "; capacity-block capacity may not count against it")
    return CheckResult(name, "fail", detail)


# --- reservations / capacity blocks --------------------------------------------------------


def capacity_reservations(inputs: PreflightInputs, ec2: Any, now_iso: str | None = None) -> CheckResult:
    name = "capacity-reservations"
    if inputs.capacity_type in ("on-demand", "spot"):
        if inputs.reservations:
            return CheckResult(name, "warn", f"{inputs.capacity_type}: reservations {dict(inputs.reservations)} are ignored")
        return CheckResult(name, "skip", f"{inputs.capacity_type}: no reservations or capacity blocks used")
    if not inputs.reservations:
        return CheckResult(name, "fail", f"capacity_type {inputs.capacity_type} names no reservation "
                                         "(llm-fleet:gpu_nodes.capacity_reservation_ids)")
    ids = sorted(set(inputs.reservations.values()))
    try:
        found = ec2.describe_capacity_reservations(CapacityReservationIds=ids)["CapacityReservations"]
    except _client_error() as exc:
        code = _code(exc)
        if "NotFound" in code or "Malformed" in code:
            return CheckResult(name, "fail", f"{', '.join(ids)}: {code}: not found in {inputs.region} (wrong region or id?)")
        return CheckResult(name, "fail", f"ec2 DescribeCapacityReservations: {code}")
    by_id = {r["CapacityReservationId"]: r for r in found}
    problems, warnings, ok = [], [], []
    want_type = "capacity-block" if inputs.capacity_type == "capacity-block" else None
    for az, rid in sorted(inputs.reservations.items()):
        r = by_id.get(rid)
        if r is None:
            problems.append(f"{rid} ({az}): not found in {inputs.region}")
            continue
        if r.get("AvailabilityZone") != az:
            problems.append(f"{rid}: is in {r.get('AvailabilityZone')}, configured for {az}")
        if r.get("InstanceType") != inputs.instance_type:
            problems.append(f"{rid}: reserves {r.get('InstanceType')}, the plan uses {inputs.instance_type}")
        state = r.get("State")
        if state != "active":
            when = f" (starts {r.get('StartDate')})" if state == "scheduled" and r.get("StartDate") else ""
            problems.append(f"{rid}: state {state}{when}, must be active")
        rtype = r.get("ReservationType", "default")
        if want_type and rtype != want_type:
            problems.append(f"{rid}: is a {rtype} reservation, capacity_type says capacity-block")
        total = int(r.get("TotalInstanceCount") or 0)
        if total < inputs.nodes_min_per_az:
            problems.append(f"{rid}: holds {total} instances, the plan runs at least {inputs.nodes_min_per_az} per AZ")
        elif total < inputs.nodes_max_per_az:
            warnings.append(f"{rid}: holds {total}; bursts up to {inputs.nodes_max_per_az} per AZ will not all launch")
        else:
            ok.append(f"{rid} ({az}, {state}, {total}x {r.get('InstanceType')})")
    if problems:
        return CheckResult(name, "fail", "; ".join(problems + warnings))
    if warnings:
        return CheckResult(name, "warn", "; ".join(warnings))
    return CheckResult(name, "pass", "; ".join(ok))


# --- storage ---------------------------------------------------------------------------------


def _missing(inputs: PreflightInputs, name: str, what: str) -> CheckResult:
    if inputs.first_deploy:
        return CheckResult(name, "skip", f"{what} not found: first deploy (the stack's first `pulumi up` creates it)")
    return CheckResult(name, "fail", f"{what} not found in {inputs.region} (not deployed yet? --first-deploy)")


def weights_bucket(inputs: PreflightInputs, s3: Any, bucket: str) -> CheckResult:
    name = "weights-bucket"
    try:
        response = s3.head_bucket(Bucket=bucket)
    except _client_error() as exc:
        code = _code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            return _missing(inputs, name, f"bucket {bucket}")
        if code in ("403", "AccessDenied", "Forbidden"):
            return CheckResult(name, "fail", f"bucket {bucket}: access denied (another account owns the name, or no s3:ListBucket)")
        return CheckResult(name, "fail", f"s3 HeadBucket {bucket}: {code}")
    headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    region = response.get("BucketRegion") or headers.get("x-amz-bucket-region")
    if region and region != inputs.region:
        return CheckResult(name, "fail", f"bucket {bucket} is in {region}, the stack is in {inputs.region}")
    return CheckResult(name, "pass", f"bucket {bucket} exists ({inputs.sources.get('bucket', '')})")


def kms_key(inputs: PreflightInputs, kms: Any, alias: str) -> CheckResult:
    name = "kms-key"
    try:
        meta = kms.describe_key(KeyId=alias)["KeyMetadata"]
    except _client_error() as exc:
        code = _code(exc)
        if code in ("NotFoundException",):
            return _missing(inputs, name, f"KMS key {alias}")
        return CheckResult(name, "fail", f"kms DescribeKey {alias}: {code}")
    state = meta.get("KeyState")
    arn = str(meta.get("Arn", ""))
    if state != "Enabled":
        return CheckResult(name, "fail", f"KMS key {alias} ({meta.get('KeyId')}) is {state}, must be Enabled")
    if f":{inputs.region}:" not in arn:
        return CheckResult(name, "fail", f"KMS key {alias} is {arn}, not in {inputs.region}")
    return CheckResult(name, "pass", f"KMS key {alias} enabled ({meta.get('KeyId')})")


def weights_manifest(inputs: PreflightInputs, s3: Any, bucket: str, bucket_ok: bool) -> CheckResult:
    name = "weights-manifest"
    key = inputs.manifest_key
    if not bucket_ok:
        if inputs.first_deploy:
            return CheckResult(name, "skip", f"s3://{bucket}/{key}: upload after the first deploy "
                                             "(python -m infra weights upload)")
        return CheckResult(name, "fail", f"s3://{bucket}/{key}: bucket unavailable")
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except _client_error() as exc:
        code = _code(exc)
        if code in ("404", "NoSuchKey", "NotFound"):
            return CheckResult(
                name, "fail",
                f"s3://{bucket}/{key} not found: llm-fleet:weights.revision {inputs.manifest_revision} is not in this "
                f"bucket ({_revisions_text(inputs, s3, bucket)}); set the revision to one of them, or upload it "
                f"(python -m infra weights upload --model {inputs.manifest_model} --revision {inputs.manifest_revision})",
            )
        return CheckResult(name, "fail", f"s3 HeadObject s3://{bucket}/{key}: {code}")
    return CheckResult(name, "pass", f"s3://{bucket}/{key} ({head.get('ContentLength', '?')} bytes)")


MAX_REVISIONS_LISTED = 20


def _revisions_text(inputs: PreflightInputs, s3: Any, bucket: str) -> str:
    """The model's revisions in the bucket, those with a manifest first: what a stack copied from
    another region (whose revision lives in the other region's bucket) could serve instead."""
    prefix = f"{MODELS_PREFIX}/{inputs.manifest_model}/"
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
        names = [c["Prefix"][len(prefix):].rstrip("/") for page in pages for c in page.get("CommonPrefixes", [])]
    except _client_error() as exc:
        return f"its revisions could not be listed: {_code(exc)}"
    complete, incomplete = [], []
    for revision in names[:MAX_REVISIONS_LISTED]:
        try:
            s3.head_object(Bucket=bucket, Key=f"{prefix}{revision}/{MANIFEST_NAME}")
            complete.append(revision)
        except _client_error():
            incomplete.append(revision)
    if not names:
        return f"it holds no revision of {inputs.manifest_model} yet"
    more = f", and {len(names) - MAX_REVISIONS_LISTED} more" if len(names) > MAX_REVISIONS_LISTED else ""
    text = f"revisions with a manifest: {', '.join(complete) or 'none'}"
    if incomplete:
        text += f"; incomplete (no manifest): {', '.join(incomplete)}"
    return text + more


# --- EKS version and capacity-block upgrades ---------------------------------------------------


def eks_version(inputs: PreflightInputs, today: Any = None) -> CheckResult:
    """The configured version's support window on the clock's day (config validation refuses
    one past it; this warns before the end)."""
    name, day = "eks-version", today or clock.today()
    row = load_eks_calendar().get(inputs.kubernetes_version)
    if row is None or not row.recorded:
        return CheckResult(name, "fail", f"Kubernetes {inputs.kubernetes_version} has no support dates in "
                                         "infra/core/catalog/eks_versions.yaml")
    support = row.support_on(day)
    end = row.end_of_standard_support if support == "standard" else row.end_of_extended_support
    assert end is not None
    left = (end - day).days
    detail = f"Kubernetes {inputs.kubernetes_version}: {support} support until {end} ({left} days)"
    if support == "ended":
        return CheckResult(name, "fail", detail.replace(f"until {end} ({left} days)", f"ended on {end}"))
    if support == "extended" or left <= EKS_SUPPORT_WARNING_DAYS:
        return CheckResult(name, "warn", detail + ": plan the upgrade (llm-fleet:cluster.kubernetes_version)")
    return CheckResult(name, "pass", detail)


def capacity_block_upgrade(inputs: PreflightInputs, eks: Any) -> CheckResult:
    """EKS user guide, "Create a managed node group with Capacity Blocks for ML": a Capacity
    Block group is upgraded with its desired size at 0. Fails when the config would move a live
    group's version or AMI release while it still runs nodes, saying how to scale it down."""
    name = "capacity-block-upgrade"
    if inputs.capacity_type != "capacity-block":
        return CheckResult(name, "skip", f"{inputs.capacity_type}: no Capacity Block node groups")
    problems, ok = [], []
    for az, group in sorted(inputs.gpu_node_groups.items()):
        try:
            ng = eks.describe_nodegroup(clusterName=inputs.cluster_name, nodegroupName=group)["nodegroup"]
        except _client_error() as exc:
            if _code(exc) == "ResourceNotFoundException":
                ok.append(f"{group}: not created yet")
                continue
            return CheckResult(name, "fail", f"eks DescribeNodegroup {group}: {_code(exc)}")
        moves = []
        if ng.get("version") != inputs.kubernetes_version:
            moves.append(f"version {ng.get('version')} -> {inputs.kubernetes_version}")
        if inputs.ami_release_version and ng.get("releaseVersion") != inputs.ami_release_version:
            moves.append(f"AMI {ng.get('releaseVersion')} -> {inputs.ami_release_version}")
        sc = ng.get("scalingConfig") or {}
        desired = int(sc.get("desiredSize") or 0)
        if moves and desired > 0:
            problems.append(
                f"{group} ({az}) runs {desired} node(s) and would be upgraded ({', '.join(moves)}): scale it to 0 "
                f"first (aws eks update-nodegroup-config --cluster-name {inputs.cluster_name} --nodegroup-name "
                f"{group} --scaling-config minSize=0,desiredSize=0,maxSize={sc.get('maxSize', 1)}), then deploy")
        else:
            ok.append(f"{group}: " + (f"upgrade at 0 nodes ({', '.join(moves)})" if moves else "no upgrade"))
    if problems:
        return CheckResult(name, "fail", "; ".join(problems))
    return CheckResult(name, "pass", "; ".join(ok) or "no groups known yet")


# --- images ---------------------------------------------------------------------------------------


def ecr_images(inputs: PreflightInputs, ecr: Any) -> CheckResult:
    """Every image the stack pulls is in its ECR registry (mirrored, or cached by a pull through
    the cache): the mirror step puts it there. Unpinned images and ones a chart still pulls from
    upstream warn."""
    name = "ecr-images"
    if inputs.first_deploy:
        return CheckResult(name, "skip", "first deploy: the base creates the registry; then run the mirror step ("
                                         f"{MIRROR_STEP.format(stack=inputs.stack)})")
    missing, warnings, unpinned, found = [], [], [], 0
    for img in inputs.images:
        if img.ecr_repository is None:
            continue
        host = img.upstream.split("/", 1)[0]
        registry = {"registryId": host.split(".", 1)[0]} if is_ecr_host(host) else {}
        try:
            if img.tag is None and img.digest is None:
                ecr.describe_repositories(repositoryNames=[img.ecr_repository], **registry)
                warnings.append(f"{img.key}: the chart's default tag (not recorded here)")
            else:
                ident = {"imageDigest": img.digest} if img.digest else {"imageTag": img.tag}
                ecr.describe_images(repositoryName=img.ecr_repository, imageIds=[ident], **registry)
        except _client_error() as exc:
            code = _code(exc)
            if code in ("RepositoryNotFoundException", "ImageNotFoundException"):
                missing.append(f"{img.ecr_repository}:{img.tag or '(chart tag)'}")
                continue
            return CheckResult(name, "fail", f"ecr DescribeImages {img.ecr_repository}: {code}")
        found += 1
        if img.digest is None:
            unpinned.append(img.key)
        if not img.routed:
            warnings.append(f"{img.key}: still pulled from upstream ({img.note})")
    if missing:
        return CheckResult(name, "fail", f"{len(missing)} image(s) not in ECR: {', '.join(missing)}; run the mirror "
                                         f"step: {MIRROR_STEP.format(stack=inputs.stack)}")
    detail = f"{found} image(s) in ECR"
    if unpinned:
        warnings.append(f"{len(unpinned)} pinned by tag only ({', '.join(unpinned)}): record the digests the mirror "
                        "step prints in infra/core/catalog/charts.yaml")
    if warnings:
        return CheckResult(name, "warn", f"{detail}; " + "; ".join(warnings))
    return CheckResult(name, "pass", detail)


# --- all of them -------------------------------------------------------------------------------


def run_checks(inputs: PreflightInputs, clients: Clients) -> CheckReport:
    ec2 = clients("ec2")
    results = []
    _, offering = chosen_azs(inputs, ec2)
    results.append(offering)
    results.append(vcpu_quota(inputs, clients("service-quotas")))
    results.append(capacity_reservations(inputs, ec2))
    results.append(eks_version(inputs))
    results.append(capacity_block_upgrade(inputs, clients("eks")))

    account = None
    if inputs.bucket is None or inputs.kms_alias is None:
        try:
            account = clients("sts").get_caller_identity()["Account"]
        except _client_error() as exc:
            fail = CheckResult("weights-bucket", "fail", f"sts GetCallerIdentity (for the conventional bucket name): {_code(exc)}; "
                                                         "pass --bucket and --kms-alias")
            return CheckReport(tuple(results + [fail]))
    bucket = inputs.bucket_name(account or "")
    s3 = clients("s3")
    bucket_check = weights_bucket(inputs, s3, bucket)
    results.append(bucket_check)
    results.append(kms_key(inputs, clients("kms"), inputs.kms_alias_name(account or "")))
    results.append(weights_manifest(inputs, s3, bucket, bucket_check.status == "pass"))
    results.append(ecr_images(inputs, clients("ecr")))
    return CheckReport(tuple(results))


def boto3_clients(region: str, endpoint_url: str | None = None) -> Clients:
    """A client factory for one region (boto3 imported here, lazily)."""
    import boto3

    session = boto3.session.Session(region_name=region)
    cache: dict[str, Any] = {}

    def get(service: str) -> Any:
        if service not in cache:
            cache[service] = session.client(service, endpoint_url=endpoint_url)
        return cache[service]

    return get


class AwsPreflight:
    """`interfaces.Preflight` for the rollout: the stack's inputs (with its outputs), then the checks."""

    def __init__(self, project_dir: Any, clients_for_region: Callable[[str], Clients] | None = None) -> None:
        self.project_dir = project_dir
        self.clients_for_region = clients_for_region or boto3_clients

    def check(self, stack: str, outputs: Mapping[str, Any]) -> CheckReport:
        inputs = preflight_inputs_for(stack, self.project_dir, outputs)
        return run_checks(inputs, self.clients_for_region(inputs.region))


def preflight_inputs_for(stack: str, project_dir: Any, outputs: Mapping[str, Any]) -> PreflightInputs:
    return preflight_inputs(stack, project_dir, outputs=outputs)
