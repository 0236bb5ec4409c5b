"""normrnn.norms against independent references: torch native ops, a NumPy one-liner, known vectors,
gradcheck, and the checks of shared/docs/norm-semantics.md part (c)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, strategies as st
from torch import nn

from conftest import randomize, reference_norm, reference_rstd
from normrnn import BatchNorm, GroupNorm, InstanceNorm, LayerNorm, RecurrentBatchNorm, RMSNorm, create_norm
from normrnn.norms import choose_kernel, compute_stats
from normrnn.norms.functional import NormAxes
from normrnn.norms.layout import Layout

LAYOUTS = ["BTF", "BF", "BCL", "BCHW", "BHWC", "BTCHW", "BTHWC", "BCDHW", "BTCL", "TBF", "BCTHW"]


# --- parity with torch native, one case per preset and layout -----------------------------------------------

def _native_cases():
    B, T, C, H, W = 3, 4, 8, 5, 6
    cases = [
        ("layer", "BTF", (B, T, C), None, lambda x, w, b: F.layer_norm(x, (C,), w, b)),
        ("layer", "BCHW", (B, C, H, W), None, lambda x, w, b: F.group_norm(x, 1, w, b)),
        ("layer", "BHWC", (B, H, W, C), None,
         lambda x, w, b: F.layer_norm(x, (H, W, C), w.expand(H, W, C), b.expand(H, W, C))),
        ("layer", "BTCHW", (B, T, C, H, W), None,
         lambda x, w, b: F.group_norm(x.reshape(B * T, C, H, W), 1, w, b).reshape(x.shape)),
        ("layer", "BTF", (B, T, C), "TF", lambda x, w, b: F.layer_norm(x, (T, C)) * w + b),
        ("group:4", "BCHW", (B, C, H, W), None, lambda x, w, b: F.group_norm(x, 4, w, b)),
        ("group:2", "BTCHW", (B, T, C, H, W), None,
         lambda x, w, b: F.group_norm(x.reshape(B * T, C, H, W), 2, w, b).reshape(x.shape)),
        ("group:2", "BTCHW", (B, T, C, H, W), "TCHW",
         lambda x, w, b: F.group_norm(x.transpose(1, 2), 2, w, b).transpose(1, 2)),
        ("group:4", "BHWC", (B, H, W, C), None,
         lambda x, w, b: F.group_norm(x.permute(0, 3, 1, 2), 4, w, b).permute(0, 2, 3, 1)),
        ("group:2", "BCDHW", (B, C, 3, H, W), None, lambda x, w, b: F.group_norm(x, 2, w, b)),
        ("instance", "BCHW", (B, C, H, W), None, lambda x, w, b: F.instance_norm(x, weight=w, bias=b)),
        ("instance", "BCL", (B, C, 7), None, lambda x, w, b: F.instance_norm(x, weight=w, bias=b)),
        ("instance", "BTCHW", (B, T, C, H, W), None,
         lambda x, w, b: F.instance_norm(x.reshape(B * T, C, H, W), weight=w, bias=b).reshape(x.shape)),
        ("instance", "BHWC", (B, H, W, C), None,
         lambda x, w, b: F.instance_norm(x.permute(0, 3, 1, 2), weight=w, bias=b).permute(0, 2, 3, 1)),
        ("rms", "BTF", (B, T, C), None, lambda x, w, b: F.rms_norm(x, (C,), w, 1e-5)),
        ("rms", "BHWC", (B, H, W, C), None, lambda x, w, b: F.rms_norm(x, (H, W, C), w.expand(H, W, C), 1e-5)),
        ("rms", "BCHW", (B, C, H, W), None,
         lambda x, w, b: F.rms_norm(x, (C, H, W), w.view(C, 1, 1).expand(C, H, W), 1e-5)),
        ("batch", "BF", (B * T, C), None, lambda x, w, b: F.batch_norm(x, None, None, w, b, True)),
        ("batch", "BTF", (B, T, C), None,
         lambda x, w, b: F.batch_norm(x.reshape(B * T, C), None, None, w, b, True).reshape(x.shape)),
        ("batch", "BCHW", (B, C, H, W), None, lambda x, w, b: F.batch_norm(x, None, None, w, b, True)),
        ("batch", "BHWC", (B, H, W, C), None,
         lambda x, w, b: F.batch_norm(x.permute(0, 3, 1, 2), None, None, w, b, True).permute(0, 2, 3, 1)),
        ("batch", "BTCHW", (B, T, C, H, W), None,
         lambda x, w, b: F.batch_norm(x.transpose(1, 2), None, None, w, b, True).transpose(1, 2)),
    ]
    return cases


@pytest.mark.parametrize(("spec", "layout", "shape", "reduce", "native"), _native_cases(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_matches_torch_native(spec, layout, shape, reduce, native):
    C = shape[Layout.parse(layout).dim("C")]
    norm = randomize(create_norm(spec, C, layout=layout, reduce=reduce))
    x = torch.randn(shape) * 3 + 1
    w = norm.weight.detach()
    b = None if getattr(norm, "bias", None) is None else norm.bias.detach()
    torch.testing.assert_close(norm(x), native(x, w, b), atol=2e-5, rtol=1e-5)


# --- every preset on random layouts, shapes and axes against the NumPy definition ---------------------------

@st.composite
def norm_cases(draw):
    layout = Layout.parse(draw(st.sampled_from(LAYOUTS)))
    sizes = {c: draw(st.integers(1, 4)) for c in layout.letters}
    sizes["C"] = draw(st.sampled_from([1, 2, 4, 6]))
    kind = draw(st.sampled_from(["layer", "group", "instance", "rms", "batch"]))
    others = [c for c in layout.letters if c != "C"]
    if kind == "batch":
        sizes["B"] = max(sizes["B"], 2)
        reduce, groups = "".join(others), None
    else:
        picked = draw(st.lists(st.sampled_from(others), unique=True, max_size=len(others)))
        if kind == "instance":
            picked = picked or others[-1:]
            reduce, groups = "".join(picked), None
        else:
            reduce = "".join(picked) + "C"
            divisors = [g for g in range(1, sizes["C"] + 1) if sizes["C"] % g == 0]
            groups = draw(st.sampled_from(divisors)) if kind == "group" else 1
    shape = tuple(sizes[c] for c in layout.letters)
    seed = draw(st.integers(0, 2**31 - 1))
    return layout, kind, layout.axes(reduce), groups, shape, seed


def _input(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 + 0.5


def _module(kind, layout, reduce, groups, C, dtype=torch.float64):
    if kind == "layer":
        return LayerNorm(C, layout=layout, reduce=reduce, dtype=dtype)
    if kind == "group":
        return GroupNorm(C, num_groups=groups, layout=layout, reduce=reduce, dtype=dtype)
    if kind == "instance":
        return InstanceNorm(C, layout=layout, reduce=reduce, dtype=dtype)
    if kind == "rms":
        return RMSNorm(C, layout=layout, reduce=reduce, dtype=dtype)
    return BatchNorm(C, layout=layout, dtype=dtype)


def _affine_reference(y, norm, layout):
    view = [norm.num_channels if c == "C" else 1 for c in layout.letters]
    y = y * norm.weight.detach().numpy().reshape(view)
    if getattr(norm, "bias", None) is not None:
        y = y + norm.bias.detach().numpy().reshape(view)
    return y


@given(norm_cases())
def test_every_preset_matches_the_definition(case):
    layout, kind, reduce, groups, shape, seed = case
    C = shape[layout.dim("C")]
    norm = randomize(_module(kind, layout, reduce, groups, C))
    if kind == "instance" and norm.axes.count(shape) == 1:
        norm.eval()  # PyTorch's rule: one element per instance is an error only in training
    x = _input(shape, seed)
    want = reference_norm(x.numpy(), layout.letters, reduce, groups, 1e-5, rms=kind == "rms")
    np.testing.assert_allclose(norm(x).detach().numpy(), _affine_reference(want, norm, layout), atol=1e-10)


@given(norm_cases())
def test_float32_matches_the_float64_definition(case):
    layout, kind, reduce, groups, shape, seed = case
    C = shape[layout.dim("C")]
    norm = _module(kind, layout, reduce, groups, C, dtype=torch.float32)
    # One element per statistic divides fp32 rounding noise by sqrt(eps); the float64 test covers it exactly.
    assume(norm.axes.count(shape) > 1)
    x = _input(shape, seed).float().double()  # the same fp32 values in both computations
    want = reference_norm(x.numpy(), layout.letters, reduce, groups, 1e-5, rms=kind == "rms")
    # fp32 rounding of x and of the statistics (a few ulp of max|x|) is amplified by 1/sqrt(var + eps).
    rstd = reference_rstd(x.numpy(), layout.letters, reduce, groups, 1e-5, rms=kind == "rms")
    tolerance = 16 * np.finfo(np.float32).eps * float(x.abs().max()) * rstd + 1e-6
    got = norm(x.float()).detach().double().numpy()
    assert np.all(np.abs(got - want) <= tolerance), float(np.max(np.abs(got - want) / tolerance))


@pytest.mark.parametrize(
    ("layout", "reduce", "groups", "kernel", "permuted"),
    [("BCHW", "CHW", 1, "group_norm", False), ("BTF", "C", 1, "layer_norm", False),
     ("BHWC", "HWC", 1, "layer_norm", False), ("BTCHW", "TCHW", 4, "group_norm", True),
     ("BHWC", "HW", None, "group_norm", True), ("BTCHW", "HW", None, "group_norm", False)],
)
def test_kernel_choices_use_native_kernels(layout, reduce, groups, kernel, permuted):
    choice = choose_kernel(NormAxes(Layout.parse(layout), reduce, groups))
    assert choice.op == kernel
    assert (choice.permute is not None) == permuted


# --- gradients ---------------------------------------------------------------------------------------------

GRAD_CASES = [
    ("layer", "BTF", (2, 3, 4), {}),
    ("layer", "BCHW", (2, 4, 3, 3), {}),
    ("layer", "BHWC", (2, 3, 3, 4), {}),
    ("group:2", "BTCHW", (2, 2, 4, 2, 3), {"reduce": "TCHW"}),
    ("instance", "BTCHW", (2, 2, 4, 2, 3), {}),
    ("rms", "BTF", (2, 3, 4), {}),
    ("rms", "BTF", (2, 3, 4), {"reduce": "T"}),
    ("batch", "BTF", (3, 2, 4), {}),
    ("layer", "BCHW", (2, 4, 3, 3), {"param_axes": "CHW", "param_shape": (4, 3, 3)}),
]


@pytest.mark.parametrize(("spec", "layout", "shape", "kwargs"), GRAD_CASES)
def test_gradcheck(spec, layout, shape, kwargs):
    C = shape[Layout.parse(layout).dim("C")]
    norm = randomize(create_norm(spec, C, layout=layout, **kwargs).double())
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *p: norm(x), (x, *norm.parameters()))


@pytest.mark.parametrize("spec", ["batch", "layer", "group:2"])
def test_gradcheck_with_mask(spec):
    norm = randomize(create_norm(spec, 4, layout="BTF", reduce=None if spec == "batch" else "TF").double())
    x = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.arange(5) < torch.tensor([[5], [3], [2]])
    assert torch.autograd.gradcheck(lambda x: norm(x, mask), (x,))


def test_gradcheck_recurrent_batch_sequence():
    rbn = randomize(RecurrentBatchNorm(3, max_steps=2, layout="BTC").double())
    x = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: rbn(x), (x,))


# --- norm-semantics.md part (c) ------------------------------------------------------------------------------

def test_batch_norm_known_vector():
    bn = BatchNorm(1, layout="BC", eps=1e-5)
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    torch.testing.assert_close(bn(x).flatten(), torch.tensor([-1.341635, -0.447212, 0.447212, 1.341635]),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(bn.running_mean, torch.tensor([0.25]))
    torch.testing.assert_close(bn.running_var, torch.tensor([1.066667]), atol=1e-6, rtol=0)
    bn.eval()
    torch.testing.assert_close(bn(x).flatten(), torch.tensor([0.726181, 1.694422, 2.662664, 3.630905]),
                               atol=1e-6, rtol=0)


def test_biased_estimator_gives_keras_and_flax_buffers():
    bn = BatchNorm(1, layout="BC", momentum=0.01, var_estimator="biased")
    bn(torch.tensor([[1.0], [2.0], [3.0], [4.0]]))
    torch.testing.assert_close(bn.running_mean, torch.tensor([0.025]))
    torch.testing.assert_close(bn.running_var, torch.tensor([1.0025]))


def test_batch_size_one():
    with pytest.raises(ValueError, match=r"expected more than 1 value per channel when training, got input of "
                                         r"shape \(1, 3\)"):
        BatchNorm(3, layout="BC")(torch.randn(1, 3))
    BatchNorm(3, layout="BCHW")(torch.randn(1, 3, 2, 2))  # 4 values per channel: fine, as in PyTorch
    inst = InstanceNorm(3, layout="BCHW")
    with pytest.raises(ValueError, match="more than 1 element per instance"):
        inst(torch.randn(1, 3, 1, 1))
    inst.eval()
    torch.testing.assert_close(inst(torch.randn(1, 3, 1, 1)), inst.bias.detach().view(1, 3, 1, 1).expand(1, 3, 1, 1))


def test_cumulative_momentum_and_untracked_eval():
    bn = BatchNorm(2, layout="BC", momentum=None)
    batches = [torch.randn(8, 2) * (i + 1) + i for i in range(3)]
    for xb in batches:
        bn(xb)
    torch.testing.assert_close(bn.running_mean, torch.stack([xb.mean(0) for xb in batches]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([xb.var(0) for xb in batches]).mean(0))
    free = BatchNorm(2, layout="BC", track_running_stats=False).eval()
    assert free.running_mean is None
    x = torch.randn(8, 2) + 3
    torch.testing.assert_close(free(x), F.batch_norm(x, None, None, free.weight, free.bias, True))


def test_matches_torch_batchnorm_over_many_steps():
    ours, theirs = BatchNorm(4, layout="BCHW", momentum=0.3), nn.BatchNorm2d(4, momentum=0.3)
    for _ in range(4):
        x = torch.randn(5, 4, 3, 3) * 2 + 1
        torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    torch.testing.assert_close(ours.running_var, theirs.running_var)
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked)
    ours.eval(), theirs.eval()
    x = torch.randn(5, 4, 3, 3)
    torch.testing.assert_close(ours(x), theirs(x))


def test_group_one_is_layer_norm_only_over_every_non_batch_axis():
    x = torch.arange(24, dtype=torch.float64).pow(1.5).reshape(2, 3, 4)
    gn = GroupNorm(4, num_groups=1, layout="BTF", reduce="TF", affine=False)
    ln_last = LayerNorm(4, layout="BTF", affine=False)
    ln_all = LayerNorm(4, layout="BTF", reduce="TF", affine=False)
    assert float((gn(x) - ln_last(x)).abs().max()) == pytest.approx(2.3092, abs=1e-4)
    assert float((gn(x) - ln_all(x)).abs().max()) <= 1e-6


def test_parameter_shapes():
    from normrnn.norms import from_keras, from_torch

    C, H, W = 3, 4, 5
    assert from_torch(nn.LayerNorm((C, H, W)), "BCHW").weight.shape == (C, H, W)
    assert from_torch(nn.GroupNorm(1, C), "BCHW").weight.shape == (C,)
    assert LayerNorm(C, layout="BCHW").weight.shape == (C,)  # per channel: any resolution
    keras = from_keras("LayerNormalization", {"axis": [1, 2, 3]}, "BHWC", input_shape=(5, 20, 30, 40))
    assert keras.weight.shape == (20, 30, 40)


@pytest.mark.parametrize("spec", ["layer", "group:2", "instance", "batch", "rms"])
def test_nchw_and_nhwc_agree_under_permutation(spec):
    x = torch.randn(3, 4, 5, 6)
    nchw = randomize(create_norm(spec, 4, layout="BCHW"))
    nhwc = create_norm(spec, 4, layout="BHWC")
    nhwc.load_state_dict(nchw.state_dict())
    torch.testing.assert_close(nhwc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), nchw(x), atol=1e-5, rtol=1e-5)


def test_batch_norm_over_frames_equals_bn3d():
    x = torch.randn(2, 3, 4, 5, 5) * 2 + 1
    ours = BatchNorm(4, layout="BTCHW")
    bn2d, bn3d = nn.BatchNorm2d(4), nn.BatchNorm3d(4)
    y = ours(x)
    torch.testing.assert_close(y, bn2d(x.reshape(6, 4, 5, 5)).reshape(x.shape), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y, bn3d(x.transpose(1, 2)).transpose(1, 2), atol=1e-5, rtol=1e-5)
    for name in ("running_mean", "running_var"):
        torch.testing.assert_close(getattr(ours, name), getattr(bn3d, name))
        torch.testing.assert_close(getattr(bn2d, name), getattr(bn3d, name))


def test_per_frame_group_norm_differs_from_group_norm_over_time():
    x = torch.randn(2, 3, 4, 5, 5) + torch.arange(3.0).view(1, 3, 1, 1, 1)
    per_frame = GroupNorm(4, num_groups=2, layout="BTCHW", affine=False)
    over_time = GroupNorm(4, num_groups=2, layout="BTCHW", reduce="TCHW", affine=False)
    assert float((per_frame(x) - over_time(x)).abs().max()) > 0.1


LENGTHS = torch.tensor([5, 3, 1])
MASK = torch.arange(5) < LENGTHS[:, None]  # (B, T)


def test_masked_batch_norm_equals_batch_norm_over_valid_frames():
    x = torch.randn(3, 5, 4, 2, 2) * 2 + 1
    ours, ref = BatchNorm(4, layout="BTCHW"), nn.BatchNorm2d(4)
    y = ours(x, MASK)
    torch.testing.assert_close(y[MASK], ref(x[MASK]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)


@pytest.mark.parametrize(
    ("spec", "reduce"),
    [("batch", None), ("group:2", "TF"), ("instance", "T"), ("layer", "TF"), ("layer", None), ("rms", "TF")],
)
def test_padding_never_reaches_valid_outputs(spec, reduce):
    x = torch.randn(3, 5, 4)
    norm = randomize(create_norm(spec, 4, layout="BTF", reduce=reduce))
    junk = x.clone()
    junk[~MASK] = torch.randn(int((~MASK).sum()), 4) * 1e4 + 7
    torch.testing.assert_close(norm(x, MASK)[MASK], norm(junk, MASK)[MASK])


@pytest.mark.parametrize(("spec", "reduce"), [("group:2", "TF"), ("layer", "TF"), ("instance", "T")])
def test_masked_norms_match_the_definition(spec, reduce):
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    norm = create_norm(spec, 4, layout="BTF", reduce=reduce, affine=False)
    groups = None if spec == "instance" else int(spec.partition(":")[2] or 1)
    want = reference_norm(x.numpy(), "BTC", Layout.parse("BTF").axes(reduce), groups, 1e-5, mask=MASK.numpy())
    np.testing.assert_allclose(norm(x, MASK).numpy()[MASK.numpy()], want[MASK.numpy()], atol=1e-10)


@st.composite
def masked_cases(draw):
    layout = Layout.parse(draw(st.sampled_from(["BTF", "BTCHW", "BTHWC", "BTCL", "TBF", "BCTHW"])))
    sizes = {c: draw(st.integers(1, 3)) for c in layout.letters}
    sizes["B"], sizes["T"], sizes["C"] = draw(st.integers(2, 4)), draw(st.integers(2, 5)), 4
    shape = tuple(sizes[c] for c in layout.letters)
    cells = sizes["B"] * sizes["T"]
    mask = np.array(draw(st.lists(st.booleans(), min_size=cells, max_size=cells))).reshape(sizes["B"], sizes["T"])
    assume(mask.sum() >= 2)
    kind = draw(st.sampled_from(["layer", "group", "instance", "batch", "rms"]))
    others = [c for c in layout.letters if c != "C"]
    picked = draw(st.lists(st.sampled_from(others), unique=True, min_size=1, max_size=len(others)))
    if kind == "batch":
        reduce, groups = "".join(others), None
    elif kind == "instance":
        reduce, groups = "".join(picked), None
    else:
        reduce, groups = "".join(picked) + "C", {"group": 2}.get(kind, 1)
    return layout, kind, layout.axes(reduce), groups, shape, mask, draw(st.integers(0, 2**31 - 1))


@given(masked_cases())
def test_masks_on_every_layout_with_time(case):
    """A (B, T) mask, whatever the layout's order: valid outputs follow the definition over valid positions."""
    layout, kind, reduce, groups, shape, mask, seed = case
    norm = randomize(_module(kind, layout, reduce, groups, 4))
    if kind != "batch":
        norm.eval()  # instance norm's one-element rule is a training-mode rule
    x = _input(shape, seed)
    in_layout_order = mask if layout.dim("B") < layout.dim("T") else mask.T
    view = [s if c in "BT" else 1 for c, s in zip(layout.letters, shape, strict=True)]
    valid = np.broadcast_to(in_layout_order.reshape(view), shape)
    with np.errstate(invalid="ignore", divide="ignore"):  # all-padded statistics are NaN, and never compared
        want = reference_norm(x.numpy(), layout.letters, reduce, groups, 1e-5, rms=kind == "rms",
                              mask=in_layout_order)
    got = norm(x, torch.from_numpy(mask)).detach().numpy()
    np.testing.assert_allclose(got[valid], _affine_reference(want, norm, layout)[valid], atol=1e-10)


def test_recurrent_batch_norm_uses_running_stats_when_a_step_has_one_valid_sample():
    rbn = RecurrentBatchNorm(3, max_steps=4, layout="BTC")
    with torch.no_grad():
        rbn.running_mean.fill_(1.0)
        rbn.running_var.fill_(4.0)
    x = torch.randn(5, 3, 3)
    mask = torch.tensor([[True, True, True]] + [[True, True, False]] * 4)  # step 2: only sample 0 is valid
    y = rbn(x, mask=mask)
    want = 0.1 * (x[0, 2] - 1.0) / torch.sqrt(torch.tensor(4.0 + 1e-5))
    torch.testing.assert_close(y[0, 2], want)
    torch.testing.assert_close(rbn.running_mean[2], torch.ones(3))  # not updated from one sample
    assert rbn.num_batches_tracked.tolist() == [1, 1, 0, 0]


def test_eps_inside_the_square_root():
    y = LayerNorm(2, layout="BF", affine=False)(torch.tensor([[0.0, 0.002]]))
    torch.testing.assert_close(y, torch.tensor([[-0.301511, 0.301511]]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("spec", ["layer", "group:2", "instance", "batch"])
def test_zero_variance_returns_beta_with_finite_gradients(spec, dtype):
    norm = randomize(create_norm(spec, 4, layout="BCHW", dtype=dtype))
    x = torch.full((3, 4, 2, 2), 5.0, dtype=dtype, requires_grad=True)
    y = norm(x)
    # fp32 native kernels round the mean of a constant by ~1 ulp, which 1/sqrt(eps) amplifies ~300x.
    tol = 1e-12 if dtype == torch.float64 else 1e-3
    torch.testing.assert_close(y, norm.bias.detach().view(1, 4, 1, 1).expand_as(y), atol=tol, rtol=0)
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in norm.parameters())


def test_large_offset_keeps_the_variance():
    x = (1e4 + 1e-2 * torch.randn(1, 1024, dtype=torch.float64)).float()  # pitfall 3's input, in fp32
    truth = float(x.double().var(correction=0))
    assert truth == pytest.approx(9.5e-5, rel=0.2)
    stats = compute_stats(x, NormAxes(Layout.parse("BC"), "C", 1))
    assert float(stats.var) == pytest.approx(truth, rel=0.02)  # E[x^2]-E[x]^2 gives 0 here
    y = LayerNorm(1024, layout="BC", affine=False)(x).double()
    want = (x.double() - x.double().mean()) / torch.sqrt(x.double().var(correction=0) + 1e-5)
    # fp32 cannot hold the mean of values near 1e4 better than ~1e-3, i.e. 0.1 std; a lost variance would be 1.0.
    assert float((y - want).abs().max()) < 0.2
    assert float(y.std(correction=0)) == pytest.approx(float(want.std(correction=0)), rel=0.02)


def _ulps(got: torch.Tensor, want: torch.Tensor) -> float:
    """Distance in units in the last place of ``want``'s dtype."""
    eps = torch.finfo(want.dtype).eps
    tiny = torch.finfo(want.dtype).tiny
    got, want = got.detach().float(), want.detach().float()
    return float(((got - want).abs() / (eps * want.abs().clamp_min(tiny))).max())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("spec", "layout", "shape"),
                         [("layer", "BCHW", (4, 8, 5, 5)), ("layer", "BTF", (4, 3, 16)),
                          ("group:4", "BTCHW", (2, 3, 8, 4, 4)), ("batch", "BCHW", (8, 8, 5, 5)),
                          ("batch", "BTF", (4, 6, 16)), ("layer", "BTF", (4, 3, 16))])
def test_half_precision_within_one_ulp_with_fp32_buffers(dtype, spec, layout, shape):
    C = shape[Layout.parse(layout).dim("C")]
    norm32 = randomize(create_norm(spec, C, layout=layout))
    x = (torch.randn(shape) * 3 + 1).to(dtype)
    want = norm32(x.float()).to(dtype)  # the fp32 computation, rounded once
    assert _ulps(norm32(x), want) <= 1.0
    if spec == "batch":
        half = create_norm(spec, C, layout=layout).to(dtype)
        half(x)
        assert half.running_mean.dtype == torch.float32 and half.running_var.dtype == torch.float32


def test_rms_known_vector():
    y = RMSNorm(2, layout="BF", eps=1e-6)(torch.tensor([[3.0, 4.0]]))
    torch.testing.assert_close(y, torch.tensor([[0.848528, 1.131371]]), atol=1e-6, rtol=0)


def test_recurrent_batch_norm_statistics_per_step_and_slot_reuse():
    rbn = RecurrentBatchNorm(3, max_steps=2, layout="BC", momentum=1.0, center=False)
    assert rbn.bias is None
    torch.testing.assert_close(rbn.weight.detach(), torch.full((3,), 0.1))
    steps = [torch.randn(16, 3) * (t + 1) + 2 * t for t in range(4)]
    for t, xt in enumerate(steps):
        torch.testing.assert_close(rbn(xt, step=t), 0.1 * F.batch_norm(xt, None, None, training=True))
    # momentum=1 stores the last batch of each slot: slot 0 <- step 0, slot 1 <- steps 1, 2, 3 in turn.
    torch.testing.assert_close(rbn.running_mean, torch.stack([steps[0].mean(0), steps[3].mean(0)]))
    torch.testing.assert_close(rbn.running_var, torch.stack([steps[0].var(0), steps[3].var(0)]))
    rbn.eval()
    x = torch.randn(16, 3)
    want = 0.1 * (x - steps[3].mean(0)) / torch.sqrt(steps[3].var(0) + 1e-5)
    torch.testing.assert_close(rbn(x, step=7), want)


def test_sequence_forward_equals_stepping():
    x = torch.randn(8, 5, 3, 2, 2)
    seq, step = RecurrentBatchNorm(3, max_steps=3, layout="BTCHW"), RecurrentBatchNorm(3, max_steps=3, layout="BCHW")
    y = seq(x)
    torch.testing.assert_close(y, torch.stack([step(x[:, t], step=t) for t in range(5)], dim=1))
    torch.testing.assert_close(seq.running_mean, step.running_mean)
    torch.testing.assert_close(seq.running_var, step.running_var)
    torch.testing.assert_close(seq.num_batches_tracked, torch.tensor([1, 1, 3]))


def test_ln_lstm_gate_normalization():
    """Ba et al. LN-LSTM: LN over all 4H pre-activations of W_x x and W_h h separately; TF-contrib's per-gate
    variant is group norm with 4 groups on the same 4H vector."""
    B, Hd = 5, 6
    wx, wh = torch.randn(B, 4 * Hd), torch.randn(B, 4 * Hd)
    ln = LayerNorm(4 * Hd, layout="BC", affine=False)
    torch.testing.assert_close(ln(wx) + ln(wh), F.layer_norm(wx, (4 * Hd,)) + F.layer_norm(wh, (4 * Hd,)))
    per_gate = GroupNorm(4 * Hd, num_groups=4, layout="BC", affine=False)
    chunks = [F.layer_norm(g, (Hd,)) for g in wx.chunk(4, dim=1)]
    torch.testing.assert_close(per_gate(wx), torch.cat(chunks, dim=1))


# --- the seed's own example (shared/seeds/002) ------------------------------------------------------------------

SEED_X = [[[18.369314, 2.6570225, 20.402943], [10.403599, 2.7813416, 20.794857]],
          [[19.0327, 2.6398268, 6.3894367], [3.921237, 10.761424, 2.7887821]],
          [[11.466338, 20.210938, 8.242946], [22.77081, 11.555874, 11.183836]],
          [[8.976935, 10.204252, 11.20231], [-7.356888, 6.2725096, 1.1952505]]]
SEED_TF1 = [[[0.574993, -1.4064413, 0.8314482], [-0.12501884, -1.1574404, 1.2824591]],
            [[1.3801126, -0.9573896, -0.422723], [-0.5402143, 1.4019756, -0.86176145]],
            [[-0.36398554, 1.3654773, -1.0014919], [1.4136491, -0.67222667, -0.7414224]],
            [[-1.2645674, 0.08396816, 1.1806011], [-1.3146634, 1.108713, 0.20595042]]]
SEED_KERAS = [[[0.574988365, -1.40643, 0.8314417], [-0.125017628, -1.15742981, 1.28244758]],
              [[1.38009858, -0.957379758, -0.422718644], [-0.540192485, 1.40191901, -0.861726582]],
              [[-0.363978326, 1.36545086, -1.00147223], [1.41362476, -0.672215044, -0.74140954]],
              [[-1.26380491, 0.0839173347, 1.17988873], [-1.31464267, 1.10869551, 0.205947176]]]


def test_seed_002_tf1_and_keras_layer_norm_vectors():
    x = torch.tensor(SEED_X)
    tf1 = LayerNorm(3, layout="BTF", eps=1e-12)  # TF1 layer_norm(begin_norm_axis=-1): eps hard-coded 1e-12
    keras = LayerNorm(3, layout="BTF", eps=1e-3)  # tf.keras LayerNormalization(axis=-1)
    torch.testing.assert_close(tf1(x), torch.tensor(SEED_TF1), atol=2e-6, rtol=0)
    torch.testing.assert_close(keras(x), torch.tensor(SEED_KERAS), atol=2e-6, rtol=0)
    assert tf1.axes.stats_shape(tuple(x.shape)) == (4, 2)  # statistics (m, t)


# --- bf16 autocast: statistics and running averages stay fp32 -------------------------------------------------------

@pytest.mark.parametrize(("spec", "groups"), [("layer", 1), ("group:4", 4)])
def test_statistics_stay_fp32_under_bf16_autocast(spec: str, groups: int) -> None:
    """A bf16 activation (what autocast's convolutions hand the gate norm) is normalized with fp32 statistics: the
    output is the fp32 group norm of the same values, rounded once to bf16 at the end, and the masked (generic)
    path agrees."""
    norm = create_norm(spec, 8, layout="BCHW")
    randomize(norm)
    x = (torch.randn(3, 8, 5, 5) * 4 + 2).to(torch.bfloat16)
    want = F.group_norm(x.float(), groups, norm.weight, norm.bias, norm.eps).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = norm(x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    stats = compute_stats(x, NormAxes(Layout.parse("BCHW"), "CHW", groups=groups))
    assert stats.var.dtype == torch.float32 and stats.mean.dtype == torch.float32


@pytest.mark.parametrize("cls", [BatchNorm, RecurrentBatchNorm])
def test_running_averages_stay_fp32_under_bf16_autocast(cls) -> None:
    """Batch statistics of a bf16 input are taken in fp32 and averaged into fp32 buffers, as nn.BatchNorm2d does on
    the same values in fp32."""
    norm = cls(6, layout="BCHW") if cls is BatchNorm else cls(6, layout="BCHW", max_steps=4)
    ref = nn.BatchNorm2d(6)
    x = (torch.randn(4, 6, 3, 3) * 3 + 1).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        norm(x) if cls is BatchNorm else norm(x, step=0)
    ref(x.float())
    mean = norm.running_mean if cls is BatchNorm else norm.running_mean[0]
    var = norm.running_var if cls is BatchNorm else norm.running_var[0]
    assert mean.dtype == var.dtype == torch.float32
    torch.testing.assert_close(mean, ref.running_mean)
    torch.testing.assert_close(var, ref.running_var)
