import pytest
import torch
import torch.nn.functional as F

from normrnn.bench import LayerBenchConfig, Variant, check_agreement, paired_ratios, time_interleaved
from normrnn.norms import LayerNorm


def test_groups_run_back_to_back_in_shuffled_orders():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abcde"}
    samples = time_interleaved(fns, rounds=6, repeats=1, warmup=0, groups=[["a", "b"], ["c", "d", "e"]])
    assert all(len(s) == 6 for s in samples.values())
    rounds = [calls[i : i + 5] for i in range(0, len(calls), 5)]
    for order in rounds:
        assert sorted(order) == list("abcde")
        ab = sorted(order.index(n) for n in "ab")
        cde = sorted(order.index(n) for n in "cde")
        assert ab[1] - ab[0] == 1 and cde[2] - cde[0] == 2  # each group is contiguous
    assert len({tuple(o) for o in rounds}) > 1  # and the order changes between rounds


def test_paired_ratios_divide_round_by_round():
    samples = {"ref": [1.0, 2.0, 4.0], "new": [1.5, 2.0, 2.0]}
    assert paired_ratios(samples, "new", "ref") == [1.5, 1.0, 0.5]


def test_check_agreement_refuses_to_time_a_wrong_result():
    x = torch.randn(2, 8, 4, 4)
    good = [Variant("native", lambda x: F.group_norm(x, 1)),
            Variant("normrnn", LayerNorm(8, layout="BCHW", affine=False), reference="native")]
    check_agreement(good, x)
    bad = [*good, Variant("wrong", lambda x: F.group_norm(x, 2), reference="native")]
    with pytest.raises(RuntimeError, match="wrong disagrees with native"):
        check_agreement(bad, x)


def test_profile_splits_one_step_into_categories_that_add_up() -> None:
    from normrnn.bench import profile_step
    from normrnn.bench.profile import categorize

    assert categorize("aten::convolution_backward").startswith("conv backward")
    assert categorize("aten::cat").startswith("copies") and categorize("aten::something_new") == "other"
    tiny = LayerBenchConfig(batch=2, in_channels=2, hidden_channels=4, size=(6, 6), steps=3, num_layers=1)
    rows = profile_step(tiny, norm="group:2", steps=1)
    by = {r.category: r for r in rows}
    assert sum(r.share for r in rows) == pytest.approx(1.0)
    assert by["conv forward"].ms > 0 and by["conv backward (input and weight gradients)"].ms > 0
    assert by["norm forward and backward"].calls >= 2 * tiny.steps  # one group norm and its backward per step
    assert [r.ms for r in rows] == sorted((r.ms for r in rows), reverse=True)


@pytest.mark.slow
def test_gpu_check_rehearses_its_whole_pipeline_on_cpu(tmp_path) -> None:
    """make gpu-check gets one shot on a lent GPU: its bench, bandwidth, study and report code runs here first,
    on the CPU under Triton's interpreter at a tiny shape."""
    import json

    from normrnn.gpu_check import REHEARSAL, main
    from normrnn.kernels.triton import triton_unavailable

    if triton_unavailable(interpreter=True):
        pytest.skip(triton_unavailable(interpreter=True))
    assert main(["--rehearse", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "gpu-check.json").read_text())
    variants = {row["norm"] for row in result["bench"]}
    for norm in ("none", "layer", "group:8"):
        assert {norm, f"{norm} triton"} <= variants  # timed only after bench checked it equals eager
    assert [row["mode"] for row in result["bandwidth"]] == ["forward", "forward+backward"]
    assert all(row["kernel_ms"] > 0 and row["bytes"] > 0 for row in result["bandwidth"])
    assert (tmp_path / f"study-{REHEARSAL.study}" / "report.md").exists()
    markdown = (tmp_path / "gpu-check.md").read_text()
    for heading in ("## bench cells (B=2", "## Gate kernel bandwidth", f"## The {REHEARSAL.study} study preset"):
        assert heading in markdown
