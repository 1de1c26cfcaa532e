"""The hydrator image's entry point never needs pulumi (the image does not ship it); the import
rules themselves are in tests/test_layers.py."""
import subprocess
import sys



def test_weights_entry_point_runs_a_command_without_pulumi(tmp_path):
    # `wait` end to end through the image's entry point, with pulumi made unimportable.
    code = ("import sys; sys.modules['pulumi'] = None\n"
            "from infra.cli.weights import main\n"
            f"sys.exit(main(['wait', '--model', 'm', '--revision', 'r', '--dest', {str(tmp_path)!r},"
            " '--timeout-s', '0']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 4 and proc.stderr.startswith("error: no hydration marker")


def test_the_files_the_dockerfile_copies_are_enough_to_run_the_hydrator(tmp_path):
    # Rebuild the image's /app from the Dockerfile's COPY lines and run the entry point from
    # there alone (repository not on the path), with pulumi unimportable as in the image.
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    app = tmp_path / "app"
    copies = [line.split()[1:] for line in (root / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ") and "/app/" in line]
    assert copies, "no COPY into /app in the Dockerfile"
    for *sources, target in copies:
        dest = app / target.removeprefix("/app/")
        for src in sources:
            if (root / src).is_dir():
                shutil.copytree(root / src, dest, dirs_exist_ok=True)
            else:
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy(root / src, dest)
    code = ("import runpy, sys; sys.modules['pulumi'] = None; "
            "sys.argv = ['x', 'wait', '--model', 'm', '--revision', 'r', '--dest', sys.argv[1], "
            "'--timeout-s', '0']; runpy.run_module('infra.cli.weights', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path,
                          env={"PYTHONPATH": str(app), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
                          capture_output=True, text=True)
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.startswith("error: no hydration marker")
    shipped = sorted(str(p.relative_to(app)) for p in app.rglob("*.py"))
    assert "infra/cli/weights.py" in shipped and not any("program" in p or "sizing" in p for p in shipped)
