"""The SLO benchmark's pure half (docs/bench.md): what a run measured, against what was predicted.

results.py   per-request records -> the summary (latency statistics from the simulator's stats,
             errors by outcome, attainment with failures counted as misses)
predict.py   the plan's and the simulator's prediction for the load a run offered; ratios
job.py       the rollout gate's Kubernetes objects (Namespace, ServiceAccount, NetworkPolicy, Job)

The HTTP driver (the openai SDK) is operations code: infra/ops/bench/.
"""
