"""Late errors and tracebacks, turned into one line and exit 2 before anything is written: bench flags, huge
shapes, audit failures, and damaged rows or files in a study directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import Ran, assert_one_line_error, cli, result_row
from normrnn.study import load_results, write_report
from normrnn.study.results import ResultsWarning

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("args", "message"), [
    (["bench", "cells", "--quick", "--threads", "0"], "expected threads to be a positive int, got 0"),
    (["bench", "cells", "--quick", "--repeats", "0"], "expected repeats to be a positive int, got 0"),
    (["bench", "cells", "--quick", "--rounds", "0"], "expected rounds to be a positive int, got 0"),
    (["bench", "cells", "--quick", "--warmup", "-1"], "expected warmup to be an int >= 0, got -1"),
    (["bench", "layers", "--kernel-size", "0"], "expected kernel_size to be a positive int, got 0"),
    (["bench", "layers", "--num-layers", "0"], "expected num_layers to be a positive int, got 0"),
    (["bench", "cells", "--quick", "--device", "tpu"], "expected device to be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
    (["bench", "cells", "--quick", "--json", "/no/such/folder/b.json"], "expected --json in a writable folder"),
    (["explain", "layer", "--layout", "BTF", "--shape", "100000,100000,100000"], "expected a shape of at most"),
    (["bench", "norms", "--shape", "100000,100000,100000"], "expected a shape of at most"),
    (["bench", "layers", "--batch", "100000"], "expected at most 268,435,456 gate values"),
])
def test_bad_bench_and_explain_flags_are_one_line_errors(args: list[str], message: str) -> None:
    assert_one_line_error(cli(*args), message)


AUDITED = '''
import torch
from torch import nn

def raises():
    raise RuntimeError("no weights here")

def needs_arguments(width):
    return nn.Linear(width, width)

def not_a_module():
    return 3

class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(4)

    def forward(self, x, y):
        return self.norm(x + y)

def two_inputs():
    return TwoInputs()

class Uncopyable(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(4)
        self.gen = (i for i in range(3))  # generators cannot be deep-copied

    def forward(self, x):
        return self.norm(x)

def uncopyable():
    return Uncopyable()
'''


@pytest.mark.parametrize(("factory", "message"), [
    ("audited:raises", "audited:raises() raised RuntimeError: no weights here"),
    ("audited:needs_arguments", "audited:needs_arguments() raised TypeError"),
    ("audited:not_a_module", "expected audited:not_a_module() to return a torch.nn.Module, got int"),
    ("audited:two_inputs", "missing 1 required positional argument: 'y'"),
    ("audited:uncopyable", "could not audit audited:uncopyable: TypeError"),
    ("nosuch:model", "cannot import 'nosuch'"),
])
def test_audit_that_could_not_run_exits_2_in_one_line(tmp_path, factory: str, message: str) -> None:
    (tmp_path / "audited.py").write_text(AUDITED)
    assert_one_line_error(cli("audit", factory, "--input-shape", "2,4", "--layout", "BF", cwd=tmp_path), message)


def _row(run_id: str, **changes) -> dict:
    row = result_row(run_id=run_id, step_time_s=0.1, peak_mem_mb=1.0, loss_spikes=0, val_curve=[5.0],
                     train_curve=[0.1])
    return {**row, **changes}  # changes may be wrong on purpose


def test_report_on_a_missing_or_empty_directory_says_which(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("report", str(tmp_path / "typo"), cwd=tmp_path), "typo is not a directory")
    assert_one_line_error(cli("report", "empty", cwd=tmp_path), "no results in empty: expected results.jsonl")
    assert not (tmp_path / "typo").exists()


def test_report_skips_rows_with_bad_fields_and_names_damaged_files(tmp_path) -> None:
    rows = [_row("good"), _row("string", test_mse="5.0"), _row("null-norm", norm=None), _row("string-depth", depth="1")]
    missing = _row("missing")
    del missing["test_mse"]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*rows, missing]))
    with pytest.warns(ResultsWarning) as caught:
        assert [r["run_id"] for r in load_results(tmp_path)] == ["good", "missing"]
        report = write_report([tmp_path])
    messages = " ".join(str(w.message) for w in caught)
    assert "test_mse='5.0'" in messages and "norm=None" in messages and "lacks ['test_mse']" in messages
    assert "| stacked | 1 | none | 1 | – | 5.00 |" in report.tables  # the good row alone (its params unknown)
    (tmp_path / "baselines.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"baselines\.json is damaged"):
        write_report([tmp_path])


def test_study_settings_that_would_fail_late_fail_before_anything_is_written(tmp_path) -> None:
    def study(*args: str, env: dict | None = None) -> Ran:
        return cli("study", "--preset", "smoke", *args, cwd=tmp_path, env=env)

    (tmp_path / "g3.toml").write_text('preset = "smoke"\nnorms = ["group:3"]\n')  # width 8
    assert_one_line_error(study("--config", "g3.toml", "--out", "a"), "norms: 'group:3' does not fit width=8")
    (tmp_path / "mm.toml").write_text('preset = "smoke"\ndataset = "moving_mnist"\ndata_path = "nope.npy"\n')
    assert_one_line_error(study("--config", "mm.toml", "--out", "a"), "expected data_path to name the files")
    assert_one_line_error(study("--out", "a", env={"WORLD_SIZE": "abc"}), "environment variable WORLD_SIZE")
    assert_one_line_error(study("--out", "a", env={"WORLD_SIZE": "3"}),
                          "batch_size divisible by the number of processes (3)")
    assert_one_line_error(study("--out", ""), "expected --out to name a directory, got ''")
    # a study that cannot fit in memory: one line, before the data are generated or a cell of that width is built
    (tmp_path / "wide.toml").write_text('preset = "smoke"\nwidth = 100000\n')
    assert_one_line_error(study("--config", "wide.toml", "--out", "a"), "expected the study to fit in memory")
    (tmp_path / "many.toml").write_text('preset = "smoke"\ntrain_samples = 100000000\n')
    assert_one_line_error(study("--config", "many.toml", "--plan"), "its data take 1907.3 GiB")
    assert not (tmp_path / "a").exists()
    out = cli("train", "--preset", "smoke", "--seed", str(2**40), "--out", "a", cwd=tmp_path)
    assert_one_line_error(out, "expected seed to be an int >= 0 and <= 2147483647")


def test_a_directory_without_finished_runs_accepts_a_corrected_config(tmp_path) -> None:
    from normrnn.study import StudyConfig
    from normrnn.study.directory import check_directory

    wrong, right = StudyConfig(epochs=3), StudyConfig(epochs=2)
    check_directory(wrong, tmp_path)
    check_directory(right, tmp_path)  # nothing finished: the corrected config takes over
    assert json.loads((tmp_path / "study.json").read_text())["epochs"] == 2
    (tmp_path / "results.jsonl").write_text(json.dumps(_row("r", config_hash=right.config_hash)) + "\n")
    with pytest.raises(ValueError, match=r"holds a different study \(differs in \['epochs'\]\)"):
        check_directory(wrong, tmp_path)


def test_toml_study_table_and_top_level_keys_merge_and_strays_are_refused(tmp_path) -> None:
    from normrnn.study import load_config

    path = tmp_path / "s.toml"
    path.write_text('preset = "smoke"\nepochs = 1\n[study]\nwidth = 4\n')
    config = load_config(None, path)
    assert (config.epochs, config.width, config.name) == (1, 4, "smoke")
    path.write_text("epochs = 1\n[study]\nepochs = 2\n")
    with pytest.raises(ValueError, match=r"keys \['epochs'\] are set both"):
        load_config(None, path)
    path.write_text("epochs = 1\n[training]\nlr = 0.1\n")
    with pytest.raises(ValueError, match=r"unknown tables \['\[training\]'\]"):
        load_config(None, path)


def test_silently_accepted_values_are_refused(tmp_path) -> None:
    import numpy as np
    import torch

    from normrnn.data import create_dataset
    from normrnn.layers import LSTM

    with pytest.raises(ValueError, match="expected lengths to be 2 integers"):
        LSTM(3, 4)(torch.randn(2, 3, 3), lengths=torch.tensor([True, False]))
    with pytest.raises(ValueError, match="expected forget_bias to be a finite number"):
        LSTM(3, 4, forget_bias=float("nan"))
    np.save(tmp_path / "mm.npy", np.zeros((20, 10, 64, 64), dtype=np.uint8))
    with pytest.raises(ValueError, match="expected size=32"):
        create_dataset("moving_mnist", 2, split="train", size=32, path=str(tmp_path / "mm.npy"))
    with pytest.raises(ValueError, match="sequences in its 'train' split; 50 were asked for"):
        create_dataset("moving_mnist", 50, split="train", size=64, path=str(tmp_path / "mm.npy"))
    assert create_dataset("moving_mnist", 2, split="train", size=64, path=str(tmp_path / "mm.npy"),
                          frames_in=3, frames_out=2).video.shape == (2, 5, 1, 64, 64)


def test_converters_never_guess() -> None:
    import numpy as np
    from torch import nn

    from normrnn import ConvLSTM
    from normrnn.interop import convlstm_from_keras, from_tf1_convlstm_cell
    from normrnn.norms import from_flax, from_keras, from_tf1_layer_norm

    k, r, b = np.zeros((3, 3, 2, 16)), np.zeros((3, 3, 4, 16)), np.zeros(16)
    good = {"filters": 4, "kernel_size": [3, 3], "padding": "same"}
    assert isinstance(convlstm_from_keras([k, r, b], good), ConvLSTM)
    for config, match in (({**good, "paddings": "same"}, "'paddings' \\(did you mean 'padding'\\?\\)"),
                          ({**good, "stateful": True}, "stateful=True"),
                          ({**good, "kernel_size": [5, 5]}, "kernel_size=\\[5, 5\\] disagrees"),
                          ({**good, "strides": [1, 1, 1]}, "strides to be a positive int or 2"),
                          ({**good, "activation": {"class_name": 3}}, "unsupported Keras config activation"),
                          (None, "get_config\\(\\) dict, got NoneType")):
        with pytest.raises(ValueError, match=match):
            convlstm_from_keras([k, r, b], config)
    with pytest.raises(ValueError, match=r"missing: \['beta'\]"):
        from_tf1_layer_norm(-1, -1, "BTF", variables={"gamma": np.ones(3)})
    with pytest.raises(ValueError, match="unknown: \\['scael'\\]"):
        from_flax("LayerNorm", layout="BTC", variables={"params": {"scael": np.ones(3), "bias": np.zeros(3)}})
    with pytest.raises(ValueError, match="missing: \\['batch_stats'\\]"):
        from_flax("BatchNorm", layout="BC", variables={"params": {"scale": np.ones(3), "bias": np.zeros(3)}})
    with pytest.raises(ValueError, match="not both"):
        from_flax("GroupNorm", layout="BTC", num_channels=4, num_groups=2, group_size=2)
    with pytest.raises(ValueError, match=r"expected Keras groups to be an int, got 2\.5"):
        from_keras("GroupNormalization", {"groups": 2.5}, "BTC", num_channels=4)
    with pytest.raises(ValueError, match=r"expected Keras momentum in \[0, 1\].*got 1\.5"):
        from_keras("BatchNormalization", {"momentum": 1.5}, "BC", num_channels=4)
    tf1 = {"kernel": np.zeros((3, 3, 6, 16)), "bias": np.zeros(16), "W_ci": np.zeros((5, 5, 4)),
           "W_cf": np.zeros((5, 5, 4)), "W_co": np.zeros((5, 5, 4))}
    with pytest.raises(ValueError, match="are there but the arguments say they are unused"):
        from_tf1_convlstm_cell(tf1, normalize=False, peephole=False)
    with pytest.raises(ValueError, match="expected a TF1 ConvLSTM kernel"):
        from_tf1_convlstm_cell({**tf1, "kernel": np.zeros((3, 3, 6, 15))}, normalize=False)
    with pytest.raises(ValueError, match="W_ci, W_cf, W_co of one shape"):
        from_tf1_convlstm_cell({**tf1, "W_co": np.zeros((5, 4, 4))}, normalize=False)
    with pytest.raises(ValueError, match="the module instance LayerNorm"):
        ConvLSTM(2, 4, 3, norm=nn.LayerNorm(16))
    # the wrong kind of value where a config, variables, an axis or a norm module was meant
    from normrnn.norms import from_torch

    with pytest.raises(ValueError, match=r"expected the Keras config \(layer\.get_config\(\)\) to be a dict"):
        from_keras("LayerNormalization", [1, 2], "BTC", num_channels=4)
    with pytest.raises(ValueError, match=r"expected the Flax variables .* to be a dict, got list"):
        from_flax("LayerNorm", layout="BTC", variables=[1])
    for axis in ("x", [], [1.5], True):
        with pytest.raises(ValueError, match="expected axis to be an int or a list of ints"):
            from_keras("LayerNormalization", {"axis": axis}, "BTC", num_channels=4)
    assert from_keras("LayerNormalization", {"axis": np.array([-1])}, "BTC", num_channels=4).num_channels == 4
    with pytest.raises(ValueError, match="unsupported module Linear; expected LayerNorm"):
        from_torch(nn.Linear(3, 3), "BTC")


def test_export_refuses_lengths_in_one_line_and_takes_a_mask() -> None:
    import torch

    from normrnn.layers import LSTM

    layer = LSTM(3, 4)
    x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 3])
    with pytest.raises(ValueError, match=r"expected mask= under torch\.export, got lengths="):
        torch.export.export(layer, (x,), kwargs={"lengths": lengths})
    mask = torch.arange(5) < lengths[:, None]
    exported = torch.export.export(layer, (x,), kwargs={"mask": mask})
    torch.testing.assert_close(exported.module()(x, mask=mask)[0], layer(x, lengths=lengths)[0])
