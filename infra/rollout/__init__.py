"""Region rollouts: per-region stacks rolled out in waves with gates, halt and resume (issue #7).

Pure planning (no pulumi, no boto3 at import): `spec` (the `stacks/<env>.yaml` model),
`regions` (traffic shares -> regional sizing), `gates`, `journal`, `runner` (orchestration over
the interfaces in `interfaces`), `dryrun`, `report`. Effectful edges, imported only by the CLI:
`automation` (Pulumi Automation API), `health` (urllib), `s3state` (boto3), `adapters`
(offline program, cost model, policy pack) and `infra.preflight.checks` (boto3).
"""
