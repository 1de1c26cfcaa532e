"""The one output writer (`infra.core.files.atomic_write`): atomic for regular files, written
through for special files, exit 2 for bad targets, exit 4 for a full or read-only filesystem,
and the old file intact in every failure. Special files are real (a symlink, a FIFO, /dev/null,
/dev/full); full and read-only filesystems are the write wrappers in tests/fs_faults.py.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import threading

import pytest

from infra.core.errors import EXIT_PREFLIGHT, EXIT_USAGE, InputError, StorageError
from infra.core.files import atomic_write
from tests.fs_faults import full_disk, read_only

MARKDOWN = "<!-- llm-fleet:cost-diff -->"
OLD, NEW = '{"old": true}\n', '{"new": true, "pad": "' + "x" * 10_000 + '"}\n'


def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_a_regular_file_is_replaced_and_keeps_its_mode(tmp_path):
    target = tmp_path / "plan.json"
    target.write_text(OLD)
    target.chmod(0o600)
    old_inode = target.stat().st_ino
    atomic_write(target, NEW)
    assert target.read_text() == NEW
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.stat().st_ino != old_inode  # a new file renamed over the old one
    atomic_write(tmp_path / "fresh.json", NEW)
    assert stat.S_IMODE((tmp_path / "fresh.json").stat().st_mode) == 0o644
    assert _leftovers(tmp_path) == []


def test_a_symlink_is_written_through_to_its_target(tmp_path):
    real = tmp_path / "real.json"
    real.write_text(OLD)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write(link, NEW)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == NEW
    assert _leftovers(tmp_path) == []


def test_a_dangling_symlink_is_refused(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "absent.json")
    with pytest.raises(InputError, match="dangles") as err:
        atomic_write(link, NEW, field="--output")
    assert err.value.exit_code == EXIT_USAGE and "--output" in str(err.value)
    assert link.is_symlink() and not (tmp_path / "absent.json").exists()


def test_a_fifo_is_written_through_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo, "rb").read()))
    reader.start()
    atomic_write(fifo, NEW)
    reader.join(10)
    assert received == [NEW.encode()]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert _leftovers(tmp_path) == []


def test_dev_null_stays_a_character_device():
    before = os.lstat("/dev/null")
    atomic_write("/dev/null", NEW)
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino


def test_dev_full_is_written_through_and_its_enospc_is_exit_4():
    # The repro: as root, `plan --json /dev/full` replaced the device with a file.
    with pytest.raises(StorageError, match=r"/dev/full: no space left on the device \(ENOSPC\)") as err:
        atomic_write("/dev/full", NEW)
    assert err.value.exit_code == EXIT_PREFLIGHT
    assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)


@pytest.mark.parametrize("name", ["-", "/dev/stdout", "LINK"])
def test_stdout_and_links_to_it_write_to_this_process_stdout(tmp_path, capsys, name):
    # /dev/stdout is a symlink to /proc/self/fd/1; LINK is our own link to the same place, so
    # the test cannot damage /dev if the writer regressed to replacing what it finds.
    if name == "LINK":
        name = str(tmp_path / "out")
        os.symlink("/proc/self/fd/1", name)
    print("before", end="\n")
    atomic_write(name, NEW)
    assert capsys.readouterr().out == "before\n" + NEW
    if name.startswith(str(tmp_path)):
        assert os.readlink(name) == "/proc/self/fd/1"
    assert os.readlink("/dev/stdout") == "/proc/self/fd/1"


@pytest.mark.parametrize("case", ["directory", "missing parent", "parent is a file"])
def test_bad_targets_are_exit_2_and_create_nothing(tmp_path, case):
    (tmp_path / "afile").write_text(OLD)
    target = {"directory": tmp_path, "missing parent": tmp_path / "nope" / "plan.json",
              "parent is a file": tmp_path / "afile" / "plan.json"}[case]
    with pytest.raises(InputError) as err:
        atomic_write(target, NEW, field="--json")
    assert err.value.exit_code == EXIT_USAGE
    assert str(err.value).startswith(f"--json: {str(target)!r} is not allowed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    assert (tmp_path / "afile").read_text() == OLD


@pytest.mark.parametrize("err_no, words", [(errno.ENOSPC, "no space left"), (errno.EDQUOT, "disk quota exceeded")])
@pytest.mark.parametrize("after_bytes", [0, 4096])
def test_a_full_disk_is_exit_4_and_keeps_the_old_file(tmp_path, monkeypatch, err_no, words, after_bytes):
    target = tmp_path / "plan.json"
    target.write_text(OLD)
    budget = full_disk(monkeypatch, tmp_path, after_bytes, err_no)
    with pytest.raises(StorageError, match=f"^output file: cannot write {target}: {words}") as err:
        atomic_write(target, NEW)
    assert err.value.exit_code == EXIT_PREFLIGHT and budget.refused_writes == 1
    assert target.read_text() == OLD
    assert _leftovers(tmp_path) == []


def test_a_read_only_filesystem_is_exit_4_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "plan.json"
    target.write_text(OLD)
    read_only(monkeypatch, tmp_path)
    with pytest.raises(StorageError, match=r"read-only filesystem \(EROFS\)"):
        atomic_write(target, NEW)
    assert target.read_text() == OLD
    assert _leftovers(tmp_path) == []


# ----- cost-diff --output: the writer behind a command -------------------------------------

@pytest.fixture(scope="module")
def plan_doc():
    from tests.cost import fixtures as F

    return F.offline_plan()


def _cost_diff(tmp_path, plan_doc, output, capsys):
    from infra.cli import main

    (tmp_path / "head").mkdir(exist_ok=True)
    (tmp_path / "head" / "prod.json").write_text(json.dumps(plan_doc))
    code = main(["cost-diff", str(tmp_path / "no-base"), str(tmp_path / "head"), "--format", "markdown",
                 "--budget-usd", "800000", "--output", str(output)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_cost_diff_output_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch, capsys, plan_doc):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "diff.md"
    target.write_text(OLD)
    full_disk(monkeypatch, out_dir, 100)  # the diff is a few KB: a short write, then ENOSPC
    code, err = _cost_diff(tmp_path, plan_doc, target, capsys)
    assert code == EXIT_PREFLIGHT and f"--output: cannot write {target}: no space left" in err
    assert target.read_text() == OLD and _leftovers(out_dir) == []


@pytest.mark.parametrize("case", ["missing directory", "directory"])
def test_cost_diff_output_to_a_bad_target_is_exit_2(tmp_path, capsys, plan_doc, case):
    target = tmp_path / "nope" / "diff.json" if case == "missing directory" else tmp_path
    code, err = _cost_diff(tmp_path, plan_doc, target, capsys)
    assert code == EXIT_USAGE and err.startswith(f"error: --output: {str(target)!r} is not allowed")


def test_cost_diff_output_through_a_symlink_and_a_fifo(tmp_path, capsys, plan_doc):
    real = tmp_path / "real.json"
    real.write_text(OLD)
    (tmp_path / "link.json").symlink_to(real)
    assert _cost_diff(tmp_path, plan_doc, tmp_path / "link.json", capsys)[0] == 0
    assert (tmp_path / "link.json").is_symlink() and real.read_text().startswith(MARKDOWN)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo, "rb").read()))
    reader.start()
    assert _cost_diff(tmp_path, plan_doc, fifo, capsys)[0] == 0
    reader.join(10)
    assert received[0].decode().startswith(MARKDOWN) and stat.S_ISFIFO(os.lstat(fifo).st_mode)
