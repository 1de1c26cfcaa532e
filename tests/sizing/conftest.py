import copy

import pytest
import yaml

from infra.cli import main
from infra.core.config import SizingSpec

SEED = {
    "workload": {
        "concurrent_requests": 200, "burst_factor": 4, "input_tokens": 500, "output_tokens": 200,
        "ttft_p95_ms": 600, "tpot_p95_ms": 40, "e2e_p95_ms": 4000, "output_tokens_per_s": 5000,
        "availability_pct": 99.9,
    },
    "model": {"name": "llama-3.3-70b", "kv_cache_dtype": "fp8", "max_model_len": 8192},
    "fleet": {
        "region": "us-east-1", "azs": 3,
        "instance_types": ["p5.48xlarge", "p5.4xlarge", "p5e.48xlarge", "p5en.48xlarge"],
        "precisions": ["fp8"], "capacity_type": "on-demand", "engine": "vllm",
    },
}


def make_spec(**overrides) -> SizingSpec:
    """The seed-004 spec with `section__field=value` overrides."""
    doc = copy.deepcopy(SEED)
    for key, value in overrides.items():
        section, field = key.split("__")
        doc[section][field] = value
    return SizingSpec.model_validate(doc)


@pytest.fixture
def seed_doc():
    return copy.deepcopy(SEED)


@pytest.fixture
def write_workload(tmp_path):
    def _write(doc, name="w.yaml"):
        p = tmp_path / name
        p.write_text(yaml.safe_dump(doc))
        return str(p)

    return _write


@pytest.fixture
def call(capsys):
    """Run the CLI in process (fast); argparse's own errors exit through SystemExit."""

    def _call(*argv):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return _call
