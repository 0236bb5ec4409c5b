import json
import os
import subprocess
import sys

import pytest
import torch

from normrnn import cli
from normrnn.cli import main


def test_explain_command_prints_statistics(capsys):
    assert main(["explain", "layer", "--layout", "BTF", "--shape", "4,2,3"]) == 0
    out = capsys.readouterr().out
    assert "statistics   (B, T) = (4, 2)" in out
    assert "== group:1 over (F,)" in out


def test_explain_with_reduce(capsys):
    assert main(["explain", "layer", "--layout", "BTF", "--shape", "4,2,3", "--reduce", "TF"]) == 0
    assert "statistics   (B,) = (4,)" in capsys.readouterr().out


def test_bad_input_is_a_clear_error_and_exit_code_2(capsys):
    assert main(["explain", "group:5", "--layout", "BCHW", "--shape", "2,8,4,4"]) == 2
    err = capsys.readouterr().err
    assert "error: expected num_groups to divide num_channels=8, got num_groups=5" in err
    assert main(["explain", "layer"]) == 2
    assert "expected SPEC, --layout and --shape" in capsys.readouterr().err


def test_bench_norms_small_run_checks_and_reports_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "norms", "--shape", "2,64,4,4", "--rounds", "1", "--repeats", "1", "--warmup", "0",
            "--json", str(out)]
    assert main(args) == 0
    payload = json.loads(out.read_text())
    rows = payload["rows"]
    assert {r["mode"] for r in rows} == {"fwd", "fwd+bwd"}
    variants = {r["variant"] for r in rows}
    assert {"normrnn layer", "normrnn group:4", "normrnn group:32", "normrnn batch (train)"} <= variants
    for r in rows:
        assert (r["ratio"] is None) == (r["reference"] is None)
        assert r["min_ms"] <= r["median_ms"] <= r["max_ms"]
        if r["ratio"] is not None:
            assert r["ratio_min"] <= r["ratio"] <= r["ratio_max"]
    assert "normrnn layer" in capsys.readouterr().out


@pytest.mark.slow
def test_console_script_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "normrnn", "explain", "batch", "--layout", "BTCHW",
                             "--shape", "2,3,4,5,5"], capture_output=True, text=True, check=True)
    assert "statistics   (C,) = (4,)" in result.stdout


@pytest.mark.slow
def test_long_commands_run_with_passive_openmp_wait(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execve", lambda path, args, env: calls.append((path, args, env)))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(sys, "argv", ["normrnn", "--debug", "train", "--preset", "smoke"])
    monkeypatch.setattr(cli, "main", lambda argv: 0)  # what runs after the (faked) exec is not this test's subject
    cli.entry()
    ((path, args, env),) = calls
    assert path == sys.executable and args[1:] == ["-m", "normrnn", "--debug", "train", "--preset", "smoke"]
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert not cli.passive_wait_needed(["explain", "layer"], {})  # short commands keep the default
    assert not cli.passive_wait_needed(["study"], {"OMP_WAIT_POLICY": "ACTIVE"})  # the user's choice stands
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-m", "normrnn", "train", "--help"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "usage: normrnn train" in done.stdout
    # the command line's own process has not loaded torch yet: it sets the policy for itself, with no restart
    probe = ("import os, sys; sys.argv = ['normrnn', 'study', '--plan']; from normrnn import cli; "
             "cli.main = lambda argv: print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules) or 0; "
             "cli.os.execve = None; cli.entry()")
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["PASSIVE", "False"], done.stderr[-2000:]


def test_bench_layers_small_run_checks_against_the_naive_loop(tmp_path, capsys):
    out = tmp_path / "layers.json"
    args = ["bench", "layers", "--batch", "2", "--in-channels", "2", "--hidden-channels", "8", "--size", "6,6",
            "--steps", "3", "--norms", "none,layer,recurrent_batch:3", "--rounds", "1", "--warmup", "0",
            "--json", str(out)]
    assert main(args) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["norm"] for r in rows] == ["none", "layer", "recurrent_batch:3", rows[-1]["norm"]]
    assert rows[0]["ratio"] == 1.0  # bias-only against itself, same round
    assert all(r["shape"] == [2, 3, 2, 6, 6] and r["ratio_vs_naive"] > 0 for r in rows)
    assert "x naive" in capsys.readouterr().out
    assert main(["bench", "layers", "--norms", "layer"]) == 2
    assert "'none'" in capsys.readouterr().err


def test_bench_cells_quick_writes_valid_json(tmp_path, capsys):
    out = tmp_path / "cells.json"
    assert main(["bench", "cells", "--quick", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    names = [r["norm"] for r in rows]
    assert names[:5] == ["none", "layer", "layer fused", "group:8", "group:8 fused"]
    assert {"ratio_vs_floor", "ratio_vs_naive", "activation_mb", "memory_ratio"} <= set(rows[0])
    fused = {r["norm"]: r["activation_mb"] for r in rows}
    assert fused["layer fused"] < fused["layer"]  # the fused block saves less for backward (bytes, not time)
    assert "none, projection=hoisted" in names  # checked equal to the default (joint on CPU) before timing
    assert "x floor" in capsys.readouterr().out


def test_bench_cells_rejects_unknown_backends_and_missing_devices(capsys):
    assert main(["bench", "cells", "--quick", "--backends", "eager,warp"]) == 2
    from normrnn.kernels import backend_names

    listed = ", ".join(map(repr, backend_names()))  # the registry's names: 'auto', 'eager', 'compiled', ...
    assert f"expected backend to be one of {listed}, got 'warp'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["bench", "cells", "--quick", "--device", "cuda"]) == 2
        assert "torch sees none" in capsys.readouterr().err


def test_a_missing_extra_is_one_line_naming_the_pip_install_before_any_work(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    gone = {"matplotlib", "tensorboard"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in gone else real(name, *a))
    out = tmp_path / "study"
    assert main(["study", "--preset", "smoke", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout: an editable install
    assert err.count("\n") == 1 and "matplotlib is not installed" in err
    assert f'cd {root} && pip install -c constraints.txt ".[study]"' in err
    assert not out.exists()  # nothing was trained or written
    gone.discard("matplotlib")
    assert main(["study", "--preset", "smoke", "--tensorboard", "--out", str(out)]) == 2
    assert '".[tensorboard]"' in capsys.readouterr().err


def test_the_install_hint_follows_how_normrnn_was_installed(tmp_path):
    from normrnn._checks import install_hint

    site = tmp_path / "site-packages" / "normrnn"  # a wheel's install: no checkout around it
    assert install_hint("study", ["matplotlib", "tqdm"], site) == "pip install matplotlib tqdm"
    checkout = tmp_path / "repo"
    (checkout / "src" / "normrnn").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    (checkout / "constraints.txt").write_text("")
    assert install_hint("ray", ["ray"], checkout / "src" / "normrnn") == (
        f'cd {checkout} && pip install -c constraints.txt ".[ray]"')
    assert main(["explain", "layer", "--layout", "BTF", "--shape", "4,2,3"]) == 0  # needs no extra


def test_misspelled_names_get_a_suggestion(tmp_path, capsys):
    assert main(["study", "--preset", "smok", "--plan", "--out", str(tmp_path)]) == 2
    assert "(did you mean 'smoke'?)" in capsys.readouterr().err
    assert main(["explain", "layr", "--layout", "BTF", "--shape", "4,2,3"]) == 2
    assert "(did you mean 'layer'?)" in capsys.readouterr().err
    toml = tmp_path / "study.toml"
    toml.write_text('norm = ["layer"]\n')
    assert main(["study", "--config", str(toml), "--plan", "--out", str(tmp_path)]) == 2
    assert "(did you mean 'norms'?)" in capsys.readouterr().err
    toml.write_text('schedule = "cosin"\n')
    assert main(["study", "--config", str(toml), "--plan", "--out", str(tmp_path)]) == 2
    assert "(did you mean 'cosine'?)" in capsys.readouterr().err
    toml.write_text('norms = ["zzz"]\n')
    assert main(["study", "--config", str(toml), "--plan", "--out", str(tmp_path)]) == 2
    assert "did you mean" not in capsys.readouterr().err  # nothing close: no guess


def test_a_command_checks_its_study_once(tmp_path, monkeypatch):
    """The CLI runs every check before it joins a process group, and the study does not run them again."""
    from helpers import cli
    from normrnn.study import preflight, runner

    calls = []
    original = preflight.check_runnable

    def counted(*args, **kwargs):
        calls.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(preflight, "check_runnable", counted)
    monkeypatch.setattr(runner, "check_runnable", counted)
    ran = cli("train", "--preset", "smoke", "--norm", "none", "--depth", "1", "--out", str(tmp_path / "t"),
              "--no-progress")
    assert ran.returncode == 0, ran.stderr
    assert calls == [str(tmp_path / "t")]


def test_a_registered_subcommand_is_parsed_run_and_documented(monkeypatch, capsys):
    """A new subcommand is one module: its registration alone puts it in the parser, its handler and its --help."""
    from normrnn.cli import build_parser, registry

    monkeypatch.setattr(registry, "SUBCOMMANDS", dict(registry.SUBCOMMANDS))  # the test's registration is its own

    def hello(args) -> int:
        print(f"hello {args.who}")
        return 0

    @registry.subcommand("hello", order=0, examples=("normrnn hello world",))
    def _add(sub) -> None:
        p = sub.add_parser("hello", help="say hello")
        p.add_argument("who")
        p.set_defaults(func=hello)

    monkeypatch.setattr("normrnn.cli.parser.SUBCOMMANDS", registry.SUBCOMMANDS)
    assert main(["hello", "world"]) == 0 and capsys.readouterr().out == "hello world\n"
    choices = build_parser()._subparsers._group_actions[0].choices
    assert "examples:\n  normrnn hello world" in choices["hello"].epilog
    assert next(iter(choices)) == "hello"  # order=0: first in normrnn --help


class _ClosedPipe:
    """A stdout whose reader has gone away, as after ``| head -n 1``."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("argv", [["explain", "layer", "--layout", "BTF", "--shape", "4,2,3"],
                                  ["report", "results/converge", "--out", "OUT"]])
def test_a_closed_pipe_ends_the_command_quietly(argv, monkeypatch, capsys, tmp_path):
    argv = [str(tmp_path) if a == "OUT" else a for a in argv]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(argv) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_explain_piped_to_head_prints_no_error():
    done = subprocess.run(f"{sys.executable} -m normrnn explain --tour | head -n 1", shell=True, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.count("\n") == 1 and done.stderr == "", done.stderr


def test_a_misspelled_factory_gets_a_suggestion_and_no_shadowing_hint(tmp_path, capsys):
    from helpers import assert_one_line_error, cli

    (tmp_path / "mymodels5.py").write_text("def build(*, norm, topology, depth, seed): ...\n")
    ran = cli("study", "--preset", "smoke", "--model", "mymodels5:biuld", "--plan", cwd=tmp_path)
    assert_one_line_error(ran, "'mymodels5' has no 'biuld' (did you mean 'build'?)")
    assert "shadow" not in ran.stderr


def test_norms_lists_the_registries_with_what_each_spec_reduces(capsys):
    from normrnn.kernels import backend_names
    from normrnn.norms import LayerNorm
    from normrnn.norms.explaining import explain
    from normrnn.norms.layout import LETTERS
    from normrnn.norms.registry import NormEntry, norm_entries, registered_norm

    class PluginNorm(LayerNorm):
        """A plugin's norm: per step, over the features."""

    with registered_norm(NormEntry("plugin_layer", PluginNorm, gate_groups=lambda arg, C: 1, grouped_as="group")):
        assert main(["norms"]) == 0
        out = capsys.readouterr().out
    for entry in [*norm_entries(), NormEntry("plugin_layer", PluginNorm)]:  # the plugin too
        assert f"\n  {entry.usage}" in out, entry.name
    assert "A plugin's norm: per step, over the features" in out
    for letter in LETTERS:
        assert f"\n  {letter}  " in out
    for name in backend_names():
        assert name == "auto" or f"\n  {name} " in out
    reduce = explain("group:4", layout="BTCHW", shape=(2, 3, 8, 4, 4)).reduce  # what explain says, as the table
    row = next(line for line in out.splitlines() if line.startswith("  group[:G]"))
    assert row.split()[1:1 + len(reduce)] == [f"{c}," for c in reduce[:-1]] + [reduce[-1]]
    assert main(["norms", "--layout", "BTF"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("  layer"))
    assert row.split()[1:4] == ["F", "B,", "T"]  # reduces the features, per sample and step
