"""Extract the CLI flags of `vllm serve` from a vLLM sdist into flags-<version>.json (not run by tests).

    python tests/serving/schemas/vllm/extract_flags.py vllm-0.18.0.tar.gz

The sdist: https://pypi.org/simple/vllm/ (its sha256 is recorded). Flags are the `--...` string
literals of the engine's and the OpenAI server's argument definitions (`vllm/engine/arg_utils.py`,
`vllm/entrypoints/openai/cli_args.py`), every field of the frontend's dataclasses (cli_args.py adds
`--{field}` for each), plus `--no-<flag>` where the field is a bool (vLLM gives those
argparse.BooleanOptionalAction, arg_utils._compute_kwargs).
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import tarfile
from pathlib import Path

FILES = ("vllm/engine/arg_utils.py", "vllm/entrypoints/openai/cli_args.py")
FLAG = re.compile(r"^--[a-z0-9][a-z0-9_-]*$")


FRONTEND = ("BaseFrontendArgs", "FrontendArgs")


def fields(tree: ast.Module, classes: tuple[str, ...]) -> dict[str, bool]:
    """field name -> is it a bool, for the dataclasses named."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name in classes:
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    out[item.target.id] = ast.unparse(item.annotation).split(" | ")[0] == "bool"
    return out


def main(sdist: str) -> None:
    data = Path(sdist).read_bytes()
    tar = tarfile.open(sdist)
    root = tar.getnames()[0].split("/")[0]
    version = root.split("-", 1)[1]
    flags: set[str] = set()
    sources = {}
    for rel in FILES:
        text = tar.extractfile(f"{root}/{rel}").read()
        sources[rel] = hashlib.sha256(text).hexdigest()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and FLAG.match(node.value):
                flags.add(node.value)
        engine = fields(tree, ("EngineArgs",))
        for name, is_bool in fields(tree, FRONTEND).items():
            flags.add("--" + name.replace("_", "-"))
            if is_bool:
                flags.add("--no-" + name.replace("_", "-"))
        for name, is_bool in engine.items():
            if is_bool and "--" + name.replace("_", "-") in flags:
                flags.add("--no-" + name.replace("_", "-"))
    out = Path(__file__).resolve().parent / f"flags-{version}.json"
    out.write_text(json.dumps({
        "vllm": version,
        "sdist": f"{root}.tar.gz",
        "sdist_sha256": hashlib.sha256(data).hexdigest(),
        "files_sha256": sources,
        "flags": sorted(flags),
    }, indent=1) + "\n")
    print(f"{len(flags)} flags -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
