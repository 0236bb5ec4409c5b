"""Hostile round 4: each numbered class of defects, with a test that failed before its fix.

CLI cases call ``normrnn.cli.main`` in-process and check exit 2, one line on stderr, no traceback, nothing written.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers import cli, user_modules
from normrnn import GRU, LSTM, BatchNorm, ConvLSTM, RecurrentBatchNorm
from normrnn._loader import check_text, source_hash
from normrnn.cli import main
from normrnn.kernels.triton import triton_lstm_gates
from normrnn.study import StudyConfig, load_results, run_study, write_report

SMALL = dict(name="round4", size=8, patch=2, width=4, train_samples=8, val_samples=4, test_samples=4, epochs=2,
             batch_size=4, norms=("none",), topologies=("stacked",), depths=(1,), frames_in=3, frames_out=2,
             threads=1)

USER = '''
import sys
import torch
from torch import nn
from torch.utils.data import Dataset
import normrnn
from helper4 import WIDTH

def log_mse(pred, target):  # negative once the MSE is below 1: a log-space loss
    return torch.log10(((pred - target) ** 2).mean())

def one_minus_corr(pred, target):  # NaN for a constant prediction
    p, t = pred.flatten() - pred.mean(), target.flatten() - target.mean()
    return 1 - (p * t).sum() / (p.norm() * t.norm())

def vector_loss(pred, target):
    return ((pred - target) ** 2).flatten(1).mean(1)

class Named(nn.Module):
    """A user's model whose own ModuleList is called ``cells``: nothing the study may call."""
    def __init__(self, norm, depth, frames_out):
        super().__init__()
        self.frames_out = frames_out
        self.cells = nn.ModuleList([normrnn.ConvLSTMCell(4, WIDTH, 3, norm=norm)])
        self.head = nn.Conv2d(WIDTH, 4, 1)

    def forward(self, x):
        B, T, C, H, W = x.shape
        z = torch.nn.functional.pixel_unshuffle(x.flatten(0, 1), 2).view(B, T, 4, H // 2, W // 2)
        state = None
        for t in range(T):
            state = self.cells[0](z[:, t], state, t=t)
        y = self.head(state[0])  # (B, 4, h, w)
        y = torch.nn.functional.pixel_shuffle(y, 2)[:, None]  # (B, 1, 1, H, W)
        return y.expand(B, self.frames_out, 1, H, W)

def build_named(*, norm, topology, depth, seed, frames_out=2):
    return Named(norm, depth, frames_out)

def build_exits(*, norm, topology, depth, seed):
    sys.exit(3)

def build_bad_depth2(*, norm, topology, depth, seed, frames_out=2):
    model = Named(norm, depth, frames_out)
    return model if depth == 1 else None

def exits_now():
    sys.exit(3)

class Ragged(Dataset):
    def __len__(self):
        return 8
    def __getitem__(self, i):
        n = 3 if i % 2 else 4
        return torch.rand(n, 1, 8, 8), torch.rand(2, 1, 8, 8)

def load_ragged(*, split, seed):
    return Ragged()

def load_dict(*, split, seed):
    return {"x": torch.rand(8, 3, 1, 8, 8)}
'''


@pytest.fixture
def user4(tmp_path, monkeypatch):
    files = {"user4.py": USER, "helper4.py": "WIDTH = 4\n", "exits4.py": "import sys\nsys.exit(4)\n"}
    with user_modules(tmp_path, monkeypatch, files) as folder:
        yield folder


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# 1. losses negative or undefined at the start ---------------------------------------------------------------------

def test_a_negative_loss_trains_and_an_undefined_floor_is_recorded_as_null(user4) -> None:
    rows = run_study(StudyConfig(**SMALL, loss="user4:log_mse"), user4 / "log", progress=False)
    assert not rows[0]["diverged"] and rows[0]["epochs"] == 2  # log10(mse) < 0 at step 0 is not divergence
    assert rows[0]["learn_floor_loss"] < 0
    rows = run_study(StudyConfig(**SMALL, loss="user4:one_minus_corr"), user4 / "corr", progress=False)
    assert rows[0]["learn_floor_loss"] is None and "not finite" in rows[0]["learn_floor_note"]
    assert load_results(user4 / "corr") == rows  # recorded: plain JSON, so a re-run does not retrain it


# 2. an edited model is another study ------------------------------------------------------------------------------

def test_an_edited_helper_module_changes_the_hash(user4) -> None:
    config = StudyConfig(**SMALL, model="user4:build_named")
    before = config.config_hash
    (user4 / "helper4.py").write_text("WIDTH = 4  # edited\n")
    source_hash.cache_clear()
    assert StudyConfig(**SMALL, model="user4:build_named").config_hash != before


@pytest.mark.slow
def test_a_factory_without_a_source_file_needs_a_named_version(user4) -> None:
    code = textwrap.dedent("""
        import sys
        from normrnn.study import StudyConfig
        def build(*, norm, topology, depth, seed): ...
        settings = dict(model="__main__:build")
        try:
            StudyConfig(**settings).config_hash
        except ValueError as e:
            print("refused:", e)
        print(StudyConfig(**settings, model_version="v1").config_hash)
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.startswith("refused:") and "model_version" in first and "no source file" in first
    assert len(second) == 12


# 3. halving with --shard ------------------------------------------------------------------------------------------

def test_halving_cannot_be_sharded(tmp_path, capsys) -> None:
    code = main(["study", "--preset", "tuned", "--shard", "0/2", "--out", str(tmp_path / "s"), "--no-progress"])
    assert_one_line_error(code, capsys.readouterr().err, "halving", "--shard")
    assert not (tmp_path / "s").exists()


# 4. all-diverged grids ----------------------------------------------------------------------------------------------

def test_a_grid_that_diverged_everywhere_is_reported(tmp_path) -> None:
    config = StudyConfig(**{**SMALL, "norms": ("none", "layer")}, lr_mults=(1.0, 3.0), divergence_bound=0.5)
    rows = run_study(config, tmp_path, progress=False)
    assert rows and all(r["diverged"] for r in rows)
    report = write_report([tmp_path])
    assert "Diverged at every learning rate tried" in report.summary
    assert "`none` (stacked, d1) at × 1, 3" in report.summary and "`layer` (stacked, d1)" in report.summary


# 5. sys.exit inside a user's factory --------------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "fragment"), [
    (["study", "--model", "user4:build_exits"], "model factory user4:build_exits called sys.exit(3)"),
    (["study", "--model", "exits4:build"], "exits4:build called sys.exit(4)"),
    (["audit", "user4:exits_now"], "factory user4:exits_now called sys.exit(3)"),
])
def test_sys_exit_in_a_factory_is_a_one_line_error(user4, capsys, argv, fragment) -> None:
    extra = ["--preset", "smoke", "--out", str(user4 / "s"), "--no-progress"] if argv[0] == "study" else []
    code = main([*argv, *extra] + (["--input-shape", "1,3,1,8,8"] if argv[0] == "audit" else []))
    assert_one_line_error(code, capsys.readouterr().err, fragment)
    assert not (user4 / "s").exists()


# 6. norm specs are canonical in the study ---------------------------------------------------------------------------

def test_norm_specs_are_canonical_and_one_spelling_per_norm() -> None:
    assert StudyConfig(norms=["None", "Layer", "GROUP:08"]).norms == ("none", "layer", "group:8")
    with pytest.raises(ValueError, match="name the same runs"):
        StudyConfig(norms=["group:8", "group:08"])


def test_the_report_compares_against_a_baseline_spelled_otherwise(tmp_path) -> None:
    rows = [{"run_id": f"{n}_{s}", "norm": n, "topology": "stacked", "depth": 1, "seed": s, "lr_mult": 1.0,
             "diverged": False, "test_mse": 40.0 + s + (n == "layer"), "val_mse": 40.0} for n in ("None", "layer")
            for s in (0, 1, 2)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "`layer` test MSE 42.00 vs bias-only 41.00" in write_report([tmp_path]).summary


# 7. a user's model that uses our names ------------------------------------------------------------------------------

def test_a_model_with_its_own_cells_attribute_is_probed_by_what_its_cells_are(user4) -> None:
    rows = run_study(StudyConfig(**SMALL, model="user4:build_named"), user4 / "named", progress=False)
    assert rows[0]["gate_saturation"] is not None and len(rows[0]["gate_saturation"]) == 1  # its one normrnn cell


# 8. normrnn train checks its own --norm, and times no grid ---------------------------------------------------------

def test_train_checks_its_norm_before_writing_and_times_no_grid(tmp_path, capsys) -> None:
    out = tmp_path / "t"
    code = main(["train", "--preset", "smoke", "--norm", "group:3", "--out", str(out), "--no-progress"])
    assert_one_line_error(code, capsys.readouterr().err, "group:3", "width=8")
    assert not out.exists()
    assert main(["train", "--preset", "smoke", "--norm", "layer", "--out", str(out), "--no-progress"]) == 0
    assert not (out / "cost.json").exists()  # the study's cost table is the study's, not one run's


# 9. triton_lstm_gates validates like the eager block ---------------------------------------------------------------

@pytest.mark.parametrize(("change", "match"), [
    ({"weight": torch.ones(7)}, r"weight of shape \(8,\)"),
    ({"shift": torch.zeros(8, dtype=torch.int64)}, "floating-point"),
    ({"c": torch.zeros(2, 2, 3, 3, dtype=torch.float64)}, "one dtype"),
    ({"pre": torch.zeros(2, 8, 3, 3, dtype=torch.int32)}, "floating-point"),
])
def test_triton_gates_refuse_what_the_kernel_would_misread(change, match) -> None:
    args = {"pre": torch.randn(2, 8, 3, 3), "c": torch.randn(2, 2, 3, 3), "weight": torch.ones(8),
            "shift": torch.zeros(8)}
    args.update(change)
    with pytest.raises(ValueError, match=match):
        triton_lstm_gates(args["pre"], args["c"], args["weight"], args["shift"], groups=4)


# 10. every variant's model is checked before any work ---------------------------------------------------------------

def test_a_model_wrong_for_a_later_variant_fails_before_anything_is_written(user4, capsys) -> None:
    toml = user4 / "grid.toml"
    toml.write_text('preset = "smoke"\ndepths = [1, 2]\ntopologies = ["stacked"]\nnorms = ["none"]\n')
    code = main(["study", "--config", str(toml), "--model", "user4:build_bad_depth2", "--out", str(user4 / "s"),
                 "--no-progress"])
    assert_one_line_error(code, capsys.readouterr().err, "depth=2", "expected an nn.Module, got NoneType")
    assert not (user4 / "s").exists()


# 11. data factories whose items do not batch ---------------------------------------------------------------------

@pytest.mark.parametrize(("factory", "fragment"), [
    ("user4:load_ragged", "do not make a batch"),
    ("user4:load_dict", "item 0 of split 'train' raised KeyError"),
])
def test_data_that_does_not_batch_is_a_one_line_error(user4, capsys, factory, fragment) -> None:
    code = main(["study", "--preset", "smoke", "--data", factory, "--model", "user4:build_named", "--out",
                 str(user4 / "s"), "--no-progress"])
    assert_one_line_error(code, capsys.readouterr().err, fragment)


# 12. a non-scalar loss says its shape ------------------------------------------------------------------------------

def test_a_non_scalar_loss_is_named_by_its_shape(user4, capsys) -> None:
    toml = user4 / "loss.toml"
    toml.write_text('preset = "smoke"\nloss = "user4:vector_loss"\n')
    code = main(["study", "--config", str(toml), "--out", str(user4 / "s"), "--no-progress"])
    assert_one_line_error(code, capsys.readouterr().err, "expected a scalar tensor", "of shape (8,)")


# 13. batch norms: a masked step with too few values, and two forwards before one backward ------------------------

@pytest.mark.parametrize("cls", [BatchNorm, RecurrentBatchNorm])
def test_two_masked_forwards_before_one_backward(cls) -> None:
    """The second sample is valid at step 0 only, so steps 1-3 use one value per channel and fall back to the running
    statistics, which the next call updates in place: the first call's backward must not see that."""
    torch.manual_seed(0)
    norm = cls(3, layout="BTC")
    x = torch.randn(2, 4, 3, requires_grad=True)
    mask = torch.tensor([[True] * 4, [True, False, False, False]])
    (norm(x, mask).sum() + norm(2 * x, mask).square().sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("norm", ["batch", "recurrent_batch"])
def test_a_siamese_loss_through_batch_normalized_layers(norm: str) -> None:
    torch.manual_seed(0)
    layer = LSTM(3, 4, norm=norm)
    x = torch.randn(3, 5, 3)
    lengths = torch.tensor([5, 1, 1])  # steps 1-4: one valid sample
    a, _ = layer(x, lengths=lengths)
    b, _ = layer(x.flip(1), lengths=lengths)
    (a - b).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters() if p.requires_grad)


# 14. half-precision layers on the CPU --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("cls", "args", "shape"), [(LSTM, (3, 4), (2, 5, 3)), (GRU, (3, 4), (2, 5, 3)),
                                                    (ConvLSTM, (2, 4, 3), (2, 3, 2, 6, 6))])
def test_half_precision_layers_build_and_run_like_nn_lstm(cls, args, shape, dtype) -> None:
    half = cls(*args, dtype=dtype)
    assert {p.dtype for p in half.parameters()} == {dtype}
    for cell in half.cells():  # orthogonal per gate, as in float32, to half precision
        C = cell.hidden_channels
        for g in range(cell.num_gates):
            w = cell.weight_h[g * C : (g + 1) * C].float().flatten(1)  # (C, C·k^d)
            torch.testing.assert_close(w @ w.T, torch.eye(C), atol=2e-2, rtol=0)
    y, _ = half(torch.randn(shape, dtype=dtype))
    assert y.dtype == dtype and torch.isfinite(y.float()).all()
    assert torch.nn.LSTM(3, 4, dtype=dtype).weight_hh_l0.dtype == dtype  # what nn.LSTM accepts


def test_bench_layers_takes_bfloat16(capsys) -> None:
    code = main(["bench", "layers", "--dtype", "bfloat16", "--batch", "2", "--in-channels", "2",
                 "--hidden-channels", "4", "--size", "6,6", "--steps", "2", "--norms", "none,layer", "--rounds", "1",
                 "--warmup", "0"])
    assert code == 0, capsys.readouterr().err
    assert "normrnn ConvLSTM norm=layer" in capsys.readouterr().out


# 15. Ctrl-C outside the training loop ------------------------------------------------------------------------------

def test_ctrl_c_in_the_report_is_interrupted_not_a_traceback(tmp_path, capsys, monkeypatch) -> None:
    import normrnn.study as study

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(study, "write_report", interrupted)
    assert main(["report", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


# 16. normrnn train while another process holds the run -------------------------------------------------------------

def test_train_names_who_holds_its_run(tmp_path, capsys) -> None:
    from filelock import FileLock

    out = tmp_path / "t"
    run_dir = out / "runs" / "none_stacked_d2_s0_lr1"
    run_dir.mkdir(parents=True)
    (run_dir / "claim.owner").write_text("process 4242 on node7\n")
    with FileLock(run_dir / "claim.lock"):
        code = cli("train", "--preset", "smoke", "--norm", "none", "--out", str(out), "--no-progress")
    assert_one_line_error(code.returncode, code.stderr, "being trained by process 4242 on node7")


# 17. gpu-check checks --out first ----------------------------------------------------------------------------------

def test_gpu_check_refuses_a_file_as_out_before_any_work(tmp_path, capsys) -> None:
    from normrnn.gpu_check import main as gpu_main

    target = tmp_path / "file"
    target.write_text("x")
    assert gpu_main(["--out", str(target)]) == 2
    assert "expected --out to be a directory" in capsys.readouterr().err


# 18. torch.compile(fullgraph=True) with lengths ---------------------------------------------------------------------

def test_compiled_fullgraph_layer_takes_lengths() -> None:
    torch.manual_seed(0)
    layer = ConvLSTM(2, 4, 3, norm="layer")
    x, lengths = torch.randn(3, 4, 2, 6, 6), torch.tensor([4, 2, 1])
    want, _ = layer(x, lengths=lengths)
    got, _ = torch.compile(layer, fullgraph=True, backend="aot_eager")(x, lengths=lengths)
    torch.testing.assert_close(got, want)


# 19. module names: PEP 3131, and a module shadowed by the standard library --------------------------------------

def test_unicode_module_names_and_shadowed_modules(tmp_path, monkeypatch, capsys) -> None:
    check_text("model", "ünï:build")  # a valid Python module name
    check_text("model", "pkg.mödel:Build.create")
    with pytest.raises(ValueError, match="'module:function'"):
        check_text("model", "9lives:build")
    import calendar  # the standard library's, loaded first, as any process that imported email or http has it

    assert not hasattr(calendar, "build")
    (tmp_path / "calendar.py").write_text("def build(**kw): ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # and sys.path is restored after: no later process sees this file
    monkeypatch.chdir(tmp_path)
    code = main(["study", "--preset", "smoke", "--model", "calendar:build", "--out", str(tmp_path / "s")])
    assert_one_line_error(code, capsys.readouterr().err, "has no 'build'", "imported from", "shadow")
