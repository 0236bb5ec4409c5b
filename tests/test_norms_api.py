"""normrnn.norms as an API: the factory, module conventions, clear errors for bad input, the norm protocol and
the spec registry, and hostile inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import randomize
from normrnn import BatchNorm, GroupNorm, Identity, InstanceNorm, LayerNorm, RecurrentBatchNorm, RMSNorm, create_norm
from normrnn.norms import NORM_SPECS

# --- the factory ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("spec", "cls"),
    [("none", Identity), ("Layer", LayerNorm), ("GROUP:4", GroupNorm), ("instance", InstanceNorm),
     ("batch", BatchNorm), ("recurrent_batch:10", RecurrentBatchNorm), ("Recurrent-Batch:3", RecurrentBatchNorm),
     ("RMS", RMSNorm)],
)
def test_create_norm_is_case_insensitive(spec, cls):
    assert type(create_norm(spec, 8, layout="BCHW")) is cls


def test_group_without_count_means_32_clipped_to_a_divisor():
    assert create_norm("group", 64, layout="BCHW").axes.groups == 32
    assert create_norm("group", 48, layout="BCHW").axes.groups == 24
    assert create_norm("group", 7, layout="BCHW").axes.groups == 7


def test_unknown_spec_lists_the_valid_names():
    with pytest.raises(ValueError) as err:
        create_norm("weight", 8, layout="BCHW")
    for name in NORM_SPECS:
        assert name in str(err.value)


@pytest.mark.parametrize("spec", ["layer:3", "group:x", "group:0", "batch:3", "recurrent_batch:0"])
def test_malformed_specs(spec):
    with pytest.raises(ValueError, match=r"norm spec"):
        create_norm(spec, 8, layout="BCHW")


def test_create_norm_accepts_classes_and_callables():
    bn = create_norm(nn.BatchNorm2d, 8, layout="BCHW", momentum=0.2)
    assert isinstance(bn, nn.BatchNorm2d) and bn.momentum == 0.2
    gn = create_norm(GroupNorm, 8, layout="BTCHW", num_groups=2)
    assert gn.axes.groups == 2 and gn.layout.spelled == "BTCHW"


def test_momentum_and_kwargs_reach_batch_norms():
    rbn = create_norm("recurrent_batch:4", 8, layout="BC", momentum=None, gamma_init=0.5, center=False)
    assert rbn.momentum is None and rbn.bias is None and float(rbn.weight.detach()[0]) == 0.5


# --- module conventions ------------------------------------------------------------------------------------------

def test_reset_parameters_and_running_stats():
    bn = randomize(BatchNorm(4, layout="BCHW"))
    bn(torch.randn(4, 4, 2, 2))
    bn.reset_running_stats()
    assert float(bn.running_mean.abs().sum()) == 0 and float((bn.running_var - 1).abs().sum()) == 0
    assert int(bn.num_batches_tracked) == 0
    ln = randomize(LayerNorm(4, layout="BCHW"))
    ln.reset_parameters()
    assert torch.equal(ln.weight.detach(), torch.ones(4)) and torch.equal(ln.bias.detach(), torch.zeros(4))


def test_extra_repr_shows_the_axes():
    assert repr(GroupNorm(8, num_groups=2, layout="BTCHW", reduce="TCHW")) == \
        "GroupNorm(8, layout='BTCHW', reduce='TCHW', num_groups=2, eps=1e-05)"
    assert "momentum=0.1" in repr(BatchNorm(8, layout="BTF"))
    assert "max_steps=5" in repr(RecurrentBatchNorm(8, max_steps=5, layout="BC"))


def test_device_and_dtype_keywords():
    ln = LayerNorm(4, layout="BTF", device="cpu", dtype=torch.float64)
    assert ln.weight.dtype == torch.float64
    bn = BatchNorm(4, layout="BTF", dtype=torch.float64)  # running statistics: at least fp32, at least the params'
    assert bn.weight.dtype == torch.float64 and bn.running_mean.dtype == torch.float64
    assert bn.half().running_var.dtype == torch.float32 and bn.double().running_var.dtype == torch.float64


def test_one_module_works_at_every_resolution():
    gn = GroupNorm(8, num_groups=2, layout="BCHW")
    for hw in [(4, 4), (7, 9), (32, 16)]:
        assert gn(torch.randn(2, 8, *hw)).shape == (2, 8, *hw)


# --- bad input gets a clear ValueError -----------------------------------------------------------------------

def test_errors_are_value_errors_naming_expected_and_received():
    with pytest.raises(ValueError, match=r"expected a 5-D input for layout 'BTCHW', got a 4-D input"):
        GroupNorm(8, num_groups=2, layout="BTCHW")(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match=r"expected 8 channels .* got 6"):
        LayerNorm(8, layout="BCHW")(torch.randn(2, 6, 4, 4))
    with pytest.raises(ValueError, match=r"expected num_groups to divide num_channels=10, got num_groups=4"):
        GroupNorm(10, num_groups=4, layout="BCHW")
    with pytest.raises(ValueError, match=r"reduce='TH' names axes \['T'\] that are not in layout 'BCHW'"):
        LayerNorm(8, layout="BCHW", reduce="TH")
    with pytest.raises(ValueError, match=r"expected a boolean mask of shape \(B, T\) = \(2, 3\) .* got torch.bool \(2, 4\)"):  # noqa: E501
        LayerNorm(4, layout="BTF")(torch.randn(2, 3, 4), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"expected more than 1 value per channel when training"):
        BatchNorm(4, layout="BTF")(torch.randn(1, 1, 4))
    with pytest.raises(ValueError, match=r"must not contain"):
        InstanceNorm(4, layout="BCHW", reduce="CHW")
    with pytest.raises(ValueError, match=r"has none"):
        InstanceNorm(4, layout="BTF")
    with pytest.raises(ValueError, match=r"needs the time-step index"):
        RecurrentBatchNorm(4, max_steps=3, layout="BC")(torch.randn(8, 4))
    with pytest.raises(ValueError, match=r"batch norm reduces every axis but F, i.e. reduce='BT'"):
        create_norm("batch", 4, layout="BTF", reduce="F")
    with pytest.raises(ValueError, match=r"reduces every axis but T and C, i.e. reduce='BHW'"):
        create_norm("recurrent_batch:4", 4, layout="BTCHW", reduce="BTHW")
    assert create_norm("recurrent_batch:4", 4, layout="BTCHW", reduce="BHW").max_steps == 4


# --- the norm protocol and the spec registry -----------------------------------------------------------------

_PROTOCOL_CASES = [("none", "BTCHW"), ("layer", "BTCHW"), ("group:2", "BTCHW"), ("instance", "BTCHW"),
                   ("batch", "BTCHW"), ("recurrent_batch", "BTCHW"), ("rms", "BTCHW"), ("recurrent_batch", "BCHW")]


@pytest.mark.parametrize(("spec", "layout"), _PROTOCOL_CASES)
def test_every_norm_takes_x_mask_and_step(spec, layout):
    """One call protocol: forward(x, mask=None, *, step=None); the step only matters to per-step statistics."""
    from normrnn.norms import Norm

    norm = create_norm(spec, 4, layout=layout).double()
    assert isinstance(norm, Norm)
    x = torch.randn(3, 5, 4, 2, 2, dtype=torch.float64) if "T" in layout else torch.randn(3, 4, 2, 2).double()
    mask = torch.ones(3, 5, dtype=torch.bool) if "T" in layout else torch.ones(3, dtype=torch.bool)
    step = 0 if "T" in layout else 2
    full = norm(x, mask, step=step)
    if spec != "recurrent_batch" or "T" in layout:
        torch.testing.assert_close(norm(x), full)  # an all-valid mask and step 0 change nothing
    assert full.shape == x.shape


def test_recurrent_batch_without_t_max_has_a_default_and_steps_select_slots():
    from normrnn.norms import DEFAULT_MAX_STEPS

    rbn = create_norm("recurrent_batch", 3, layout="BC", momentum=1.0)
    assert rbn.max_steps == DEFAULT_MAX_STEPS and rbn.running_mean.shape == (DEFAULT_MAX_STEPS, 3)
    x = torch.randn(16, 3) + 5.0
    rbn(x, step=7)
    torch.testing.assert_close(rbn.running_mean[7], x.mean(0))  # momentum 1: the slot holds the batch mean
    assert float(rbn.running_mean[6].abs().sum()) == 0.0  # other slots untouched
    with pytest.raises(ValueError, match="expected a boolean mask of shape"):
        rbn(x, 7, step=3)  # a positional int is a mask, never a step


def test_a_norm_class_is_the_same_spec_as_its_name():
    """norm=LayerNorm and norm="layer" build the same per-gate module (they used to diverge)."""
    from normrnn.cells import gate_norm
    from normrnn.norms import NormSpec

    assert NormSpec.parse(LayerNorm) == NormSpec.parse("LAYER")
    by_class, by_name = (gate_norm(s, 6, 4, scope="per_gate", layout="BCHW") for s in (LayerNorm, "layer"))
    assert repr(by_class) == repr(by_name) == "GroupNorm(24, layout='BCHW', reduce='CHW', num_groups=4, eps=1e-05)"
    # a foreign callable sees the whole gate tensor: it cannot be split per gate
    foreign = gate_norm(nn.BatchNorm2d, 6, 4, scope="per_gate", layout="BCHW")
    assert isinstance(foreign, nn.BatchNorm2d) and foreign.num_features == 24


def test_registering_a_norm_is_one_entry():
    from normrnn.norms import Identity, NormEntry, NormSpec, register_norm

    class Halve(Identity):
        def forward(self, x, mask=None, *, step=None):
            return x / 2

    register_norm(NormEntry("halve_test", Halve, shift=False))
    assert isinstance(create_norm("Halve-Test", 4, layout="BC"), Halve)
    assert NormSpec.parse("halve_test").name == "halve_test"
    with pytest.raises(ValueError, match="already registered"):
        register_norm(NormEntry("layer", Halve))


# --- hostile input (robustness review, case 9) --------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["none", "layer", "group:2", "instance", "rms", "batch", "recurrent_batch"])
@pytest.mark.parametrize("shape", [(0, 3, 4, 2, 2), (2, 0, 4, 2, 2)])
def test_an_empty_batch_gives_an_empty_output(spec, shape):
    norm = create_norm(spec, 4, layout="BTCHW")
    x = torch.randn(shape)
    batch_stats = spec in ("batch", "recurrent_batch") and not (spec == "recurrent_batch" and shape[1] == 0)
    if batch_stats:  # training needs values to compute batch statistics: the existing clear error
        with pytest.raises(ValueError, match="expected more than 1 value per channel when training"):
            norm(x)
        norm.eval()
    y = norm(x)
    assert y.shape == x.shape and y.numel() == 0


def test_reduce_must_name_an_axis_and_masks_must_be_bool():
    with pytest.raises(ValueError, match="expected reduce to name at least one axis"):
        LayerNorm(4, layout="BTF", reduce="")
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"expected a boolean mask .* got torch.float32 \(2, 3\)"):
        BatchNorm(4, layout="BTF")(x, torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"expected a boolean mask .* got int 1"):
        LayerNorm(4, layout="BTF")(x, 1)


@pytest.mark.parametrize("spec", ["layer", "group:2", "rms", "instance", "batch", "recurrent_batch"])
def test_inputs_the_kernels_would_refuse_get_a_clear_error_and_mixes_they_take_pass(spec: str) -> None:
    norm = create_norm(spec, 4, layout="BTCHW")
    x = torch.randn(3, 2, 4, 5, 5)
    reference = nn.LayerNorm(4)  # torch refuses a float64 input for float32 parameters, and takes bfloat16
    with pytest.raises(RuntimeError, match="mixed dtype"):
        reference(x.movedim(2, -1).double())
    assert reference(x.movedim(2, -1).bfloat16()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"expected a floating-point input, got torch\.int64"):
        norm(x.long())
    with pytest.raises(ValueError, match=r"expected input of dtype torch\.float32 \(the norm's parameters"):
        norm(x.double())
    assert norm(x.bfloat16()).dtype == torch.bfloat16  # half precision on float32 parameters, as torch's kernels
    torch.testing.assert_close(norm.double()(x.double()), norm.float()(x).double(), rtol=1e-5, atol=1e-5)
