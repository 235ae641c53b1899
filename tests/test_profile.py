"""Where a profiled step's time went, from a trace's device work: busy, communication, exposed communication."""

from __future__ import annotations

from shardwise.profile import (
    describe,
    idle_gaps,
    kernel_breakdown,
    kernel_kinds,
    kernel_table,
    remedies,
    subtract,
    union,
)


def kernel(name: str, ts: float, dur: float, cat: str = "kernel", correlation: int | None = None) -> dict:
    event = {"cat": cat, "name": name, "ts": ts, "dur": dur}
    return event if correlation is None else event | {"args": {"correlation": correlation}}


def launch(ts: float, dur: float, correlation: int) -> dict:
    return {"cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": ts, "dur": dur, "args": {"correlation": correlation}}


def test_union_and_subtract():
    assert union([(5, 7), (0, 2), (1, 3), (7, 8)]) == [(0, 3), (5, 8)]
    assert subtract([(0, 10)], [(2, 3), (5, 12)]) == [(0, 2), (3, 5)]
    assert subtract([(0, 2), (4, 6)], [(1, 5)]) == [(0, 1), (5, 6)]
    assert subtract([(0, 2)], []) == [(0, 2)]


def test_breakdown_counts_overlap_once_and_exposed_communication():
    """Two streams: a 1000 us all-gather, 600 us of it under matmuls; a memcpy counts as busy, CPU events not."""
    events = [
        kernel("sm90_xmma_gemm_bf16", 0, 400), kernel("sm90_xmma_gemm_bf16", 500, 300),
        kernel("ncclDevKernel_AllGather_RING_LL", 100, 1000),
        kernel("Memcpy DtoD", 1200, 100, cat="gpu_memcpy"),
        {"cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 5000},
    ]
    got = kernel_breakdown(events)
    assert got == {"gpu_busy_ms": 1.2, "comm_ms": 1.0, "exposed_comm_ms": 0.4, "host_wait_ms": 0.0}


def test_idle_gaps_waiting_for_the_host_are_those_ended_by_a_fresh_launch():
    """Three gaps: one ended by a kernel launched just before it started (the host set the pace: counted), one by a
    kernel queued long before (a dependency: not counted), one by a kernel whose launch the trace lacks."""
    events = [
        kernel("gemm", 0, 100, correlation=1), launch(-20, 5, 1),
        kernel("gemm", 300, 100, correlation=2), launch(290, 5, 2),  # returned at 295, started at 300: host-paced
        kernel("gemm", 450, 100, correlation=3), launch(10, 5, 3),  # queued since 15: waited on something else
        kernel("gemm", 600, 100),
    ]
    assert idle_gaps(events)[0:2] == (0.0, 700.0)
    assert [(gap, start) for gap, start, _ in idle_gaps(events)[2]] == [(200, 100), (50, 400), (50, 550)]
    assert kernel_breakdown(events)["host_wait_ms"] == 0.2
    assert idle_gaps([launch(0, 5, 1)]) == (0.0, 0.0, [])  # no device work (a CPU trace)


def test_cpu_bound_verdict_is_time_waiting_for_the_host_not_cpu_time():
    """A tenth of the step waiting for the host is CPU-bound; CPU time above GPU time is not, on its own (autograd's
    thread and blocking calls add to it: 3.1 s of CPU in ops against a 99%-busy 2.0 s step, session 23)."""
    waiting = {"wall_ms": 100.0, "cpu_ops_ms": 90.0, "gpu_busy_ms": 85.0, "comm_ms": 5.0, "exposed_comm_ms": 2.0,
               "host_wait_ms": 10.0, "trace": "t.json"}
    busy = {**waiting, "gpu_busy_ms": 99.0, "host_wait_ms": 0.5, "cpu_ops_ms": 150.0}
    assert dict(describe(waiting))["GPU busy"] == "85.0 ms (85% of the step); waiting for the host 10.0 ms (10%)"
    assert any(k == "verdict" for k, _ in describe(waiting))
    assert not any(k == "verdict" for k, _ in describe(busy))
    assert not any(k == "verdict" for k, _ in describe({**waiting, "host_wait_ms": 9.9}))


def test_the_verdict_suggests_only_what_the_run_has_not_tried():
    """An eager run is told to compile or replay graphs; a compiled (or graph-replayed) one only to grow its
    micro-batch (call 99's compiled row was told to compile)."""
    assert remedies(False, False) == ("train.compile=true, train.cudagraphs=true with one data-parallel rank or a "
                                      "larger train.micro_batch_size")
    assert remedies(True, False) == remedies(False, True) == "a larger train.micro_batch_size"
    waiting = {"wall_ms": 100.0, "cpu_ops_ms": 90.0, "gpu_busy_ms": 50.0, "comm_ms": 0.0, "exposed_comm_ms": 0.0,
               "host_wait_ms": 50.0, "trace": "t.json"}
    assert dict(describe(waiting, compiled=True))["verdict"] == ("CPU-bound: the GPU waits on the host (try a larger "
                                                                 "train.micro_batch_size)")


def test_kernel_table_sums_device_time_per_kind_and_name():
    """Each device event lands in one kind by its name; CPU events are left out; shares are of the device total."""
    events = [
        kernel("sm90_xmma_gemm_bf16", 0, 600), kernel("sm90_xmma_gemm_bf16", 700, 200),
        kernel("cudnn_generated_fort_native_sdpa_sm90_flash_fprop", 900, 100),
        kernel("ncclDevKernel_ReduceScatter_Sum_bf16_RING_LL", 0, 50),
        kernel("triton_poi_fused_add_mul_0", 1000, 30), kernel("Memset (Device)", 1030, 20, cat="gpu_memset"),
        {"cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 5000},
    ]
    lines = kernel_table(events, kernel_kinds(events)).splitlines()
    kinds = {line.split()[0]: float(line.split()[1]) for line in lines[1:lines.index("")]}
    assert kinds == {"matmul": 0.8, "attention": 0.1, "communication": 0.05, "generated": 0.03, "memory": 0.02}
    assert lines[1].split()[2] == "80.0%"
    top = lines[lines.index("") + 2]
    assert top.split()[:4] == ["0.80", "80.0%", "2", "400.0"] and top.endswith("sm90_xmma_gemm_bf16")
    row = dict(describe({"wall_ms": 2.0, "cpu_ops_ms": 1.0, "gpu_busy_ms": 1.05, "comm_ms": 0.05,
                         "exposed_comm_ms": 0.0, "host_wait_ms": 0.0, "trace": "t.json", "kernel_kinds_ms": kernel_kinds(events),
                         "kernels_table": "k.txt"}))["GPU time by kind"]
    assert row == "matmul 80%, attention 10%, communication 5%, generated 3%, memory 2% (by kernel: k.txt)"
