"""The rollout runner and its effectful edges: `runner` (orchestration over the interfaces in
`infra.core.rollout.interfaces`), `automation` (Pulumi Automation API), `state` and `s3state`
(journal and lock), `health` (Prometheus and HTTP checks over urllib)."""
