"""A norm and a gate backend registered from user code are accepted everywhere and listed in every message and
help text; registration refuses a norm that would silently pool statistics over the gates."""

from __future__ import annotations

import pytest
import torch

from normrnn import audit
from normrnn.bench import LayerBenchConfig, bench_layers
from normrnn.cli import build_parser
from normrnn.kernels import GateBackend, backend_names, registered_backend
from normrnn.layers import ConvLSTM
from normrnn.norms import InstanceNorm, LayerNorm, NormEntry, NormSpec, explain, norm_spec_names, registered_norm
from normrnn.study import StudyConfig
from normrnn.study.preflight import check_norms_fit


class DoubledInstance(InstanceNorm):
    """A user's norm: instance norm, doubled (so its use is visible)."""

    def forward(self, x, mask=None, *, step=None):
        return 2 * super().forward(x, mask, step=step)


class Plain(GateBackend):
    name = "plain_test"


def _help(*command: str) -> str:
    parser = build_parser()
    for action in parser._subparsers._group_actions:  # the subcommand's own help text
        sub = action.choices[command[0]]
        for name in command[1:]:
            sub = sub._subparsers._group_actions[0].choices[name]
        return sub.format_help()
    raise AssertionError("no subcommands")


def test_a_user_norm_and_backend_are_accepted_and_listed_everywhere() -> None:
    with registered_norm(NormEntry("doubled_test", DoubledInstance, arg_label="K")), \
            registered_backend(Plain()):
        assert "doubled_test" in norm_spec_names() and "plain_test" in backend_names()
        with pytest.raises(ValueError, match="doubled_test"):  # the unknown-spec message lists it
            NormSpec.parse("nope")
        torch.manual_seed(0)
        layer = ConvLSTM(2, 4, 3, norm="doubled_test", backend="plain_test")
        eager = ConvLSTM(2, 4, 3, norm="doubled_test", backend="eager")
        eager.load_state_dict(layer.state_dict())
        x = torch.randn(2, 3, 2, 5, 5)
        norm = layer.cell(0).norm_gates
        assert isinstance(norm, DoubledInstance)  # the user's class does the normalizing
        g = torch.randn(2, 16, 5, 5)
        want = torch.nn.functional.instance_norm(g, weight=norm.weight, bias=norm.bias, eps=norm.eps)
        torch.testing.assert_close(norm(g), 2 * want)
        torch.testing.assert_close(layer(x)[0], eager(x)[0])  # a backend that overrides nothing is the eager path
        report = audit(layer, x, layout="BTCHW")
        assert [u.cls for u in report.uses] == ["DoubledInstance"] and report.uses[0].reduce == "HW"
        rows = bench_layers(LayerBenchConfig(batch=2, in_channels=2, hidden_channels=4, size=(5, 5), steps=2,
                                             num_layers=1, norms=("none", "doubled_test"),
                                             backends=("plain_test",), rounds=1, warmup=0))
        assert {"doubled_test", "doubled_test plain_test"} <= {r["norm"] for r in rows}  # checked equal to eager
        config = StudyConfig(norms=("none", "doubled_test"), width=4)
        check_norms_fit(config)
        assert str(explain("doubled_test", layout="BTCHW", shape=(2, 3, 4, 5, 5))).startswith("doubled_test on")
        assert "doubled_test" in _help("explain") and "plain_test" in _help("bench", "layers")
    assert "doubled_test" not in norm_spec_names() and "plain_test" not in backend_names()
    with pytest.raises(ValueError, match="unknown norm spec 'doubled_test'"):
        StudyConfig(norms=("doubled_test",))


def test_a_norm_over_channels_must_say_how_it_groups_per_gate() -> None:
    class Pooled(LayerNorm):
        pass

    with pytest.raises(ValueError, match="keeps statistics over the channels"), registered_norm(
            NormEntry("pooled_test", Pooled)):
        pass
    assert "pooled_test" not in norm_spec_names()
    with registered_norm(NormEntry("pooled_test", Pooled, arg="num_groups", gate_groups=lambda arg, C: 1,
                                   grouped_as="group")) as entry:
        assert entry.usage == "pooled_test[:G]"


class _FineLayer(LayerNorm):
    """A registered norm whose class has its own default eps."""

    def __init__(self, num_channels: int, *, layout: str, eps: float = 1e-8, **kwargs) -> None:
        super().__init__(num_channels, layout=layout, eps=eps, **kwargs)


def test_create_norm_passes_only_what_the_caller_gave() -> None:
    """Each class's defaults hold (no eps forced to 1e-5), a given value wins, and an argument the norm does not take
    is a ValueError that names what it takes; the cells' norms get the same."""
    from normrnn.cells import ConvLSTMCell
    from normrnn.norms import create_norm

    with registered_norm(NormEntry("fine_test", _FineLayer, gate_groups=lambda arg, C: 1, grouped_as="group")):
        assert create_norm("fine_test", 8, layout="BCHW").eps == 1e-8
        assert create_norm("fine_test", 8, layout="BCHW", eps=1e-3).eps == 1e-3
        assert ConvLSTMCell(3, 2, 3, norm="fine_test", norm_scope="all_gates").norm_gates.eps == 1e-8
    assert create_norm("batch", 8, layout="BCHW").momentum == 0.1  # the class's own, as before
    with pytest.raises(ValueError, match=r"norm 'layer' takes no argument 'momentum'; expected some of: .*eps"):
        create_norm("layer", 8, layout="BCHW", momentum=0.2)


def test_create_norm_documents_no_spec_names_by_hand() -> None:
    """The spec list is the registry's: the docstring points to it, and lists no built-in name of its own."""
    from normrnn.norms import create_norm

    spec_doc = create_norm.__doc__.split("num_channels:")[0]
    assert "norm_spec_names" in spec_doc
    quoted = [n for n in norm_spec_names() if f'"{n}' in spec_doc]
    assert len(quoted) <= 2, quoted  # the two examples of the ":N" argument, not a list
