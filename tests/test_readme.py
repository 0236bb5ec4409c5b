"""The README's claims that are not Python blocks (those run in test_docs.py): its "Study your own model" commands
run as printed and its report excerpt has the real report's shape, its backend table is the registry's, and its
links into the site land on a heading."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, flags=re.S | re.M)
    assert match, f"the README has no section {title!r}"
    return match.group(1)


def _commands(section: str) -> list[list[str]]:
    (block,) = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line.split("  #")[0]) for line in lines if line.strip()]


def _table(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("|") and not line.startswith("|---")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    assert argv[:2] == ["normrnn", "study"], argv
    return subprocess.run([sys.executable, "-m", "normrnn", *argv[1:]], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})


def _swap(argv: list[str], flag: str, value: str) -> list[str]:
    i = argv.index(flag)
    return [*argv[: i + 1], value, *argv[i + 2 :]]


def test_own_model_commands_run_as_printed_and_the_excerpt_is_the_reports_shape(tmp_path) -> None:
    run, plan = _commands(_section("Study your own model"))
    # the plan command exactly as printed (its --out is never written): it checks the factories and trains nothing
    done = _run(_swap(plan, "--out", str(tmp_path / "plan")), ROOT)
    assert done.returncode == 0, done.stderr
    assert "Nothing was trained or written" in done.stdout and not (tmp_path / "plan").exists()
    # the study command with its own flags, on a smaller grid of the same TOML (the printed one takes 6½ min)
    toml = (ROOT / "examples" / "own_model.toml").read_text()
    small = tmp_path / "small.toml"
    small.write_text(re.sub(r"(?m)^(epochs|width|seeds|norms|topologies) = .*$", lambda m: {
        "epochs": "epochs = 1", "width": "width = 8", "seeds": "seeds = [0]", "norms": 'norms = ["layer"]',
        "topologies": 'topologies = ["stacked"]'}[m.group(1)], toml))
    done = _run(_swap(_swap(run, "--config", str(small)), "--out", str(tmp_path / "own")), ROOT)
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "own" / "report.md").read_text()
    best = re.search(r"### Best learning rate\n(.*?)\n### ", report, flags=re.S)
    assert best, "the report has no Best learning rate section"
    produced, excerpt = _table(best.group(1)), _table(_section("Study your own model"))
    assert excerpt[0] == produced[0]  # the same columns, in the same order
    assert [r[:3] for r in produced[1:]] == [["stacked", "2", "layer"]]
    assert {r[2] for r in excerpt[1:]} == {"none", "layer", "group:8"}  # own_model.toml's norms


def test_the_backend_table_is_the_registry() -> None:
    from normrnn.kernels import backend_names

    table = _table(_section("Gate backends"))
    assert table[0][0] == "backend"
    assert [row[0].strip("`") for row in table[1:]] == [n for n in backend_names() if n != "auto"]


def test_the_triton_row_says_what_the_backend_refuses() -> None:
    from normrnn.cells import ConvGRUCell, ConvLSTMCell
    from normrnn.kernels import get_backend

    triton = get_backend("triton")
    for norm in ("none", "layer", "group:2", "rms"):
        assert triton.unsupported(ConvLSTMCell(2, 4, 3, norm=norm)) is None, norm
    refused = [ConvGRUCell(2, 4, 3), ConvLSTMCell(2, 4, 3, norm="batch"), ConvLSTMCell(2, 4, 3, peephole=True),
               ConvLSTMCell(2, 4, 3, norm="layer", norm_cell="output")]
    for cell in refused:
        reason = triton.unsupported(cell)
        assert reason and "\n" not in reason, cell


@pytest.mark.parametrize("page, heading", re.findall(r"\]\((docs/[^)#]+)#([^)]+)\)", README))
def test_links_into_the_site_land_on_a_heading(page: str, heading: str) -> None:
    headings = re.findall(r"^#+ (.+)$", (ROOT / page).read_text(), flags=re.M)
    assert heading in {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
