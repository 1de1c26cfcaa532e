"""The README's promises stay true: two set-up commands, CI runs the test one, quoted numbers match."""
import re
from pathlib import Path

README = Path("README.md").read_text()


def first_code_block() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands():
    lines = first_code_block()
    assert len(lines) == 2
    assert "pip install -r requirements.txt" in lines[0] and lines[0].endswith("python -m infra plan --stack prod")
    assert "pip install -r requirements-dev.txt" in lines[1] and lines[1].endswith("pytest -q")


def test_ci_runs_the_readme_test_command():
    ci = Path(".ci/run").read_text()
    assert "pip install -q -r requirements-dev.txt && pytest -q" in ci


def test_every_generated_block_and_file_is_current():
    """README, docs/ and the policy pack configs say what the code says (`python -m infra docs --write`)."""
    from infra.cli.docs import stale

    diffs = stale()
    assert not diffs, "stale generated docs; run `python -m infra docs --write`:\n" + "\n".join(diffs.values())[:6000]


def test_a_stale_block_is_found_and_rewritten(tmp_path):
    from infra.cli.docs import BLOCKS, Facts, begin, end, render

    gen = next(g for g in BLOCKS if g.block == "exit-codes" and g.path == "README.md")
    text = f"intro\n{begin(gen.block)}\nold table\n{end(gen.block)}\noutro\n"
    new = render(text, gen, gen.build(Facts(tmp_path)), "README.md")
    assert new.startswith("intro\n") and new.endswith("outro\n") and "| 130 |" in new and "old table" not in new
    assert render(new, gen, gen.build(Facts(tmp_path)), "README.md") == new
