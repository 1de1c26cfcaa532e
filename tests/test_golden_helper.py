"""Golden files change only when asked (UPDATE_GOLDEN=1), and then say what changed."""
import pytest

from tests import golden


@pytest.mark.parametrize("value", [None, "0", "yes"])
def test_anything_but_update_golden_1_only_compares(tmp_path, monkeypatch, value):
    monkeypatch.setattr(golden, "UPDATE", value == "1")
    path = tmp_path / "g.txt"
    path.write_text("old\n")
    with pytest.raises(AssertionError, match=r"-old\n\+new"):
        golden.check_golden(path, "new\n")
    assert path.read_text() == "old\n"


def test_update_golden_rewrites_and_prints_the_diff(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(golden, "UPDATE", True)
    path = tmp_path / "g.txt"
    path.write_text("old\n")
    golden.check_golden(path, "new\n")
    assert path.read_text() == "new\n"
    out = capsys.readouterr().out
    assert "-old" in out and "+new" in out


def test_a_missing_golden_file_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(golden, "UPDATE", False)
    with pytest.raises(AssertionError, match="UPDATE_GOLDEN=1"):
        golden.check_golden(tmp_path / "missing.txt", "x")
