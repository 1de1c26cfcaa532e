"""The pure core: catalog (one price book), config, the stack resolver, sizing, the resource
graph, cost, rollout planning and the shared facts (errors and exit codes, labels, patterns,
metrics). Nothing here imports pulumi, boto3 or anything above it (tests/test_layers.py)."""
