"""The wheel a user would ``pip install``: built from the source tree, installed into a fresh virtual environment
that cannot see the source, and used from the command line and from Python."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # processes, a site build or an interpreter: make test-fast skips them

_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out),
                           str(_ROOT)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0 and "No matching distribution found for setuptools" in done.stderr:
        pytest.skip("building needs setuptools from the package index, which this machine cannot reach")
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = out.glob("normrnn-*.whl")
    return path


def test_the_wheel_ships_its_types_and_no_tests(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "normrnn/py.typed" in names and "normrnn/norms/convert/flax.py" in names
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n or n.startswith("examples/")]


def test_the_wheel_installs_into_a_fresh_venv_and_runs(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    # torch and numpy come from this environment's site-packages as a plain path: its .pth files (among them the
    # editable install's finder, which would import the source tree) are not processed there
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    normrnn = venv / "bin" / "normrnn"

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert run(str(normrnn), "--version").strip() == "normrnn 0.2.0"
    assert "statistics   (B, T) = (4, 2)" in run(str(normrnn), "explain", "layer", "--layout", "BTF",
                                                  "--shape", "4,2,3")
    code = ("import normrnn, torch; from pathlib import Path\n"
            f"assert Path(normrnn.__file__).resolve().is_relative_to(Path(r'{venv}').resolve()), normrnn.__file__\n"
            "torch.manual_seed(0)\n"
            "y, _ = normrnn.ConvLSTM(1, 4, 3, norm='group:2')(torch.randn(2, 3, 1, 8, 8))\n"
            "ref = torch.nn.LSTM(3, 5, batch_first=True); lstm = normrnn.LSTM(3, 5)\n"
            "lstm.load_state_dict(ref.state_dict()); x = torch.randn(2, 4, 3)\n"
            "assert y.shape == (2, 3, 4, 8, 8) and torch.allclose(lstm(x)[0], ref(x)[0], atol=1e-6)\n"
            "print('ok')")
    assert run(str(python), "-c", code).strip() == "ok"
