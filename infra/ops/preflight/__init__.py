"""Preflight: capacity, quota and storage checks of one stack before anything changes.

* `infra.ops.preflight.inputs` (pure): what the stack needs - instance type and vCPUs, AZs, the
  plan's max nodes per AZ (warm spares included), the quota code, reservations, the bucket,
  KMS alias and weights manifest key - from its config, its region share and its outputs.
* `infra.ops.preflight.checks` (boto3 clients, injected): one function per check, each returning
  a pass/fail/warn/skip `CheckResult` that names what it looked at and what to do.
* `infra.cli.preflight`: `python -m infra preflight --stack S [--json]`, exit 4 on any failure.
"""
