"""The llm-fleet base Pulumi program (project `llm-fleet`): config -> resolved stack (sizing) ->
the AWS base (VPC, EKS, GPU node groups, S3, IAM, the in-VPC deployer) -> outputs.

`pulumi up -s prod` runs this against AWS; `python -m infra plan --stack prod` runs the very
same file under Pulumi mocks (infra/program/offline), then `workloads/__main__.py` against its
outputs. `python -m infra deploy --stack prod` runs both for real. Keep it thin: decisions live
in infra/.
"""
from pathlib import Path

import pulumi

from infra.core.resolve import resolve
from infra.program.compose import base, engine_config_entries

base(resolve(pulumi.get_stack(), Path(__file__).resolve().parent, entries=engine_config_entries()))
