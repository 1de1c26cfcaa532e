"""`python -m infra images --stack S [--json [FILE]] [--script]`: the stack's container images.

Lists every image the stack runs and how its private ECR registry serves it: a pull-through
cache rule (Docker Hub, ghcr.io, quay.io, registry.k8s.io, ECR Public), a mirrored repository
(nvcr.io, which ECR cannot pull through), or as it is (already in an ECR registry); whether it is
pinned by digest; and the images a chart still pulls from upstream. `--script` prints the mirror
step (bash: crane and helm) that fills the mirrors and warms the cache, printing each digest to
record in infra/core/catalog/charts.yaml. Preflight checks that each image is there.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from infra.cli.argtypes import command_parser
from infra.cli.output import add_json_argument, emit_json
from infra.core.paths import REPO_ROOT


def register(subparsers: argparse._SubParsersAction) -> None:
    p = command_parser(subparsers, "images", __doc__, help="list the stack's images and how ECR serves them; --script prints the mirror step")
    p.add_argument("--stack", default="prod", help="stack name: reads Pulumi.<stack>.yaml (default: prod)")
    p.add_argument("--script", action="store_true", help="print the mirror step as a bash script instead")
    p.add_argument("--project-dir", default=None, help="directory holding Pulumi.<stack>.yaml (default: repo root)")
    add_json_argument(p, "the image list")
    p.set_defaults(func=run)


def _how(img) -> str:
    if not img.routed:
        return "UPSTREAM"
    return "mirror" if img.mirrored else "pull-through"


def run(args: argparse.Namespace) -> int:
    from infra.core.config import load_stack_config
    from infra.core.images import mirror_script, stack_images

    cfg = load_stack_config(args.stack, Path(args.project_dir) if args.project_dir else REPO_ROOT)
    if args.script:
        sys.stdout.write(mirror_script(cfg, args.stack))
        return 0
    images = stack_images(cfg)
    doc = {"stack": args.stack, "region": cfg.region, "images": [{
        "key": i.key, "upstream": i.upstream, "tag": i.tag, "tag_from_chart": i.tag_from_chart, "digest": i.digest,
        "unpinned": i.unpinned, "ecr_repository": i.ecr_repository, "served_by": _how(i), "note": i.note,
    } for i in images]}
    if emit_json(args.json, doc):
        return 0
    width = max(len(i.key) for i in images) + 2
    print(f"llm-fleet images: stack {args.stack} in {cfg.region} (<account>.dkr.ecr.{cfg.region}.amazonaws.com)\n")
    print(f"  {'IMAGE'.ljust(width)}{'SERVED BY'.ljust(14)}{'ECR REPOSITORY'.ljust(52)}TAG / PIN")
    for i in images:
        tag = i.tag or f"(chart {i.tag_from_chart})"
        pin = i.digest or "unpinned"
        print(f"  {i.key.ljust(width)}{_how(i).ljust(14)}{(i.ecr_repository or '-').ljust(52)}{tag} {pin}"
              + (f"  [{i.note}]" if i.note and not i.routed else ""))
    unrouted = [i.key for i in images if not i.routed]
    if unrouted:
        print(f"\n{len(unrouted)} image(s) still pulled from upstream: {', '.join(unrouted)}")
    return 0
