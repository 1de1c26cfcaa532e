"""`python -m infra weights {upload,verify,repair,hydrate,wait}`.

Every subcommand takes `--json [FILE]` (infra/cli/output.py): one JSON object on stdout, or in
FILE, also on failure ("ok": false, "exit_code", "error") and on Ctrl-C (exit 130, with what a
hydration did and kept under "partial"); no progress bar on stdout JSON. Exit codes:
`infra.core.errors.EXIT_CODES` (as worded for `weights`).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Sequence

from infra.cli.argtypes import endpoint_url, positive_int, seconds
from infra.cli.output import add_json_argument, emit_json
from infra.core.errors import EXIT_INTERRUPTED, InputError, IntegrityError, UserError, exit_code_epilog
from infra.core.weights_layout import BUCKET_ENV, validate_model_name, validate_revision
from infra.ops.weights.progress import ProgressBar

MIB = 1024 * 1024


def _common(p: argparse.ArgumentParser, *, s3: bool = True) -> None:
    p.add_argument("--model", required=True, help="model name, e.g. meta-llama/Llama-3.1-8B-Instruct")
    p.add_argument("--revision", required=True, help="immutable revision, e.g. a commit hash")
    if s3:
        p.add_argument("--bucket", help=f"weights bucket (default: ${BUCKET_ENV})")
        p.add_argument("--endpoint-url", type=endpoint_url, default=None,
                       help="S3-compatible endpoint, e.g. http://127.0.0.1:9000 (default: AWS)")
        p.add_argument("--region", default=None, help="AWS region (default: boto3's resolution)")
    add_json_argument(p, "one object (also on failure)")


def register(subparsers: Any) -> None:
    epilog = exit_code_epilog("weights")
    fmt = argparse.RawDescriptionHelpFormatter
    weights = subparsers.add_parser(
        "weights", help="upload, verify and hydrate model weights (S3 <-> node NVMe)",
        description="Model weights: S3 is the durable copy, node-local NVMe the hot copy.",
        epilog=epilog, formatter_class=fmt)
    sub = weights.add_subparsers(dest="weights_command", metavar="SUBCOMMAND")
    sub.required = True

    up = sub.add_parser("upload", help="upload a model directory, manifest last",
                        epilog=epilog, formatter_class=fmt)
    up.add_argument("dir", metavar="DIR", help="local directory holding the model files")
    _common(up)
    up.add_argument("--concurrency", type=positive_int, default=8,
                    help="parallel part uploads (default 8)")
    up.add_argument("--part-size-mib", type=positive_int, default=64,
                    help="multipart threshold and part size, at least 5 (default 64)")
    up.add_argument("--source", default=None,
                    help="provenance recorded in the manifest (default: local:<DIR>)")
    up.add_argument("--replace", action="store_true",
                    help="take over a revision claimed or published for different files (unpublishes it first)")
    up.set_defaults(func=_upload)

    re_ = sub.add_parser("repair", help="re-upload exactly the objects whose bytes do not match the manifest",
                         description="Check every object as `verify --deep` does, then re-upload each one "
                                     "that fails from DIR (only if DIR's file matches the manifest), with "
                                     "If-Match on the ETag that was checked; the manifest is not changed and "
                                     "a versioned bucket keeps the overwritten bytes.",
                         epilog=epilog, formatter_class=fmt)
    re_.add_argument("dir", metavar="DIR", help="local directory holding the model's original files")
    _common(re_)
    re_.add_argument("--concurrency", type=positive_int, default=8, help="parallel checks and uploads (default 8)")
    re_.add_argument("--part-size-mib", type=positive_int, default=64,
                     help="objects above this are re-uploaded as multipart, parts of this size, at least 5 (default 64)")
    re_.set_defaults(func=_repair)

    ve = sub.add_parser("verify", help="check S3 against the manifest",
                        epilog=epilog, formatter_class=fmt)
    _common(ve)
    ve.add_argument("--deep", action="store_true",
                    help="download and hash every object (default: HEAD size + recorded sha256)")
    ve.add_argument("--concurrency", type=positive_int, default=8, help="parallel checks (default 8)")
    ve.set_defaults(func=_verify)

    hy = sub.add_parser("hydrate", help="download a model to local disk, verified and resumable",
                        epilog=epilog, formatter_class=fmt)
    _common(hy)
    hy.add_argument("--dest", required=True, help="destination directory (one per model revision)")
    hy.add_argument("--concurrency", type=positive_int, default=8,
                    help="parallel GET streams (default 8)")
    hy.add_argument("--part-size-mib", type=positive_int, default=64,
                    help="files larger than this are fetched as ranged parts of this size (default 64)")
    hy.add_argument("--lock-timeout-s", type=seconds, default=3600.0,
                    help="how long to wait for another hydration of --dest (default 3600)")
    hy.add_argument("--no-wait", action="store_true",
                    help="fail at once (exit 7) if another hydration holds --dest")
    hy.add_argument("--reverify", action="store_true",
                    help="the full check: re-hash every file already on disk (by default a file is re-hashed "
                         "only when its size, mtime, ctime or inode differ from what verified.jsonl recorded)")
    hy.set_defaults(func=_hydrate)

    wa = sub.add_parser("wait", help="block until --dest holds the hydration marker",
                        epilog=epilog, formatter_class=fmt)
    _common(wa, s3=False)
    wa.add_argument("--dest", required=True, help="directory the hydrator writes")
    wa.add_argument("--timeout-s", type=seconds, default=3600.0, help="give up after (default 3600)")
    wa.add_argument("--poll-interval-s", type=seconds, default=2.0, help="(default 2)")
    wa.set_defaults(func=_wait)


def _client(args: argparse.Namespace) -> Any:
    from infra.ops.weights.s3 import make_client

    return make_client(args.endpoint_url, args.region,
                       max_connections=getattr(args, "concurrency", 8))


def _names(args: argparse.Namespace) -> None:
    validate_model_name(args.model)
    validate_revision(args.revision)


def _bucket(args: argparse.Namespace) -> str:
    """The names checked, then the bucket: what every S3 subcommand starts with."""
    from infra.ops.weights.s3 import resolve_bucket

    _names(args)
    return resolve_bucket(args.bucket)


def _emit(args: argparse.Namespace, payload: dict, human: Callable[[], str],
          bar: ProgressBar | None = None) -> None:
    if bar is not None:
        bar.close()  # finish the bar's line before the result goes out
    if not emit_json(args.json, payload):
        print(human())


def _failure(args: argparse.Namespace, exc: BaseException, code: int, error: str) -> dict:
    doc = {"command": args.weights_command, "ok": False, "exit_code": code, "error": error}
    partial = getattr(exc, "partial", None)  # what a hydration did and kept (infra.ops.weights.hydrate)
    return {**doc, "partial": partial} if partial else doc


def _run(args: argparse.Namespace, body: Callable[[ProgressBar | None], int],
         progress: bool = True) -> int:
    """Run a subcommand; under --json a user error or Ctrl-C is also reported as JSON (the
    exit code and message on stderr come from infra.cli.run_parsed)."""
    bar: ProgressBar | None = None
    try:
        if progress and args.json is None and sys.stderr.isatty():
            bar = ProgressBar(0, args.weights_command)
        return body(bar)
    except UserError as exc:
        if bar is not None:
            bar.close()
        emit_json(args.json, _failure(args, exc, exc.exit_code, str(exc)))
        raise
    except KeyboardInterrupt as exc:
        if bar is not None:
            bar.close()
        emit_json(args.json, _failure(args, exc, EXIT_INTERRUPTED, "interrupted (Ctrl-C)"))
        raise
    finally:
        if bar is not None:
            bar.close()


def _hooks(bar: ProgressBar | None) -> dict:
    if bar is None:
        return {}

    def on_total(total: int) -> None:
        bar.total_bytes = total
    return {"on_bytes": bar.advance, "on_total": on_total}


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def _upload(args: argparse.Namespace) -> int:
    from infra.ops.weights.upload import upload_model

    def body(bar: ProgressBar | None) -> int:
        bucket = _bucket(args)
        res = upload_model(_client(args), bucket, args.dir, args.model, args.revision,
                           concurrency=args.concurrency, part_size_bytes=args.part_size_mib * MIB,
                           source=args.source, replace=args.replace, **_hooks(bar))
        _emit(args, res.to_dict(), lambda: (
            f"uploaded {res.uploaded_files} files ({_gib(res.uploaded_bytes)}), skipped "
            f"{res.skipped_files} whose objects S3 reports as the same bytes (size and CRC32) "
            f"({_gib(res.skipped_bytes)}) in {res.seconds:.1f}s\n"
            f"claim s3://{res.bucket}/{res.claim_key}: {res.claim} ({res.claimed_by})\n"
            f"manifest s3://{res.bucket}/{res.manifest_key} sha256 {res.manifest_sha256}"
            + ("" if res.manifest_written else " (unchanged)")), bar)
        return 0
    return _run(args, body)


def _verify(args: argparse.Namespace) -> int:
    from infra.ops.weights.verify import verify_model

    def body(bar: ProgressBar | None) -> int:
        bucket = _bucket(args)
        res = verify_model(_client(args), bucket, args.model, args.revision, deep=args.deep,
                           concurrency=args.concurrency, **_hooks(bar))
        if res.ok:
            _emit(args, res.to_dict(), lambda: (
                f"ok: {res.files} files, {_gib(res.total_size_bytes)} match the manifest "
                f"({'deep: contents hashed' if res.deep else 'quick: size and recorded sha256'})"), bar)
            return 0
        _report_failure(args, {**res.to_dict(), "exit_code": IntegrityError.exit_code},
                        [p.describe() for p in res.problems], bar)
        raise _Reported(IntegrityError(
            f"{len(res.problems)} of {res.files} files do not match the manifest "
            f"s3://{bucket}/{res.manifest_key}"))
    return _run_reporting(args, body)


def _report_failure(args: argparse.Namespace, payload: dict, lines: list[str], bar: ProgressBar | None) -> None:
    """A failure with a full report: the report as the JSON (every problem), or its lines."""
    if bar is not None:
        bar.close()
    if not emit_json(args.json, payload):
        for line in lines:
            print(line)


def _run_reporting(args: argparse.Namespace, body: Callable[[ProgressBar | None], int]) -> int:
    try:
        return _run(args, body)
    except _Reported as wrapped:
        raise wrapped.error from None


def _repair(args: argparse.Namespace) -> int:
    from infra.ops.weights.repair import repair_model

    def body(bar: ProgressBar | None) -> int:
        bucket = _bucket(args)
        res = repair_model(_client(args), bucket, args.dir, args.model, args.revision,
                           concurrency=args.concurrency, part_size_bytes=args.part_size_mib * MIB,
                           **_hooks(bar))
        lines = [f"repaired {r['path']} ({r['problem']})" + (f" -> version {r['version_id']}" if r["version_id"] else "")
                 for r in res.repaired]
        lines += [f"not repaired {r['path']} ({r['problem']}): {r['reason']}" for r in res.unrepaired]
        summary = (f"checked {res.files} files against s3://{bucket}/{res.manifest_key} (deep): "
                   f"{len(res.problems)} did not match, {len(res.repaired)} repaired")
        if res.ok:
            _emit(args, res.to_dict(), lambda: "\n".join(lines + [summary]), bar)
            return 0
        _report_failure(args, {**res.to_dict(), "exit_code": IntegrityError.exit_code}, lines, bar)
        raise _Reported(IntegrityError(f"{summary}, {len(res.unrepaired)} not repaired"))
    return _run_reporting(args, body)


class _Reported(Exception):
    """A failure whose JSON report is already printed (so _run must not print another)."""

    def __init__(self, error: UserError) -> None:
        super().__init__(str(error))
        self.error = error


def _hydrate(args: argparse.Namespace) -> int:
    from infra.ops.weights.hydrate import hydrate_model

    def body(bar: ProgressBar | None) -> int:
        bucket = _bucket(args)
        if not args.dest:
            raise InputError("--dest", args.dest, "a directory path")
        res = hydrate_model(_client(args), bucket, args.model, args.revision, args.dest,
                            concurrency=args.concurrency, part_size_bytes=args.part_size_mib * MIB,
                            wait_for_lock=not args.no_wait, lock_timeout_s=args.lock_timeout_s,
                            reverify=args.reverify, **_hooks(bar))
        _emit(args, res.to_dict(), lambda: (
            f"{'already hydrated' if res.already_hydrated else 'hydrated'} "
            f"{res.model}@{res.revision} into {res.dest}: {res.downloaded_files} files "
            f"downloaded and verified ({_gib(res.downloaded_bytes)}), {res.rehashed_files} on disk "
            f"re-hashed and matched, {res.trusted_files} unchanged since an earlier run verified "
            f"them (not re-read; --reverify re-hashes), {_gib(res.resumed_bytes)} resumed, "
            f"in {res.seconds:.1f}s"), bar)
        return 0
    return _run(args, body)


def _wait(args: argparse.Namespace) -> int:
    from infra.ops.weights.hydrate import marker_path, wait_for_marker

    def body(bar: ProgressBar | None) -> int:  # noqa: ARG001 - no bytes to show
        _names(args)
        marker = wait_for_marker(os.path.abspath(args.dest), args.model, args.revision,
                                 timeout_s=args.timeout_s, poll_s=max(args.poll_interval_s, 0.05))
        _emit(args, {"command": "wait", "ok": True, "marker_path": marker_path(args.dest),
                     "marker": marker},
              lambda: f"ready: {marker_path(args.dest)} ({marker.get('manifest_sha256')})")
        return 0
    return _run(args, body, progress=False)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The hydrator image's argv (`python -m infra.cli.weights hydrate ...`), parsed."""
    from infra.cli import Parser

    parser = Parser(prog="python -m infra", add_help=False)  # usage reads as the full CLI's
    subparsers = parser.add_subparsers(dest="command", parser_class=Parser)
    subparsers.required = True
    register(subparsers)
    return parser.parse_args(["weights", *argv])


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m infra.cli.weights ...`: the weights command alone, for the hydrator image.

    Same subcommands, flags, output and exit codes as `python -m infra weights ...`, but it loads
    only the weights tier: the image carries boto3 and pydantic, not pulumi or PyYAML.
    """
    from infra.cli import run_parsed

    return run_parsed(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
