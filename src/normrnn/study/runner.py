"""Run a study grid into a directory: skip finished runs, resume interrupted ones, append results safely."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from .._checks import first_line, one_of, positive_int
from .._io import atomic_write_text, check_out_dir
from ..data import create_dataset
from .config import RunSpec, StudyConfig, check_device, expand_grid, planned_runs, shard
from .cost import load_cost, write_cost
from .distributed import Rank, barrier, broadcast, current, env_world_size, init_from_env, launch, local_batch_size
from .factories import FactoryExit, batch, check_model, load_user_data, loss_function, no_exit
from .metrics import no_learning_guesses, prediction_metrics
from .pool import unimportable_factories, worker_threads
from .precision import PRECISION_FILE, load_precision, study_precision
from .results import append_result, load_results
from .train import Datasets, build_model, train_run

__all__ = [
    "EXECUTORS",
    "append_result",
    "check_factories",
    "check_out_dir",
    "check_runnable",
    "claim_holder",
    "load_datasets",
    "load_results",
    "reference_predictors",
    "row_hash",
    "run",
    "run_study",
    "threads_of_runs",
    "worker_threads",
]

CLAIM_OWNER = "claim.owner"  # beside a run's claim.lock: which process holds it
EXECUTORS = ("local", "ray")  # in this process (or a torchrun group), or one Ray task per run


def load_datasets(config: StudyConfig) -> Datasets:
    """The study's train, validation and test sets (the same for every run: ``data_seed`` fixes them): from the
    config's data factory, or the built-in ``dataset``."""
    if config.data is not None:
        return Datasets(*(load_user_data(config.data, split, config.data_seed) for split in ("train", "val", "test")))
    common = {"seed": config.data_seed, "size": config.size, "frames_in": config.frames_in,
              "frames_out": config.frames_out, "path": config.data_path}
    return Datasets(
        train=create_dataset(config.dataset, config.train_samples, split="train", **common),
        val=create_dataset(config.dataset, config.val_samples, split="val", **common),
        test=create_dataset(config.dataset, config.test_samples, split="test", **common),
    )


def reference_predictors(test: Dataset) -> dict[str, dict[str, float | None]]:
    """Test metrics of the predictors that learn nothing, the floor any model must beat: all-zero targets, the
    mean target value everywhere, and (frames in, frames out) the last given frame repeated."""
    x, y = batch(test, torch.arange(len(test)), torch.device("cpu"))
    return {name: {f"test_{k}": v for k, v in prediction_metrics(g, y).items()}
            for name, g in no_learning_guesses(x, y).items()}


def check_factories(config: StudyConfig) -> Datasets | None:
    """A user's model, data and loss factories, tried before any work: each resolves, the data loads, one batch
    goes through every variant (norm, topology, depth) of a model factory with the target's shape, and the loss is
    a scalar. One-line ``ValueError`` naming the factory otherwise. Returns the data it loaded (``None``: nothing to
    check), so that the study does not call a data factory twice."""
    if config.model is None and config.data is None and ":" not in config.loss:
        return None
    data = load_datasets(config)
    try:
        x, y = batch(data.train, torch.arange(min(config.batch_size, len(data.train))), torch.device("cpu"))
    except Exception as e:  # default_collate on samples of different shapes, or a __getitem__ that raises
        raise ValueError(f"data factory {config.data}: its first {config.batch_size} training samples do not make "
                         f"a batch: {type(e).__name__}: {first_line(e)}") from None
    spec, *others = {(s.norm, s.topology, s.depth): s for s in planned_runs(config)}.values()
    model = build_model(config, spec)
    if config.model is not None:
        pred = check_model(config.model, model, x, y)
        for other in others:  # a model that is wrong only for a later variant fails here too, not mid-study
            with torch.no_grad():
                check_model(f"{config.model} ({_variant(other)})", build_model(config, other), x, y, grad=False)
    else:
        try:
            with torch.no_grad():
                pred = model(x)
        except (ValueError, RuntimeError) as e:  # the user's data in normrnn's forecaster
            raise ValueError(f"the built-in forecaster cannot take data factory {config.data}'s batches of shape "
                             f"{tuple(x.shape)} (it expects (B, T, 1, H, W) frames; pass --model for other data): "
                             f"{first_line(e)}") from None
    try:
        with no_exit(f"loss {config.loss}"):
            value = loss_function(config.loss)(pred.float(), y)
    except FactoryExit:
        raise
    except Exception as e:
        raise ValueError(f"loss {config.loss} raised: {type(e).__name__}: {e}") from None
    if not (isinstance(value, torch.Tensor) and value.numel() == 1):
        got = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"loss {config.loss}: expected a scalar tensor (reduce it, e.g. .mean()), got {got}")
    if pred.grad_fn is not None and value.grad_fn is None:
        raise ValueError(f"loss {config.loss}: expected a scalar computed from the prediction (with a grad_fn), "
                         f"got one detached from it")
    return data


def _variant(spec: RunSpec) -> str:
    return f"norm={spec.norm!r}, topology={spec.topology!r}, depth={spec.depth}"


def row_hash(row: dict[str, Any], default: str | None) -> str | None:
    """The config hash a result row belongs to; rows written before hashes existed belong to ``default``."""
    return row.get("config_hash", default)


def check_runnable(config: StudyConfig, out: str | Path, *, nproc: int = 1, executor: str = "local",
                   runs: Iterable[RunSpec] | None = None, shard_of: tuple[int, int] | None = None) -> None:
    """Every check that needs no work: executor, process count, device, batch split, output directory, and the
    norms of ``runs`` (default: the grid's). ``StudyConfig`` itself has checked its values; these depend on this
    machine and this command."""
    one_of("executor", executor, EXECUTORS)
    positive_int("nproc", nproc)
    check_device(config.device)
    if executor == "ray" and nproc > 1:
        raise ValueError("expected executor='local' for data-parallel runs, got 'ray'; use one or the other")
    if shard_of is not None and shard_of[1] > 1 and config.lr_search == "halving" and len(config.lr_mults) > 1:
        raise ValueError("lr_search = 'halving' cannot be split into --shard parts: each shard would choose the later "
                         "seeds' learning rates from its own share of the first seed's runs; run it unsharded (one "
                         "machine: workers = N; a cluster: --executor ray), or use lr_search = 'grid'")
    if _pooled(config, executor, nproc, runs) and unimportable_factories(config):
        raise ValueError(f"workers = {config.workers} trains in separate processes, which cannot import "
                         f"{', '.join(unimportable_factories(config))} from your __main__; define it in a module "
                         "(or set workers = 1)")
    local_batch_size(config.batch_size, max(nproc, env_world_size()))  # under torchrun too
    if isinstance(out, str) and not out.strip():
        raise ValueError("expected --out to name a directory, got ''")
    check_out_dir(Path(out))
    check_data_path(config)
    check_memory(config)  # before check_norms_fit builds a cell of the config's width
    if config.model is None:
        norms = config.norms if runs is None else tuple(dict.fromkeys(s.norm for s in runs))
        check_norms_fit(dataclasses.replace(config, norms=norms) if norms else config)


def check_memory(config: StudyConfig) -> None:
    """The built-in data and model, where the study uses them, must fit in this machine's memory (a one-line error,
    not an allocator traceback after the study began). Lower bounds: the data as float32 in RAM; on the device, the
    deepest model's parameters with their gradients and AdamW moments (4 × depth·4·width·2·width·k² floats) and the
    gate pre-activations that autograd keeps for one training step, B·T·depth·4·width·(size/patch)² floats. A data
    or model factory's own data or model are not sized by these settings, so they count as 0."""
    gib = 2**30
    frames = config.frames_in + config.frames_out
    data, gates = 0, 0
    if config.data is None:
        data = (config.train_samples + config.val_samples + config.test_samples) * frames * config.size**2 * 4
    if config.model is None:
        depth, width = max(config.depths), config.width
        gates = config.batch_size * frames * depth * 4 * width * (config.size // config.patch)**2 * 4
        gates += 4 * depth * 4 * width * 2 * width * config.kernel_size**2 * 4  # parameters, gradients, AdamW
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): nothing to compare with
        return
    cuda = config.device.startswith("cuda")
    device = torch.cuda.get_device_properties(torch.device(config.device)).total_memory if cuda else ram
    if data + (0 if cuda else gates) > ram or gates > device:
        raise ValueError(f"expected the study to fit in memory: its data take {data / gib:.1f} GiB and one training "
                         f"step at least {gates / gib:.1f} GiB (gate activations batch_size × frames × depth × "
                         f"4·width × (size/patch)², and parameters), but this machine has {ram / gib:.1f} GiB of RAM"
                         + (f" and {device / gib:.1f} GiB on {config.device}" if cuda else "")
                         + "; lower train_samples, size, width, depths or batch_size")


def check_data_path(config: StudyConfig) -> None:
    """A dataset read from files needs its files, before anything is written."""
    if config.data is None and config.dataset in ("moving_mnist", "moving_mnist_idx"):
        if config.data_path is None or not os.path.exists(config.data_path):
            raise ValueError(f"expected data_path to name the files of dataset {config.dataset!r}, got "
                             f"{config.data_path!r}" + ("" if config.data_path is None else " (it does not exist)"))


def check_norms_fit(config: StudyConfig) -> None:
    """Every norm of the grid builds for the built-in model's width (``group:G`` must divide it), before any work."""
    from ..cells import ConvGRUCell, ConvLSTMCell

    cell = {"convlstm": ConvLSTMCell, "convgru": ConvGRUCell}[config.cell]
    for norm in config.norms:
        try:
            cell(config.width, config.width, 1, norm=norm, norm_inputs=config.norm_inputs,
                 norm_scope=config.norm_scope)
        except ValueError as e:
            raise ValueError(f"norms: {norm!r} does not fit width={config.width}: {e}") from None


def _check_directory(config: StudyConfig, out: Path) -> None:
    """Record the study in ``DIR/study.json``; refuse to mix a different study into an existing directory.

    Two witnesses: ``study.json`` names the keys that differ; the config hash in every result row catches a
    different study even when ``study.json`` is gone. The grid may grow (more seeds, norms, depths, LR
    multipliers): that adds runs without changing any finished one.
    """
    path = out / "study.json"
    resolved = json.loads(json.dumps({**config.to_dict(), **config.identity()}))  # as stored; with factory hashes
    if path.exists():
        try:
            previous = json.loads(path.read_text())
            if not isinstance(previous, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            raise ValueError(f"{path} is damaged ({e}); move it away to start this directory afresh, or use "
                             "another --out directory") from None
        if "bf16" not in previous and previous.get("precision") in ("fp32", "bf16"):  # written with precision only
            previous["bf16"] = previous["precision"] == "bf16"
        changed = sorted(k for k in config.identity() if previous.get(k) != resolved[k])
        if changed and load_results(out, warn=False):  # with no finished run, a corrected config may take over
            raise ValueError(f"{out} holds a different study (differs in {changed}); use another --out directory")
    others = {row_hash(r, config.config_hash) for r in load_results(out, warn=False)} - {config.config_hash}
    if others:
        raise ValueError(f"{out}/results.jsonl holds runs of a different study (config hash {', '.join(sorted(others))}"
                         f"; this config is {config.config_hash}); use another --out directory")
    if not path.exists() or json.loads(path.read_text()) != resolved:
        atomic_write_text(path, json.dumps(resolved, indent=2) + "\n")


def run_study(config: StudyConfig, out: str | Path, *, progress: bool = True,
              runs: Iterable[RunSpec] | None = None, nproc: int = 1, executor: str = "local",
              ray_address: str | None = None, tensorboard: bool = False,
              shard_of: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """Run every unfinished run of ``config`` (or of ``runs``, e.g. a shard) into ``out``; return their rows.

    Finished runs (already in ``results.jsonl``) are skipped; interrupted ones resume from their last
    epoch's checkpoint. Ctrl-C stops between atomic writes, so the directory stays consistent. With
    ``lr_search = "halving"`` the grid grows as its first-seed runs finish (:func:`expand_grid`), so the
    study runs in phases until nothing is left.

    Several processes may work on one directory at once (shards, a Ray cluster, or plain repeats of the same
    command): a run is claimed with a lock file before it starts, so none is trained twice concurrently, and
    :func:`append_result` keeps every run exactly once.

    Args:
        progress: show a progress bar. Default: ``True``.
        runs: the runs to do. Default: the whole grid of ``config``.
        nproc: train each run data-parallel in this many local processes (torchrun's launcher, DDP,
            cross-rank batch statistics). Under ``torchrun`` itself leave it at 1: every rank calls
            ``run_study`` and rank 0 alone writes. Default: ``1``.
        executor: ``"local"``, or ``"ray"`` to submit each run as a Ray task. Default: ``"local"``.
        ray_address: the Ray cluster to join. Default: ``None``, ``$RAY_ADDRESS`` or a new local instance.
        tensorboard: log each run to ``runs/ID/tensorboard`` (local executor). Default: ``False``.
        shard_of: ``(I, N)``: only shard I of N of the grid (:func:`~normrnn.study.config.shard`), phase by phase.
            Default: ``None``, every run.
    """
    out = Path(out)
    rank = current()
    runs = None if runs is None else list(runs)
    check_runnable(config, out, nproc=nproc, executor=executor, runs=runs,  # before any data or child process
                   shard_of=shard_of)
    if executor == "ray" and rank.active:
        raise ValueError("expected executor='local' for data-parallel runs, got 'ray'; use one or the other")
    if nproc > 1:
        if rank.active:
            raise ValueError(f"expected nproc=1 inside a process group of {rank.world_size}, got nproc={nproc}")
        _launch_workers(nproc, config, out, runs, shard_of, progress)
        return _rows(out, _phase(config, out, runs, shard_of))
    _run_phases(config, out, rank, runs, shard_of, executor=executor, progress=progress, ray_address=ray_address,
                tensorboard=tensorboard)
    # every rank leaves together: gloo torn down by one rank while another still finishes a collective can
    # abort that one ("terminate called without an active exception", seen once in CI)
    barrier(rank)
    return _rows(out, _phase(config, out, runs, shard_of))


def _run_phases(config: StudyConfig, out: Path, rank: Rank, runs: Iterable[RunSpec] | None,
                shard_of: tuple[int, int] | None, *, executor: str, progress: bool, ray_address: str | None,
                tensorboard: bool) -> None:
    """Train this process's unfinished runs, phase by phase (a halving search adds phases as runs finish)."""
    checked = None
    if rank.is_main:
        checked = check_factories(config)  # a broken factory fails here, before anything is written
        out.mkdir(parents=True, exist_ok=True)
        _check_directory(config, out)
    barrier(rank)
    if _pooled(config, executor, 1, runs) and not rank.active:
        _run_in_pool(config, out, runs, shard_of, loaded=checked, progress=progress, tensorboard=tensorboard)
        return
    data: Datasets | None = None
    tried: set[str] = set()
    while True:  # one pass per phase; a grid without halving has one
        todo = broadcast([s for s in _unfinished(out, _phase(config, out, runs, shard_of), config.config_hash)
                          if s.run_id not in tried], rank)
        if data is None:
            data = _prepare(config, out, rank, need_data=executor == "local" and bool(todo), whole=runs is None,
                            loaded=checked)
        if not todo:
            break
        tried |= {s.run_id for s in todo}  # a run another process holds is not waited for
        if executor == "ray":
            _run_on_ray(config, out, todo, progress=progress, address=ray_address)
        else:
            _run_locally(config, out, todo, data, progress=progress and rank.is_main, rank=rank,
                         tensorboard=tensorboard)


def _pooled(config: StudyConfig, executor: str, nproc: int, runs: list[RunSpec] | None) -> bool:
    """Whether the runs train in a local pool: ``workers > 1``, more than one run, and no other placement (Ray, or
    data-parallel processes, place the runs themselves and leave ``workers`` unused)."""
    several = runs is None or len(runs) > 1
    return config.workers > 1 and several and executor == "local" and nproc == 1 and env_world_size() == 1


def _run_in_pool(config: StudyConfig, out: Path, runs: list[RunSpec] | None, shard_of: tuple[int, int] | None, *,
                 loaded: Datasets | None, progress: bool, tensorboard: bool) -> None:
    """The study's runs in ``config.workers`` local processes (:mod:`normrnn.study.pool`), after this process has
    written what is decided once: the baselines, the precision and the cost table."""
    from .pool import run_pool

    def known() -> list[RunSpec]:
        return _phase(config, out, runs, shard_of)

    todo = _unfinished(out, known(), config.config_hash)
    _prepare(config, out, Rank(), need_data=False, whole=runs is None, loaded=loaded)  # the workers load their own
    if not todo:
        return
    bar = _progress(0, enabled=progress, unit="run")
    try:
        run_pool(config, out, runs, shard_of, total=lambda: len(known()), progress=bar, tensorboard=tensorboard,
                 done=lambda: len(known()) - len(_unfinished(out, known(), config.config_hash)))
    finally:
        bar.close()


def run_as_worker(config: StudyConfig, out: Path, runs: list[RunSpec] | None, shard_of: tuple[int, int] | None, *,
                  tensorboard: bool, poll: float) -> None:
    """One process of a local pool: train the longest unclaimed run of the study, again and again; when every
    unfinished run is claimed by another process, wait for one to free (a halving search adds runs as others finish,
    and a process that dies releases its claim); return when every run is finished."""
    data = load_datasets(config)
    while True:
        todo = sorted(_unfinished(out, _phase(config, out, runs, shard_of), config.config_hash), key=lambda s: -s.depth)
        if not todo:
            return
        if not any(_train_one(config, out, spec, data, rank=Rank(), tensorboard=tensorboard) for spec in todo):
            time.sleep(poll)


def run(config: StudyConfig, out: str | Path, *, model: Callable[..., Any] | str | None = None,
        data: Callable[..., Any] | str | None = None, loss: Callable[..., Any] | str | None = None,
        report: bool = True, **options: Any) -> Any:
    """Run the study ``config`` into ``out`` (resuming what is there) and write its report; returns the
    :class:`~normrnn.study.report.Report` (``report=False``: the result rows).

    ``model``, ``data`` and ``loss`` replace the config's factories (:mod:`normrnn.study.factories`): a function
    defined at module level, or a ``"module:function"`` string. ``options`` go to :func:`run_study`.

    Example::

        >>> from normrnn.study import PRESETS, run
        >>> def build(*, norm, topology, depth, seed, **settings): ...  # doctest: +SKIP
        >>> report = run(PRESETS["smoke"], "study-own", model=build)  # doctest: +SKIP
    """
    import dataclasses

    from .factories import factory_name
    from .report import write_report

    changes = {key: value if isinstance(value, str) else factory_name(value)
               for key, value in (("model", model), ("data", data), ("loss", loss)) if value is not None}
    config = dataclasses.replace(config, **changes)
    rows = run_study(config, out, **options)
    return write_report([out]) if report else rows


def _phase(config: StudyConfig, out: Path, runs: Iterable[RunSpec] | None,
           shard_of: tuple[int, int] | None) -> list[RunSpec]:
    """The runs known now: ``runs`` as given, or the grid grown by the finished rows; then this shard's share."""
    specs = list(expand_grid(config, load_results(out, warn=False)) if runs is None else runs)
    return specs if shard_of is None else shard(specs, *shard_of)


def _prepare(config: StudyConfig, out: Path, rank: Rank, *, need_data: bool, whole: bool,
             loaded: Datasets | None = None) -> Datasets | None:
    """The data (when this process trains, or must write the baselines or the cost table; ``loaded`` if the
    factory check already loaded it), ``baselines.json`` and, once per study, ``cost.json`` over the whole grid."""
    baselines = out / "baselines.json"
    need_cost = whole and rank.is_main and load_cost(out, config.config_hash) is None
    need_precision = rank.is_main and config.precision == "auto" and load_precision(out, config) is None
    if not (need_data or (rank.is_main and not baselines.exists()) or need_cost or need_precision):
        return None
    data = loaded if loaded is not None else load_datasets(config)
    if rank.is_main and not baselines.exists():
        atomic_write_text(baselines, json.dumps(reference_predictors(data.test), indent=2) + "\n")
    if rank.is_main:
        with threads_of_runs(config):
            precision = study_precision(config, data, out)  # auto: decided once, at the runs' thread count
            if need_cost:  # once per study, over the whole grid: the report's cost table
                write_cost(config, data, planned_runs(config), out, bf16=precision == "bf16")
    return data


@contextlib.contextmanager
def threads_of_runs(config: StudyConfig) -> Iterator[None]:
    """Torch's thread count inside the block set to what each run of ``config`` trains with (the study's threads
    split among its workers); unchanged when the study sets neither. Timings taken inside speak for the runs."""
    before = torch.get_num_threads()
    if config.threads is not None or config.workers > 1:
        torch.set_num_threads(worker_threads(config))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _rows(out: Path, specs: list[RunSpec]) -> list[dict[str, Any]]:
    wanted = {s.run_id for s in specs}
    return [row for row in load_results(out, warn=False) if row["run_id"] in wanted]


def _launch_workers(nproc: int, config: StudyConfig, out: Path, runs: Iterable[RunSpec] | None,
                    shard_of: tuple[int, int] | None, progress: bool) -> None:
    from torch.distributed.elastic.multiprocessing.api import SignalException

    try:
        launch(nproc, _ddp_worker, config, str(out), None if runs is None else list(runs), shard_of, progress)
    except SignalException as e:  # Ctrl-C reached the launcher, which stopped the workers
        raise KeyboardInterrupt(str(e)) from e


def _ddp_worker(config: StudyConfig, out: str, runs: list[RunSpec] | None, shard_of: tuple[int, int] | None,
                progress: bool) -> None:
    """One rank of ``run_study(..., nproc=N)``."""
    import torch.distributed as dist

    init_from_env(config.device)
    try:
        run_study(config, out, runs=runs, shard_of=shard_of, progress=progress)
    finally:
        dist.destroy_process_group()


def _unfinished(out: Path, specs: list[RunSpec], config_hash: str | None = None) -> list[RunSpec]:
    """The runs with no row of this study (``config_hash``; ``None``: of any study) in ``results.jsonl``."""
    done = {row["run_id"] for row in load_results(out, warn=False)
            if config_hash is None or row_hash(row, config_hash) == config_hash}
    return [s for s in specs if s.run_id not in done]


@contextlib.contextmanager
def _claim(out: Path, spec: RunSpec) -> Iterator[bool]:
    """Hold ``runs/ID/claim.lock`` while the run trains; yields False if another process holds it or if the
    run finished meanwhile."""
    from filelock import FileLock, Timeout

    (out / "runs" / spec.run_id).mkdir(parents=True, exist_ok=True)
    lock = FileLock(out / "runs" / spec.run_id / "claim.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    owner = out / "runs" / spec.run_id / CLAIM_OWNER
    try:
        atomic_write_text(owner, f"process {os.getpid()} on {socket.gethostname()}\n")
        yield bool(_unfinished(out, [spec]))  # another process may have finished it since the results were read
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def claim_holder(out: str | Path, run_id: str) -> str:
    """Who holds the claim on run ``run_id`` of the study in ``out`` ("another process" if it did not say)."""
    try:
        return (Path(out) / "runs" / run_id / CLAIM_OWNER).read_text().strip() or "another process"
    except OSError:
        return "another process"


def _train_one(config: StudyConfig, out: Path, spec: RunSpec, data: Datasets, *, rank: Rank,
               on_epoch: Callable[[int], None] | None = None, tensorboard: bool = False) -> bool:
    """Claim, train and record one run; returns False when another process has it or had it."""
    with contextlib.ExitStack() as stack:
        claimed = stack.enter_context(_claim(out, spec)) if rank.is_main else None
        if not broadcast(claimed, rank):
            return False
        precision = broadcast(_recorded_precision(config, out) if rank.is_main else None, rank)
        row = train_run(config, spec, data, out / "runs" / spec.run_id, on_epoch=on_epoch, rank=rank,
                        tensorboard=tensorboard, precision=precision)
        if rank.is_main:
            append_result(out, row)
    return True


def _recorded_precision(config: StudyConfig, out: Path) -> str:
    """The study's precision: as set, or ``auto``'s choice, which the study's set-up recorded before any run."""
    if config.precision != "auto":
        return config.precision
    recorded = load_precision(out, config)
    if recorded is None:
        raise ValueError(f"expected {out / PRECISION_FILE}, where precision = 'auto' records its choice; run the "
                         "study command again to decide it")
    return recorded


def _run_locally(config: StudyConfig, out: Path, todo: list[RunSpec], data: Datasets, *, progress: bool,
                 rank: Rank, tensorboard: bool = False) -> None:
    if config.threads is not None:
        torch.set_num_threads(max(1, config.threads // rank.world_size))  # the processes share the cores
    bar = _progress(len(todo) * config.epochs, enabled=progress)
    try:
        for i, spec in enumerate(todo):
            ticks = [0]

            def on_epoch(epoch: int, i: int = i, spec: RunSpec = spec, ticks: list[int] = ticks) -> None:
                ticks[0] += 1
                bar.update(1)
                bar.set_postfix_str(f"run {i + 1}/{len(todo)} {spec.run_id} epoch {epoch}/{config.epochs}")

            bar.set_postfix_str(f"run {i + 1}/{len(todo)} {spec.run_id}")
            _train_one(config, out, spec, data, rank=rank, on_epoch=on_epoch, tensorboard=tensorboard)
            bar.update(config.epochs - ticks[0])  # resumed or skipped epochs, or another process's run
    finally:
        bar.close()


@functools.lru_cache(maxsize=1)
def _cached_datasets(config: StudyConfig) -> Datasets:
    return load_datasets(config)


def _ray_task(config: StudyConfig, out: str, spec: RunSpec) -> bool:
    """One run inside a Ray worker; the worker keeps the data for the next run of the same study."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    return _train_one(config, Path(out), spec, _cached_datasets(config), rank=Rank())


def _run_on_ray(config: StudyConfig, out: Path, todo: list[RunSpec], *, progress: bool,
                address: str | None) -> None:
    """Submit each run as a Ray task (one GPU, or ``threads`` CPUs); the tasks write results themselves, so a
    driver that dies loses nothing finished. Every node must see ``out`` (a shared file system)."""
    try:
        import ray
    except ImportError as e:
        raise ValueError("expected Ray for executor='ray'; install it with: pip install 'normrnn[ray]'") from e
    started = not ray.is_initialized()
    if started:
        ray.init(address=address)
    resources = {"num_gpus": 1} if config.device == "cuda" else {"num_cpus": config.threads or 1}
    task = ray.remote(**resources)(_ray_task)
    pending = {task.remote(config, str(out.resolve()), spec): spec for spec in todo}
    bar = _progress(len(todo), enabled=progress and bool(todo), unit="run")
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(done[0])
            ray.get(done[0])  # re-raises the task's error
            bar.update(1)
            bar.set_postfix_str(spec.run_id)
    except BaseException:
        for ref in pending:
            ray.cancel(ref)
        raise
    finally:
        bar.close()
        if started:
            ray.shutdown()


def _progress(total: int, *, enabled: bool, unit: str = "epoch") -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, disable=not enabled, dynamic_ncols=True, desc="study")
