"""The fused and compiled gate blocks against the eager ones: values, gradients, buffers, saved memory and
loud fallbacks."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import warnings

import pytest
import torch

from normrnn.cells import ConvGRUCell, ConvLSTMCell, lstm_gates
from normrnn.kernels import (
    CompileFallbackWarning,
    auto_backend,
    backend_names,
    compile_key,
    configure_compile,
    fused_lstm_gates,
    resolve_backend,
)
from normrnn.layers import GRU, LSTM, ConvGRU, ConvLSTM
from normrnn.norms import GroupNorm


@pytest.mark.parametrize(("shape", "groups"), [((3, 16, 5, 4), 4), ((2, 32, 6), 8), ((2, 8, 2, 3, 2), 4), ((4, 8), 4)])
def test_fused_equals_eager_values_and_gradients(shape, groups: int) -> None:
    dtype = torch.float64
    C4 = shape[1]
    layout = {2: "BC", 3: "BCL", 4: "BCHW", 5: "BCDHW"}[len(shape)]
    norm = GroupNorm(C4, num_groups=groups, layout=layout, dtype=dtype)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(C4, dtype=dtype))
        norm.bias.copy_(torch.randn(C4, dtype=dtype))
    pre = torch.randn(shape, dtype=dtype, requires_grad=True)
    c = torch.randn(shape[0], C4 // 4, *shape[2:], dtype=dtype, requires_grad=True)
    want = lstm_gates(pre, c, norm=norm)
    got = fused_lstm_gates(pre, c, norm.weight, norm.bias, groups=groups)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    dh, dc = torch.randn_like(want[0]), torch.randn_like(want[1])
    inputs = (pre, c, norm.weight, norm.bias)
    grads_want = torch.autograd.grad(want, inputs, (dh, dc))
    grads_got = torch.autograd.grad(got, inputs, (dh, dc))
    for g, w in zip(grads_got, grads_want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradcheck(lambda p, c, w, b: fused_lstm_gates(p, c, w, b, groups=groups), inputs)


def gate_backend(cell: ConvLSTMCell | ConvGRUCell, device: torch.device, mask: torch.Tensor | None = None) -> str:
    """The backend that runs a step of ``cell`` on ``device``: what the cell's step asks the registry."""
    return resolve_backend(cell.backend, cell, device, mask).name


def test_fused_saves_only_inputs_and_statistics() -> None:
    pre, c = torch.randn(4, 64, 8, 8, requires_grad=True), torch.randn(4, 16, 8, 8, requires_grad=True)
    w, b = torch.ones(64, requires_grad=True), torch.zeros(64, requires_grad=True)
    norm = GroupNorm(64, num_groups=4, layout="BCHW")

    def saved_bytes(fn) -> int:
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        return sum(storages.values())

    fused = saved_bytes(lambda: fused_lstm_gates(pre, c, w, b, groups=4))
    eager = saved_bytes(lambda: lstm_gates(pre, c, norm=norm))
    assert fused <= pre.nbytes + c.nbytes + w.nbytes + b.nbytes + 2 * 4 * 4 * 8  # inputs + (N, G) mean, rstd
    assert eager > 1.5 * fused  # measured: about 2x (164 vs 83 kB here)


def test_fused_checks_shapes() -> None:
    with pytest.raises(ValueError, match="groups dividing 4C"):
        fused_lstm_gates(torch.randn(2, 8, 3), torch.randn(2, 3, 3), torch.ones(8), torch.zeros(8), groups=4)


@pytest.mark.parametrize(("cls", "norm"), [(ConvLSTM, "layer"), (ConvLSTM, "group:2"), (LSTM, "layer")])
def test_fused_backend_layer_equals_eager(cls, norm: str) -> None:
    conv = cls is ConvLSTM
    args = (3, 4, 3) if conv else (3, 4)
    eager = cls(*args, num_layers=2, norm=norm, residual=True, dtype=torch.float64)
    fused = cls(*args, num_layers=2, norm=norm, residual=True, backend="fused", dtype=torch.float64)
    fused.load_state_dict(eager.state_dict())
    x = torch.randn(2, 4, 3, 5, 5, dtype=torch.float64) if conv else torch.randn(2, 4, 3, dtype=torch.float64)
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    y_e, y_f = eager(x, mask=mask)[0], fused(x, mask=mask)[0]
    torch.testing.assert_close(y_f, y_e, rtol=1e-12, atol=1e-12)
    g_e = torch.autograd.grad(y_e.square().sum(), list(eager.parameters()))
    g_f = torch.autograd.grad(y_f.square().sum(), list(fused.parameters()))
    for a, b in zip(g_f, g_e, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"norm": "batch"}, "norm='batch'"), ({"norm": "none"}, "norm='none'"),
    ({"norm": "layer", "norm_inputs": "separate"}, "separate"), ({"norm": "layer", "peephole": True}, "peephole"),
])
def test_fused_backend_refuses_what_it_cannot_run(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ConvLSTMCell(3, 4, 3, backend="fused", **kwargs)
    with pytest.raises(ValueError, match="no fused block for ConvGRUCell"):
        ConvGRUCell(3, 4, 3, backend="fused")


def test_fused_backend_under_bf16_autocast() -> None:
    fused = ConvLSTM(2, 4, 3, norm="layer", backend="fused")
    eager = ConvLSTM(2, 4, 3, norm="layer")
    eager.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, 2, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (y, [(h, c)]), (y_e, _) = fused(x), eager(x)
    assert {y.dtype, h.dtype, c.dtype} == {torch.bfloat16}
    torch.testing.assert_close(y, y_e)
    y.float().sum().backward()
    y_e.float().sum().backward()
    for p, q in zip(fused.parameters(), eager.parameters(), strict=True):
        assert p.grad.dtype == torch.float32
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0.02 * float(q.grad.abs().max()))  # bf16 rounding


# --- the compiled gate block ---------------------------------------------------------------------------------------

@pytest.fixture
def traced_compile():
    """Compile with aot_eager: dynamo tracing, guards and AOT autograd as with inductor, without code generation
    (seconds instead of half a minute per graph). The inductor test below covers the generated kernels."""
    configure_compile(backend="aot_eager")
    yield
    configure_compile()
    torch._dynamo.reset()  # drop the traced graphs now rather than at interpreter exit


def _pair(cls, *args, **kwargs):
    """The same layer twice, eager and compiled, with equal weights."""
    eager = cls(*args, backend="eager", **kwargs)
    compiled = cls(*args, backend="compiled", **kwargs)
    compiled.load_state_dict(eager.state_dict())
    return eager, compiled


def _run(model, x, mask):
    x = x.clone().requires_grad_()
    y, states = model(x, mask=mask)
    loss = y.square().sum() + sum(s.square().sum() for s in torch.utils._pytree.tree_leaves(states))
    loss.backward()
    return [y, x.grad, *[p.grad for p in model.parameters()], *model.buffers()]


def _assert_compiled_equals_eager(cls, conv: bool, *, dtype=torch.float32, rtol=1e-5, masked=True, normwise=False,
                                  **kwargs):
    args = (3, 4, 3) if conv else (3, 4)
    eager, compiled = _pair(cls, *args, num_layers=2, dtype=dtype, **kwargs)
    x = torch.randn(3, 4, 3, 5, 5, dtype=dtype) if conv else torch.randn(3, 4, 3, dtype=dtype)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool) if masked else None
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)  # no quiet (or loud) fallback here
        got = _run(compiled, x, mask)
        got = _run(compiled, x, mask)  # the second call runs cached graphs, with state carried in buffers
    want = _run(eager, x, mask)
    want = _run(eager, x, mask)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if not w.is_floating_point():  # batch counters
            assert torch.equal(g, w)
        elif normwise:  # the measure: ‖got − want‖ / ‖want‖, robust to reordered sums near zero
            assert float((g - w).detach().norm() / w.detach().norm().clamp_min(1e-30)) <= rtol
        else:
            torch.testing.assert_close(g, w, rtol=rtol, atol=rtol)


NORMS = ["none", "layer", "group:2", "rms", "instance", "batch", "recurrent_batch:3"]


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("cls", [ConvLSTM, ConvGRU])
def test_compiled_equals_eager_for_every_norm(traced_compile, cls, norm: str) -> None:
    _assert_compiled_equals_eager(cls, True, norm=norm)


@pytest.mark.parametrize(("cls", "options"), [
    (ConvLSTM, {"norm": "group:2", "norm_scope": "all_gates"}),
    (ConvLSTM, {"norm": "recurrent_batch:3", "norm_inputs": "separate"}),
    (ConvLSTM, {"norm": "layer", "peephole": True, "norm_cell": "output"}),
    (ConvLSTM, {"norm": "rms", "peephole": True, "norm_cell": "carried", "bidirectional": True}),
    (ConvGRU, {"norm": "batch", "norm_inputs": "separate"}),
    (ConvGRU, {"norm": "layer", "norm_scope": "all_gates", "residual": True}),
    (LSTM, {"norm": "layer"}),
    (GRU, {"norm": "batch"}),
])
def test_compiled_equals_eager_for_every_placement(traced_compile, cls, options: dict) -> None:
    _assert_compiled_equals_eager(cls, cls in (ConvLSTM, ConvGRU), **options)


def test_compiled_batch_norm_without_mask_is_compiled_and_masked_runs_eagerly(traced_compile) -> None:
    cell = ConvLSTMCell(3, 4, 3, norm="batch", backend="compiled")
    assert gate_backend(cell, torch.device("cpu")) == "compiled"
    assert gate_backend(cell, torch.device("cpu"), mask=torch.ones(2, dtype=torch.bool)) == "eager"  # data-dependent
    _assert_compiled_equals_eager(ConvLSTM, True, norm="batch", masked=False)


_ALL_INDUCTOR = os.environ.get("NORMRNN_TEST_INDUCTOR") == "all"
_INDUCTOR_CASES = [(ConvLSTM, "group:2")] + [
    pytest.param(cls, norm, marks=pytest.mark.skipif(not _ALL_INDUCTOR, reason="NORMRNN_TEST_INDUCTOR=all runs it "
                                                     "(inductor compiles for 10-30 s per case)"))
    for cls in (ConvLSTM, ConvGRU) for norm in NORMS if (cls, norm) != (ConvLSTM, "group:2")]


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="inductor on CPU needs a C++ compiler")
@pytest.mark.parametrize(("cls", "norm"), _INDUCTOR_CASES)
def test_inductor_block_matches_eager_in_fp32(cls, norm: str) -> None:
    configure_compile()  # the real thing: inductor's generated kernels, forward and backward
    _assert_compiled_equals_eager(cls, True, norm=norm, masked=False, normwise=True)
    torch._dynamo.reset()


class _BreakingNorm(torch.nn.Module):
    """A norm that reads a value back to Python: a graph break under fullgraph=True."""

    def __init__(self, num_channels: int, **kwargs: object) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.abs().max()) > 1e30:
            return x
        return torch.nn.functional.layer_norm(x, x.shape[1:])


def test_a_graph_break_warns_once_then_runs_eagerly(traced_compile) -> None:
    eager, compiled = _pair(ConvLSTM, 3, 4, 3, norm=_BreakingNorm)
    x = torch.randn(2, 3, 3, 5, 5)
    with pytest.warns(CompileFallbackWarning, match="runs eagerly from now on") as caught:
        for _ in range(2):
            got, _ = compiled(x)
    assert len([w for w in caught if issubclass(w.category, CompileFallbackWarning)]) == 1
    torch.testing.assert_close(got, eager(x)[0])


def test_the_recompile_limit_warns_once_instead_of_going_quietly_eager(traced_compile) -> None:
    eager, compiled = _pair(ConvGRU, 3, 4, 3, norm="layer")
    with torch._dynamo.config.patch(recompile_limit=1), pytest.warns(CompileFallbackWarning) as caught:
        for size in (5, 6, 7, 8):  # each new size recompiles; the limit is 1
            x = torch.randn(2, 3, 3, size, size)
            got = compiled(x)[0]
            torch.testing.assert_close(got, eager(x)[0])
    assert len([w for w in caught if issubclass(w.category, CompileFallbackWarning)]) == 1
    assert "FailOnRecompileLimitHit" in str(caught[0].message)


def test_auto_is_eager_on_cpu_and_probes_see_eager_gates() -> None:
    assert auto_backend(torch.device("cpu")) == "eager"
    has_triton = importlib.util.find_spec("triton") is not None
    assert auto_backend(torch.device("cuda")) == ("compiled" if has_triton else "eager")
    cell = ConvLSTMCell(3, 4, 3, norm="layer", backend="compiled")
    cell.gate_probe = lambda gates: None
    assert gate_backend(cell, torch.device("cpu")) == "eager"
    listed = ", ".join(map(repr, backend_names()))  # the registry's names: 'auto', 'eager', 'compiled', ...
    with pytest.raises(ValueError, match=re.escape(f"expected backend to be one of {listed}, got 'warp'")):
        ConvLSTMCell(3, 4, 3, backend="warp")
    with pytest.raises(ValueError, match="got 'fused'"):
        ConvGRUCell(3, 4, 3, norm="layer", backend="fused")


def test_the_backend_registry_dispatches_a_cell_to_a_registered_backend() -> None:
    """A new backend is one registered object: cells find it by name, and "auto" by its priority."""
    from normrnn.kernels import GateBackend, backend_names, registered_backend

    class Doubling(GateBackend):  # the eager block with h doubled, so its use is visible
        name, priority = "doubling_test", 100
        calls = 0

        def prefers(self, device: torch.device) -> bool:
            return device.type == "meta"

        def unsupported(self, cell) -> str | None:
            return None if isinstance(cell, ConvLSTMCell) else "LSTM only"

        def __call__(self, cell, gx, gh, state, t, mask):
            Doubling.calls += 1
            h, c = cell.gate_block(gx, gh, state, t, mask)
            return 2 * h, c

    with registered_backend(Doubling()):
        assert "doubling_test" in backend_names()
        torch.manual_seed(0)
        eager = ConvLSTMCell(3, 4, 3, norm="layer", backend="eager")
        doubled = ConvLSTMCell(3, 4, 3, norm="layer", backend="doubling_test")
        doubled.load_state_dict(eager.state_dict())
        x = torch.randn(2, 3, 5, 5)
        torch.testing.assert_close(doubled(x)[0], 2 * eager(x)[0])
        assert Doubling.calls == 1
        with pytest.raises(ValueError, match="got 'doubling_test': LSTM only"):
            ConvGRUCell(3, 4, 3, backend="doubling_test")
        auto = ConvLSTMCell(3, 4, 3)
        assert gate_backend(auto, torch.device("meta")) == "doubling_test"  # "auto" asks the registry
        assert gate_backend(auto, torch.device("cpu")) == "eager"
        assert gate_backend(ConvGRUCell(3, 4, 3), torch.device("meta")) == "eager"  # unsupported: skipped
    assert "doubling_test" not in backend_names()
    assert gate_backend(ConvLSTMCell(3, 4, 3), torch.device("meta")) == "eager"  # unregistered: gone from "auto"


def test_compile_keys_name_every_option_and_norm() -> None:
    """Cells that differ in anything their graph depends on (norm eps, training mode) never share a graph."""
    a, b = ConvLSTMCell(3, 4, 3, norm="layer"), ConvLSTMCell(3, 4, 3, norm="layer", norm_kwargs={"eps": 1e-3})
    assert compile_key(a) != compile_key(b)
    assert compile_key(a) == compile_key(ConvLSTMCell(3, 4, 3, norm="layer"))
    assert compile_key(a) != compile_key(a.eval())


def test_fused_refuses_other_activations() -> None:
    with pytest.raises(ValueError, match="tanh and sigmoid only"):
        ConvLSTMCell(3, 4, 3, norm="layer", backend="fused", recurrent_activation="hard_sigmoid")


def test_triton_interpreter_defect_is_named_only_where_it_bites() -> None:
    from normrnn.kernels.triton import interpreter_defect

    # Triton 3.6's interpreter converted one-element arrays with int(), which NumPy 2.4 refuses (3.7 squeezes first)
    why = interpreter_defect("3.6.0", numpy_takes_int_of_1_element=False)
    assert why and "Triton 3.6.0" in why and "Triton >= 3.7" in why and "\n" not in why
    assert interpreter_defect("3.6.0", numpy_takes_int_of_1_element=True) is None
    assert interpreter_defect("3.7.0", numpy_takes_int_of_1_element=False) is None
    assert interpreter_defect("3.10.1", numpy_takes_int_of_1_element=False) is None
    assert interpreter_defect("3.10.0rc1+git5", numpy_takes_int_of_1_element=False) is None
    assert "Triton 3.6.0+cu" in interpreter_defect("3.6.0+cu", numpy_takes_int_of_1_element=False)


def test_every_public_module_of_the_kernels_package_is_imported_and_registers_its_backend() -> None:
    """Adding a backend is one new module: the package imports each public one (and nothing else registers)."""
    import pkgutil
    import sys

    import normrnn.kernels as kernels
    from normrnn.kernels.registry import _BACKENDS

    public = [m.name for m in pkgutil.iter_modules(kernels.__path__) if not m.name.startswith("_")]
    assert all(f"normrnn.kernels.{name}" in sys.modules for name in public)
    homes = {type(b).__module__.rpartition(".")[2] for b in _BACKENDS.values()}
    assert homes <= set(public) and {"compile", "fused", "triton"} <= homes
