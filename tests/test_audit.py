"""``normrnn.audit``: planted mistakes are found at their module paths; correct models audit clean."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch import nn

from helpers import Ran, cli
from normrnn import ConvGRU, ConvLSTM, audit


class ConvLoop(nn.Module):
    """A hand-written ConvRNN over (B, T, C, H, W): a conv and one norm applied at every step."""

    def __init__(self, norm: nn.Module, per_frame: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.norm = norm
        self.per_frame = per_frame

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T = x.shape[:2]
        if self.per_frame:  # one call on all frames at once: (B·T, C, H, W)
            y = self.conv(x.reshape(B * T, *x.shape[2:]))
            return self.norm(y).reshape(B, T, *y.shape[1:])
        return torch.stack([self.norm(self.conv(x[:, t])) for t in range(T)], dim=1)


class SequenceGN(nn.Module):
    """Seed 003's setting in PyTorch: GroupNorm(1, F) on a (B, F, T) view of a (B, T, F) sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.gn = nn.GroupNorm(1, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gn(x.transpose(1, 2)).transpose(1, 2)


VIDEO = torch.randn(4, 5, 1, 12, 12)  # (B, T, C, H, W)


def _kinds(report) -> list[tuple[str, str]]:
    return [(f.module, f.code) for f in report.findings]


@pytest.mark.parametrize(("model", "x", "layout", "expected"), [
    (ConvLoop(nn.LayerNorm(12), per_frame=True), VIDEO, "BTCHW", [("norm", "layer-norm-skips-channels")]),
    (ConvLoop(nn.BatchNorm2d(8)), VIDEO, "BTCHW", [("norm", "shared-running-stats")]),
    (ConvLoop(nn.BatchNorm2d(8), per_frame=True), VIDEO[:1, :1], "BTCHW", [("norm", "batch-of-one")]),
    (SequenceGN(), torch.randn(3, 7, 6), "BTF", [("gn", "group-norm-spans-time")]),
    (nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4)), torch.randn(1, 5), "BF", [("1", "batch-of-one")]),
])
def test_planted_mistakes_are_found_at_their_paths(model, x, layout, expected) -> None:
    report = audit(model, x, layout=layout)
    assert _kinds(report) == expected
    assert expected[0][0] in str(report) and expected[0][1] in str(report)


@pytest.mark.parametrize(("model", "x", "layout"), [
    (ConvLoop(nn.LayerNorm([8, 12, 12]), per_frame=True), VIDEO, "BTCHW"),  # layer norm over (C, H, W)
    (ConvLoop(nn.GroupNorm(4, 8)), VIDEO, "BTCHW"),  # per-sample statistics: any number of calls is fine
    (ConvLoop(nn.BatchNorm2d(8), per_frame=True), VIDEO, "BTCHW"),  # one call over B·T frames
    (ConvLoop(nn.InstanceNorm2d(8, affine=True)), VIDEO, "BTCHW"),
    (nn.Sequential(nn.Linear(6, 6), nn.LayerNorm(6)), torch.randn(3, 7, 6), "BTF"),  # per-step layer norm
    (nn.Sequential(nn.Linear(6, 6), nn.RMSNorm(6)), torch.randn(3, 7, 6), "BTF"),
    (ConvLSTM(1, 8, 3, num_layers=2, norm="layer", residual=True), VIDEO, "BTCHW"),
    (ConvLSTM(1, 8, 3, norm="recurrent_batch", bidirectional=True), VIDEO, "BTCHW"),
    (ConvGRU(1, 8, 3, norm="group:2"), VIDEO, "BTCHW"),
])
def test_correct_models_audit_clean(model, x, layout) -> None:
    report = audit(model, x, layout=layout)
    assert report.findings == [], str(report)
    assert "no findings" in str(report)


def test_a_normrnn_batch_norm_shared_across_steps_is_flagged() -> None:
    """norm="batch" in a ConvLSTM shares one set of running statistics across steps: the seed's own question."""
    report = audit(ConvLSTM(1, 8, 3, norm="batch"), VIDEO, layout="BTCHW")
    assert _kinds(report) == [("layers.0.0.norm_gates", "shared-running-stats")]
    use = report.uses[0]
    assert use.calls == 5 and use.layout == "BCHW" and use.reduce == "BHW" and use.spec == "batch"


def test_the_table_describes_each_norm() -> None:
    report = audit(ConvLoop(nn.GroupNorm(4, 8), per_frame=True), VIDEO, layout="BTCHW")
    (use,) = report.uses
    assert (use.path, use.cls, use.calls) == ("norm", "GroupNorm", 1)
    assert use.layout == "BCHW" and use.reduce == "CHW" and use.stats_shape == (20, 4)  # (B·T, G)
    assert use.param_shape == (8,) and use.spec == "group:4 (reduce=CHW)"
    text = str(report)
    for column in ("module", "class", "input layout", "reduces", "statistics", "parameters", "calls", "normrnn spec"):
        assert column in text


class Transpose(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


def test_an_ambiguous_layout_is_said_not_guessed() -> None:
    """A rank-3 tensor unlike the (B, T, F) input: (B, C, L) or (B, T, C)? No finding rests on a guess."""
    report = audit(nn.Sequential(Transpose(), nn.LayerNorm(5)), torch.randn(2, 5, 6), layout="BTF")
    assert report.findings == []
    assert report.uses[0].ambiguous and "layout ambiguous" in str(report)


def test_layer_norm_over_flattened_pixels_skips_channels() -> None:
    report = audit(nn.Sequential(nn.Flatten(2), nn.LayerNorm(16)), torch.randn(2, 3, 4, 4), layout="BCHW")
    assert _kinds(report) == [("1", "layer-norm-skips-channels")]


def test_the_audited_model_is_left_untouched() -> None:
    model = ConvLoop(nn.BatchNorm2d(8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    audit(model, VIDEO, layout="BTCHW")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_cli_audit_exit_codes(tmp_path) -> None:
    (tmp_path / "mymodels.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Loop(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv, self.bn = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)

            def forward(self, x):
                return torch.stack([self.bn(self.conv(x[:, t])) for t in range(x.shape[1])], 1)

        def buggy():
            return Loop()

        def clean():
            from normrnn import ConvLSTM
            return ConvLSTM(1, 4, 3, norm="layer")
    """))
    def run(factory: str) -> Ran:
        return cli("audit", factory, "--input-shape", "2,3,1,8,8", "--layout", "BTCHW", cwd=tmp_path)

    buggy, clean = run("mymodels:buggy"), run("mymodels:clean")
    assert buggy.returncode == 1 and "[shared-running-stats] bn:" in buggy.stdout, buggy.stderr
    assert clean.returncode == 0 and "no findings" in clean.stdout, clean.stderr
    missing = run("mymodels:nothing")
    assert missing.returncode == 2 and "mymodels:nothing: 'mymodels' has no 'nothing'" in missing.stderr


def test_the_audit_guide_shows_the_audit_of_its_example() -> None:
    from pathlib import Path

    from examples.audit_convrnn import build

    root = Path(__file__).resolve().parents[1]
    report = audit(build(), torch.randn(4, 10, 1, 64, 64), layout="BTCHW")
    assert [(f.module, f.code) for f in report.findings] == [("out_norm", "shared-running-stats")]
    assert str(report) in (root / "docs" / "guides" / "audit.md").read_text()
