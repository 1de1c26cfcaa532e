"""Model weights tier: S3 holds the durable copy, node-local NVMe (RAID0) the hot copy.

`layout` names keys and defines the manifest; `upload`, `verify` and `hydrate` move and check
bytes against it; `k8s` renders the in-cluster hydrator as plain manifest dicts; `cli` wires
`python -m infra weights ...`. Nothing here touches a cloud at import time.
"""
