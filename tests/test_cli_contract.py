"""One CLI contract (issue 14): `--json [FILE]` on every command through infra/cli/output.py,
positional arguments first (the help says so, and a misplaced `--json` is explained)."""
from __future__ import annotations

import argparse
import json

import pytest

from infra.cli import build_parser, main
from infra.cli.output import STDOUT

# `weights` is branch io's (issue 14 items 1-4); it moves to add_json_argument there.
# `in-vpc` is the in-VPC build's own plumbing (not for operators): its output is the build-log
# result protocol of infra.core.deploy, already machine-read; it takes no --json.
NOT_HERE = {"in-vpc"}


def leaf_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, sub in subs[0].choices.items():
        yield from leaf_parsers(sub, (*path, name))


COMMANDS = [(path, p) for path, p in leaf_parsers(build_parser()) if path[0] not in NOT_HERE]


def test_every_command_is_covered():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"plan", "size", "predict", "calibrate", "cost", "cost-diff", "prices list", "prices refresh",
            "rollout", "preflight", "docs", "new-stack", "tco"} <= names


@pytest.mark.parametrize("path, parser", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_takes_json_with_an_optional_file(path, parser):
    action = next((a for a in parser._actions if "--json" in a.option_strings), None)
    assert action is not None, f"{' '.join(path)} has no --json"
    assert (action.nargs, action.const, action.default, action.metavar) == ("?", STDOUT, None, "FILE")
    assert "positional arguments first" in action.help


def test_a_json_flag_before_the_positional_is_explained(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["cost", "--json", "plan.json"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "put positional arguments first (`cost PLAN.json --json`)" in err


def test_the_top_level_help_states_the_contract(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "--json FILE" in out and "positional arguments go first" in out and "decimal string" in out


@pytest.mark.parametrize("args", [["prices", "list", "--region", "us-east-1", "--json"],
                                  ["prices", "list", "--region", "us-east-1", "--json", "-"]])
def test_prices_list_json(capsys, args):
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    row = doc["regions"]["us-east-1"]["instances"]["p5.48xlarge"]
    assert row["usd"] == "55.04" and row["confirmed"] is True
    assert doc["global_services"]["route53_hosted_zone_usd_per_month"]["usd"] == "0.5"  # no region: Route 53


def test_json_file_keeps_the_table_on_stdout(tmp_path, capsys):
    target = tmp_path / "prices.json"
    assert main(["prices", "list", "--region", "us-east-1", "--json", str(target)]) == 0
    assert "== us-east-1" in capsys.readouterr().out
    assert "us-east-1" in json.loads(target.read_text())["regions"]
