"""Suite-wide: the clock. Date checks (EKS support windows) read infra/core/clock.py; the suite
fixes its date to the EKS calendar's own date, for this process and every subprocess it starts,
so that no test changes verdict on a calendar day."""
import os

import yaml

from infra.core.catalog.eks import EKS_VERSIONS_FILE
from infra.core.clock import TODAY_ENV

CATALOG_DATE = str(yaml.safe_load(EKS_VERSIONS_FILE.read_text())["date"])
os.environ[TODAY_ENV] = CATALOG_DATE
