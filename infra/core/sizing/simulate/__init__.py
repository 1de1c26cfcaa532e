"""The vLLM fleet simulator: pure, deterministic by seed (docs/simulator.md).

engine.py     one vLLM V1 engine, step by step (scheduler, KV blocks, preemption, prefix hits)
replica.py    one replica under a closed loop, Poisson arrivals or a trace; the knees
fleet.py      replicas behind the gateway, with KEDA/HPA, warm spares, cold nodes, AZ loss
scenarios.py  the three verification scenarios of a plan, on the plan's control block
workload.py   lengths and arrivals (fixed, lognormal, trace; Poisson, ramps)
trace.py      the Azure LLM inference trace format
stats.py      percentiles, SLO pass and joint attainment with misses counted
memo.py       results kept per process, keyed by every input (runs are deterministic)
"""
