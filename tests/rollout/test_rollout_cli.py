"""`python -m infra rollout` plumbing (exit codes, messages); the import rules are in tests/test_layers.py."""
from __future__ import annotations


import pytest
import yaml

from infra.cli import main
from rollout_support import REPO, plan_doc

def test_bad_plan_exits_2_naming_the_key(tmp_path, capsys):
    path = tmp_path / "prod.yaml"
    path.write_text(yaml.safe_dump(plan_doc(gates__cost__limit=5)))
    assert main(["rollout", str(path), "--dry-run", "--project-dir", str(REPO)]) == 2
    assert "gates.cost.limit: unknown key" in capsys.readouterr().err


def test_plan_whose_stacks_have_no_config_exits_2(tmp_path, capsys):
    path = tmp_path / "prod.yaml"
    path.write_text(yaml.safe_dump(plan_doc()))
    assert main(["rollout", str(path), "--dry-run", "--project-dir", str(REPO)]) == 2
    assert "stack 'west'" in capsys.readouterr().err


def test_real_run_without_the_pulumi_cli_exits_2_before_locking(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    code = main(["rollout", str(REPO / "stacks" / "prod.yaml"), "--state-dir", str(tmp_path), "--project-dir", str(REPO)])
    assert code == 2
    assert "pulumi CLI is not installed" in capsys.readouterr().err
    assert not list(tmp_path.rglob("journal.json"))


@pytest.mark.parametrize("flags, expected", [
    (["--resume", "--restart"], "--resume and --restart are not allowed together"),
])
def test_conflicting_flags(tmp_path, capsys, flags, expected):
    code = main(["rollout", str(REPO / "stacks" / "prod.yaml"), "--state-dir", str(tmp_path),
                 "--project-dir", str(REPO), *flags])
    assert code == 2 and expected in capsys.readouterr().err


def test_break_lock_on_a_local_store_explains_there_is_nothing_to_break(tmp_path, capsys):
    code = main(["rollout", str(REPO / "stacks" / "prod.yaml"), "--state-dir", str(tmp_path),
                 "--project-dir", str(REPO), "--break-lock"])
    assert code == 0 and "nothing to break" in capsys.readouterr().out


def test_help_lists_the_rollout_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["rollout", "--help"])
    out = capsys.readouterr().out
    assert "another rollout of this environment holds the lock" in out and "--approve-cost" in out
