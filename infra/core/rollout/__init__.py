"""Rollout planning, pure: `spec` (the `stacks/<env>.yaml` model), `regions` (traffic shares ->
regional sizing), `gates`, `journal`, `report`, `dryrun`, and the `interfaces` the runner in
`infra.ops.rollout` drives (Automation API, preflight, health, cost, state store)."""
