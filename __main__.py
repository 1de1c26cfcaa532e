"""The llm-fleet Pulumi program: config -> resolved stack (sizing) -> components -> outputs.

`pulumi up -s prod` runs this against AWS; `python -m infra plan --stack prod` runs the very
same file under Pulumi mocks (infra/program/offline). Keep it thin: decisions live in infra/.
"""
from pathlib import Path

import pulumi

from infra.core.resolve import resolve
from infra.program.compose import engine_config_entries, fleet

fleet(resolve(pulumi.get_stack(), Path(__file__).resolve().parent, entries=engine_config_entries()))
