"""The benchmark's effectful half: the openai-SDK driver (driver.py) and the rollout gate's
Kubernetes Job runner (job.py). The figures are computed in infra/core/bench."""
