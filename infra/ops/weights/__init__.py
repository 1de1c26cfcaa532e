"""Model weights tier: S3 holds the durable copy, node-local NVMe (RAID0) the hot copy.

`infra.core.weights_layout` names keys and defines the manifest and the revision claim;
`upload`, `verify`, `repair` and `hydrate` move and check bytes against them. The in-cluster
hydrator's manifests are `infra.program.serving.hydrator`; the command is `infra.cli.weights`.
Nothing here touches a cloud at import time.
"""
