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


@pytest.mark.slow
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


CONVERGE = ROOT / "results" / "converge"  # the converge study's rows and timings, as it ran for the README


STUDIES = {  # the committed studies the README reports: rows, config hash, depths, the README section
    "converge": (72, "0ce69f350142", (1, 4, 8), "Does normalization matter in stacked ConvLSTMs?"),
    "tuned": (192, None, (1, 2, 4, 8), "Does normalization matter in stacked ConvLSTMs?"),
    "predrnn": (24, "64294afe2556", (2, 4), "PredRNN: does normalization matter in its stacked ST-LSTM?"),
}


def _best(name: str) -> dict[tuple[str, str, int], dict]:
    from normrnn.study.aggregate import aggregate, main_variants
    from normrnn.study.results import load_results

    rows = load_results(ROOT / "results" / name)
    count, config_hash, _, _ = STUDIES[name]
    assert len(rows) == count and len({r["config_hash"] for r in rows}) == 1
    assert config_hash is None or rows[0]["config_hash"] == config_hash
    return {(a.topology, a.norm, a.depth): a for a in main_variants(aggregate(rows))}


@pytest.mark.parametrize("name", list(STUDIES))
def test_the_readme_answer_tables_are_the_committed_studys(name: str) -> None:
    """Every cell of the README's test-MSE table of a study is the committed rows' mean ± 95% CI at its best
    multiplier."""
    from normrnn.study.tables import fmt

    best, (_, _, depths, title) = _best(name), STUDIES[name]
    section = _section(title)
    table = _table(section.split(f"<!-- {name} -->\n")[1].split("\n\n")[0])
    assert table[0] == ["topology", "norm", *(f"depth {d}" for d in depths)]
    assert len(table) == 1 + len({(t, n) for t, n, _ in best})
    for topology, label, *cells in table[1:]:
        norm = label.split(" ")[0]
        for depth, cell in zip(depths, cells, strict=True):
            a = best[topology, norm, depth]
            assert cell == f"{fmt(a.mean('test_mse'), a.ci('test_mse'))} (×{a.lr_mult:g})", (topology, norm, depth)


def test_the_converge_plan_was_within_a_quarter_of_its_wall_time() -> None:
    """``--plan``'s estimate, recomputed from the step times it printed before the study ran, is within 25% of the
    wall time the study then took here (``timing.json``: start to report, pauses subtracted)."""
    import json

    from normrnn.study.grid import planned_runs
    from normrnn.study.plan import estimate_seconds
    from normrnn.study.presets import PRESETS

    text = (CONVERGE / "plan.txt").read_text()
    step_s = {(n, t, int(d)): float(s) for n, t, d, s in
              re.findall(r"^(\S+), (\S+), (\d+) +([\d.]+) +\d+ +[\d.]+$", text, flags=re.M)}
    shared = float(re.search(r"each step × ([\d.]+) slower", text).group(1))
    config = PRESETS["converge"]
    assert len(step_s) == 18  # 3 norms × 2 topologies × 3 depths
    sizes = (config.train_samples, config.val_samples, config.test_samples)
    estimate = estimate_seconds(config, planned_runs(config), step_s, sizes, shared=shared)
    printed = float(re.search(r"estimated total: (\d+) min", text).group(1))
    assert abs(estimate / 60 - printed) <= 1  # the same model as the plan's (its step times were rounded)
    wall = json.loads((CONVERGE / "timing.json").read_text())["wall_s"]
    assert abs(estimate / wall - 1) <= 0.25, (estimate, wall)


@pytest.mark.parametrize("name", list(STUDIES))
def test_the_readme_quotes_each_studys_findings_as_its_report_writes_them(name: str, tmp_path) -> None:
    """The README's findings block is the Findings section that ``normrnn report results/NAME`` writes, word for
    word: the claims are generated from the rows, not paraphrased."""
    from normrnn.study import write_report

    block = re.search(rf"<!-- findings:{name} -->\n(.*?)\n<!-- /findings:{name} -->", README, flags=re.S)
    assert block, f"the README has no findings block for {name}"
    report = write_report([ROOT / "results" / name], tmp_path)
    assert report.findings == "### Findings\n\n" + block.group(1)
    assert (tmp_path / "findings.json").exists()


def _plan_pairs(commands: list[list[str]]) -> list[tuple[list[str], list[list[str]]]]:
    """Each ``--plan`` command with the commands beside it that train."""
    runs = [c for c in commands if "--plan" not in c]
    return [(c, runs) for c in commands if "--plan" in c]


def test_every_plan_example_plans_the_study_beside_it() -> None:
    """A ``--plan`` line is its study's command plus ``--plan``, flag for flag: one that left out ``--data`` planned
    another study (another config hash) than the line above it trained."""
    from normrnn.cli.study import _STUDY_EXAMPLES

    blocks = [[shlex.split(line.split("  #")[0]) for line in block.replace("\\\n", " ").splitlines() if line.strip()]
              for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S)]
    blocks.append([shlex.split(line.split("  #")[0]) for line in _STUDY_EXAMPLES])
    pairs = [pair for block in blocks for pair in _plan_pairs([c for c in block if c[:2] == ["normrnn", "study"]])]
    assert len(pairs) >= 2  # the README's own-model block and study --help
    for plan, runs in pairs:
        without = [a for a in plan if a != "--plan"]
        def flags(argv: list[str]) -> list[tuple[str, str]]:  # (flag, value) pairs, in any order
            return sorted(zip(argv[::2], argv[1::2], strict=True))

        assert any(flags(without) == flags(r) for r in runs), plan


def test_the_first_screen_says_what_normrnn_is_then_the_two_commands() -> None:
    title, intro, commands = README.split("\n\n")[:3]
    assert title == "# normrnn"
    assert intro.startswith("normrnn is ") and intro.count(". ") == 0 and intro.endswith(".")  # one sentence
    assert commands.startswith("```sh\nmake demo") and "\nmake test" in commands
