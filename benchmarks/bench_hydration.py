"""Hydration throughput vs a naive sequential boto3 download, against a loopback S3 server.

    .venv/bin/python benchmarks/bench_hydration.py [--files 8] [--total-mib 200]
        [--concurrency 8] [--part-size-mib 16] [--repeat 2] [--cap-mib-per-s 85] [--json]

Starts moto's S3 server in a separate process on 127.0.0.1 (so server and client do not share
a GIL), uploads a generated multi-file model with `upload_model`, then, in the same run and
alternating (`--repeat` rounds, best kept), downloads it three ways:
  - naive: one file after another, `get_object(...)["Body"].read()`, written to disk, no
    verification (what a quick script does);
  - naive+sha256: the same, hashing each file after reading it (verification without
    parallelism, to separate the two effects);
  - hydrate: `hydrate_model` (parallel ranged GETs, sha256 verified, atomic renames, fsync).
Each comparison runs twice: on raw loopback (no network: the run is CPU-bound, and sha256 is
most of hydrate's extra work), and with every GET stream capped at --cap-mib-per-s, the order
of S3's per-connection throughput (AWS's S3 performance guide plans ~85-90 MB/s per
connection), which is the regime parallel connections exist for.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.ops.weights.hydrate import hydrate_model  # noqa: E402
from infra.core.weights_layout import object_key  # noqa: E402
from infra.ops.weights.s3 import make_client  # noqa: E402
from infra.ops.weights.upload import upload_model  # noqa: E402

MIB = 1024 * 1024
MODEL, REVISION, BUCKET = "bench/fake-model", "r1", "llm-fleet-bench"

_SERVER = """
import logging, sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # run until the parent closes our stdin
server.stop()
"""


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    port = proc.stdout.readline().strip()
    if not port.isdigit():
        proc.kill()
        raise SystemExit("moto server did not start")
    return proc, f"http://127.0.0.1:{port}"


def make_model(root: Path, files: int, total_bytes: int) -> list[tuple[str, int]]:
    # Safetensors-like shards of slightly different sizes, plus a config file.
    layout = [("config.json", 4096)]
    per_file = (total_bytes - 4096) // (files - 1)
    for i in range(files - 1):
        layout.append((f"model-{i + 1:05d}-of-{files - 1:05d}.safetensors",
                       per_file + (i * 4099) % MIB))
    for name, size in layout:
        with open(root / name, "wb") as fh:
            remaining = size
            while remaining:
                chunk = os.urandom(min(remaining, 8 * MIB))
                fh.write(chunk)
                remaining -= len(chunk)
    return layout


def naive_download(client, layout, dest: Path, verify: bool) -> float:
    started = time.perf_counter()
    for name, _ in layout:
        body = client.get_object(Bucket=BUCKET, Key=object_key(MODEL, REVISION, name))["Body"].read()
        if verify:
            hashlib.sha256(body).hexdigest()
        (dest / name).write_bytes(body)
    return time.perf_counter() - started


class _CappedBody:
    """A response body that yields no faster than `bytes_per_s` (one TCP stream's share)."""

    def __init__(self, body, bytes_per_s: float) -> None:
        self._body, self._rate = body, bytes_per_s
        self._start, self._sent = time.perf_counter(), 0

    def _pace(self, n: int) -> None:
        self._sent += n
        delay = self._start + self._sent / self._rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # releases the GIL, like waiting on a socket

    def iter_chunks(self, chunk_size: int = 1024 * 1024):
        for chunk in self._body.iter_chunks(chunk_size):
            self._pace(len(chunk))
            yield chunk

    def read(self, amt=None) -> bytes:
        if amt is not None:
            data = self._body.read(amt)
            self._pace(len(data))
            return data
        return b"".join(self.iter_chunks())

    def close(self) -> None:
        self._body.close()


def capped_client(endpoint: str, concurrency: int, mib_per_s: float):
    client = make_client(endpoint, "us-east-1", max_connections=concurrency)

    def cap(parsed, **kwargs):
        if "Body" in parsed:
            parsed["Body"] = _CappedBody(parsed["Body"], mib_per_s * MIB)
    client.meta.events.register("after-call.s3.GetObject", cap)
    return client


def compare(client, layout, total: int, work: Path, args) -> dict:
    times: dict[str, list[float]] = {"naive": [], "naive_sha256": [], "hydrate": []}
    for round_no in range(args.repeat):
        for kind, verify in (("naive", False), ("naive_sha256", True)):
            dest = work / f"{kind}-{round_no}"
            dest.mkdir()
            times[kind].append(naive_download(client, layout, dest, verify))
            shutil.rmtree(dest)
        dest = work / f"hydrated-{round_no}"
        t0 = time.perf_counter()
        res = hydrate_model(client, BUCKET, MODEL, REVISION, str(dest),
                            concurrency=args.concurrency, part_size_bytes=args.part_size_mib * MIB)
        times["hydrate"].append(time.perf_counter() - t0)
        if res.downloaded_bytes != total or res.downloaded_files != len(layout):
            raise SystemExit(f"hydration did not fetch the whole model: {res}")
        shutil.rmtree(dest)
    best = {kind: min(ts) for kind, ts in times.items()}
    out = {f"{kind}_mib_per_s": round(total / MIB / t, 1) for kind, t in best.items()}
    out.update({f"{kind}_seconds": [round(t, 3) for t in ts] for kind, ts in times.items()})
    out["ratio_hydrate_over_naive"] = round(best["naive"] / best["hydrate"], 2)
    out["ratio_hydrate_over_naive_sha256"] = round(best["naive_sha256"] / best["hydrate"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--total-mib", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--part-size-mib", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--cap-mib-per-s", type=float, default=85.0,
                    help="per-stream cap of the second scenario; 0 skips it")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.files < 2 or args.total_mib < 2 or args.repeat < 1:
        ap.error("--files >= 2, --total-mib >= 2, --repeat >= 1")

    for key, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(key, value)
    server, endpoint = start_server()
    work = Path(tempfile.mkdtemp(prefix="bench-hydration-"))
    try:
        client = make_client(endpoint, "us-east-1", max_connections=args.concurrency)
        client.create_bucket(Bucket=BUCKET)
        src = work / "src"
        src.mkdir()
        layout = make_model(src, args.files, args.total_mib * MIB)
        total = sum(size for _, size in layout)

        t0 = time.perf_counter()
        upload_model(client, BUCKET, str(src), MODEL, REVISION, concurrency=args.concurrency,
                     part_size_bytes=max(args.part_size_mib, 5) * MIB)
        upload_s = time.perf_counter() - t0

        scenarios = {"loopback": compare(client, layout, total, work, args)}
        if args.cap_mib_per_s > 0:
            capped = capped_client(endpoint, args.concurrency, args.cap_mib_per_s)
            scenarios[f"capped_{args.cap_mib_per_s:g}_mib_per_s_per_stream"] = compare(
                capped, layout, total, work, args)
        result = {
            "files": len(layout),
            "total_mib": round(total / MIB, 1),
            "concurrency": args.concurrency,
            "part_size_mib": args.part_size_mib,
            "repeat": args.repeat,
            "cpu_count": os.cpu_count(),
            "upload_mib_per_s": round(total / MIB / upload_s, 1),
            "scenarios": scenarios,
        }
    finally:
        server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"model: {result['files']} files, {result['total_mib']} MiB; {result['cpu_count']} CPUs; "
              f"moto S3 server on loopback in its own process; best of {args.repeat}")
        print(f"upload (manifest last): {result['upload_mib_per_s']:.1f} MiB/s")
        for name, r in scenarios.items():
            print(f"\n[{name}]")
            print(f"  naive sequential get_object         {r['naive_mib_per_s']:8.1f} MiB/s  (no verification)")
            print(f"  naive sequential + sha256           {r['naive_sha256_mib_per_s']:8.1f} MiB/s")
            print(f"  hydrate (concurrency {args.concurrency}, {args.part_size_mib} MiB parts)"
                  f"{r['hydrate_mib_per_s']:8.1f} MiB/s  (sha256 verified, atomic, fsync)")
            print(f"  ratio hydrate / naive               {r['ratio_hydrate_over_naive']:8.2f}x")
            print(f"  ratio hydrate / naive+sha256        {r['ratio_hydrate_over_naive_sha256']:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
