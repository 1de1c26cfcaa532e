"""Deploying a stack's two Pulumi projects: the orchestration (`workspace`), the in-VPC deployer
(`codebuild`, `source`), the gateway's load balancers on destroy (`loadbalancers`) and the
Prometheus queries that need the cluster from inside (`prometheus`)."""
