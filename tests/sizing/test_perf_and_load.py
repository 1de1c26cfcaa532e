"""Step-time model and latency under load: roofline bounds and monotonic behaviour."""
import itertools

import pytest

from infra.core.catalog import load_catalog
from infra.core.sizing.load import poisson_quantile, static_batch, steady_state
from infra.core.sizing.perf import ReplicaModel, engine_params, load_engines

CAT = load_catalog()


def replica(model="llama-3.3-70b", gpu="H100-SXM-80GB", tp=2, prec="fp8", kv="fp8", engine="vllm", **kw):
    e = engine_params(engine)
    return ReplicaModel(CAT.model(model), CAT.gpu(gpu), tp, prec, kv, e,
                        gpu_memory_utilization=e.default_gpu_memory_utilization, **kw)


def hardware_roofline_tokens_per_s(rm, batch, context):
    """Independent arithmetic: decode can be no faster than reading the weight shard and this
    batch's KV at peak HBM bandwidth, nor than running its GEMMs at the dense peak."""
    from infra.core.sizing import memory
    from infra.core.sizing.perf import gemm_peak_flops

    w = memory.weight_bytes(rm.arch, rm.precision) / rm.tp
    kv = memory.kv_bytes_per_token_per_rank(rm.arch, rm.kv_dtype, rm.tp) * batch * context
    bw = rm.gpu.hbm_bandwidth_gb_per_s * 1e9
    t_mem = (w + kv) / bw
    t_flops = batch * 2 * memory.param_counts(rm.arch).linear / rm.tp / gemm_peak_flops(rm.gpu, rm.precision)
    return batch / max(t_mem, t_flops)


CASES = list(itertools.product(
    [("llama-3.3-70b", 2), ("llama-3.3-70b", 8), ("llama-3.1-8b", 1)],
    ["H100-SXM-80GB", "H200-SXM-141GB"],
    ["vllm", "trtllm"],
))


@pytest.mark.parametrize("model_tp, gpu, engine", CASES)
@pytest.mark.parametrize("batch", [1, 8, 64, 256])
def test_decode_step_never_beats_the_roofline(model_tp, gpu, engine, batch):
    model, tp = model_tp
    rm = replica(model, gpu, tp, engine=engine)
    context = 1000
    predicted = batch / rm.step_s(batch, context)
    assert predicted <= hardware_roofline_tokens_per_s(rm, batch, context)


@pytest.mark.parametrize("model_tp, gpu, engine", CASES)
@pytest.mark.parametrize("io", [(128, 128), (1000, 1000), (5000, 500)])
def test_max_load_throughput_never_beats_the_roofline(model_tp, gpu, engine, io):
    from infra.core.sizing import memory
    from infra.core.sizing.perf import gemm_peak_flops

    model, tp = model_tp
    rm = replica(model, gpu, tp, engine=engine)
    i, o = io
    r = steady_state(rm, i, o, max_load=True)
    # Every prompt and output token must pass the linear layers at least once.
    flops_per_request = (i + o) * 2 * memory.param_counts(rm.arch).linear / tp
    bound = o / (flops_per_request / gemm_peak_flops(rm.gpu, rm.precision))
    assert 0 < r.output_tokens_per_s <= bound


@pytest.mark.parametrize("gpu", ["H100-SXM-80GB", "H200-SXM-141GB"])
def test_throughput_non_decreasing_in_concurrency_until_saturation(gpu):
    rm = replica(gpu=gpu)
    prev = 0.0
    for c in [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]:
        r = steady_state(rm, 500, 200, concurrency=c)
        assert r.output_tokens_per_s >= prev * 0.999, c
        prev = r.output_tokens_per_s
    assert r.waiting > 0  # beyond the KV / max-num-seqs cap, requests queue


def test_latency_rises_with_concurrency_and_queueing_shows_in_ttft():
    rm = replica(max_num_seqs=64)
    low, high, queued = (steady_state(rm, 500, 200, concurrency=c) for c in (1, 64, 128))
    assert low.tpot_ms_mean < high.tpot_ms_mean
    assert queued.running == 64 and queued.waiting == 64
    assert queued.ttft_ms_mean > high.ttft_ms_mean + 1000  # waiting for a slot dominates


def test_percentiles_bound_means():
    r = steady_state(replica(), 500, 200, concurrency=32)
    assert r.ttft_ms_p95 >= r.ttft_ms_mean
    assert r.tpot_ms_p95 >= r.tpot_ms_mean
    assert r.e2e_ms_p95 >= r.e2e_ms_mean


def test_open_loop_rate_beyond_capacity_is_saturated():
    rm = replica()
    cap = steady_state(rm, 500, 200, max_load=True).requests_per_s
    ok = steady_state(rm, 500, 200, arrival_rate_per_s=cap * 0.5)
    over = steady_state(rm, 500, 200, arrival_rate_per_s=cap * 1.5)
    assert not ok.saturated and ok.requests_per_s == pytest.approx(cap * 0.5, rel=0.02)
    assert over.saturated


def test_more_tensor_parallelism_lowers_tpot_at_batch_one():
    tpots = [steady_state(replica(tp=tp), 500, 200, concurrency=1).tpot_ms_mean for tp in (2, 4, 8)]
    assert tpots[0] > tpots[1] > tpots[2]


def test_h200_is_faster_than_h100_for_the_same_replica():
    h100 = steady_state(replica(gpu="H100-SXM-80GB"), 500, 200, concurrency=1).tpot_ms_mean
    h200 = steady_state(replica(gpu="H200-SXM-141GB"), 500, 200, concurrency=1).tpot_ms_mean
    assert h200 < h100


def test_seed_004_claim_of_3500_tokens_per_s_at_batch_32_exceeds_the_roofline():
    # Seed 004: "a single 2xH100 node ... yields ~3,500 tokens/sec aggregate at batch ~32".
    rm = replica()
    assert rm.roofline_decode_tokens_per_s(32, 600) < 3500
    assert static_batch(rm, 32, 500, 200)[1] < 3500


@pytest.mark.parametrize("mean, q95", [(0, 0), (0.32, 1), (1, 3), (10, 15)])
def test_poisson_quantile(mean, q95):
    assert poisson_quantile(mean) == q95


def test_engine_factors_are_physical():
    for e in load_engines().values():
        for f in ("bw_eff", "kv_bw_eff", "compute_eff", "attn_eff", "link_eff"):
            assert 0 < getattr(e, f) <= 1
        assert e.step_overhead_ms >= 0 and e.allreduce_latency_us >= 0 and e.overlap_k >= 1
