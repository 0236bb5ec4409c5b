"""Every check a study command makes before any work: the factories on one batch, the executor and process count,
the device, the output directory, memory, data files and the grid's norms. One-line ``ValueError`` messages; nothing
is written."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .._checks import first_line, one_of, positive_int
from .._io import check_out_dir
from ..data import GENERATED, create_dataset
from .config import StudyConfig
from .datasets import Datasets, load_datasets
from .distributed import env_world_size, local_batch_size
from .factories import check_model, first_batch, loss_function
from .grid import RunSpec, planned_runs
from .model import build_model
from .pool import unimportable_factories
from .validation import check_device

__all__ = ["EXECUTORS", "check_builtin_data", "check_factories", "check_memory", "check_norms_fit", "check_runnable",
           "pooled"]

EXECUTORS = ("local", "ray")  # in this process (or a torchrun group), or one Ray task per run


def check_factories(config: StudyConfig) -> Datasets | None:
    """A user's model, data and loss factories, tried before any work: each resolves, the data loads, one batch
    goes through every variant (norm, topology, depth) of a model factory with the target's shape, and the loss is
    a scalar. One-line ``ValueError`` naming the factory otherwise. Returns the data it loaded (``None``: nothing to
    check), so that the study does not call a data factory twice."""
    if config.model is None and config.data is None and ":" not in config.loss:
        return None
    data = load_datasets(config)
    try:
        x, y = first_batch(data.train, config.batch_size, torch.device("cpu"))
    except Exception as e:  # default_collate on samples of different shapes, or a __getitem__ that raises
        raise ValueError(f"data factory {config.data}: its first {config.batch_size} training samples do not make "
                         f"a batch: {type(e).__name__}: {first_line(e)}") from None
    spec, *others = {(s.norm, s.topology, s.depth): s for s in planned_runs(config)}.values()
    model = build_model(config, spec, train=data.train)
    if config.model is not None:
        device = torch.device(config.device)
        pred = check_model(config.model, model, x, y, device=device)
        for other in others:  # a model that is wrong only for a later variant fails here too, not mid-study
            with torch.no_grad():
                check_model(f"{config.model} ({_variant(other)})", build_model(config, other, train=data.train), x,
                            y, grad=False, device=device)
    else:
        try:
            pred = model(x)
        except (ValueError, RuntimeError) as e:  # the user's data in normrnn's forecaster
            raise ValueError(f"the built-in forecaster cannot take data factory {config.data}'s batches of shape "
                             f"{tuple(x.shape)} (it expects (B, T, 1, H, W) frames; pass --model for other data): "
                             f"{first_line(e)}") from None
    _check_loss(config.loss, pred, y)
    return data


def _check_loss(loss: str, pred: torch.Tensor, y: torch.Tensor) -> None:
    """The loss as a training step calls it: on the prediction with its graph, then backward through both (a loss
    that works only on detached tensors, e.g. through ``.numpy()``, fails here, not in the cost table)."""
    value = loss_function(loss)(pred.float(), y)  # a one-line error if it raises or is not a scalar
    if pred.grad_fn is not None and value.grad_fn is None:
        raise ValueError(f"loss {loss}: expected a scalar computed from the prediction (with a grad_fn), "
                         f"got one detached from it")
    if value.grad_fn is not None:
        try:
            value.backward()
        except RuntimeError as e:
            raise ValueError(f"loss {loss}: its backward pass raised: {first_line(e)}") from None


def _variant(spec: RunSpec) -> str:
    return f"norm={spec.norm!r}, topology={spec.topology!r}, depth={spec.depth}"


def check_runnable(config: StudyConfig, out: str | Path, *, nproc: int = 1, executor: str = "local",
                   runs: Sequence[RunSpec] | None = None, shard_of: tuple[int, int] | None = None) -> None:
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
    if pooled(config, executor, nproc, runs) and unimportable_factories(config):
        raise ValueError(f"workers = {config.workers} trains in separate processes, which cannot import "
                         f"{', '.join(unimportable_factories(config))} from your __main__; define it in a module "
                         "(or set workers = 1)")
    local_batch_size(config.batch_size, max(nproc, env_world_size()))  # under torchrun too
    if isinstance(out, str) and not out.strip():
        raise ValueError("expected --out to name a directory, got ''")
    check_out_dir(Path(out))
    check_builtin_data(config)
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


def check_builtin_data(config: StudyConfig) -> None:
    """The built-in dataset can be made, before anything is written: a dataset read from files needs its files; a
    generated one is generated once, one sequence, so that its own checks (a canvas larger than the digits, the
    digits it reads installed) fail here and not after ``study.json`` is written."""
    if config.data is not None:
        return
    if config.dataset in ("moving_mnist", "moving_mnist_idx"):
        if config.data_path is None or not os.path.exists(config.data_path):
            raise ValueError(f"expected data_path to name the files of dataset {config.dataset!r}, got "
                             f"{config.data_path!r}" + ("" if config.data_path is None else " (it does not exist)"))
    elif config.dataset in GENERATED:
        create_dataset(config.dataset, 1, split="train", seed=config.data_seed, size=config.size,
                       frames_in=config.frames_in, frames_out=config.frames_out)


def check_norms_fit(config: StudyConfig) -> None:
    """Every norm of the grid builds for the built-in model's width (``group:G`` must divide it), before any work."""
    from ..cells import cell_kind

    cell = cell_kind(config.cell).cell
    for norm in config.norms:
        try:
            cell(config.width, config.width, 1, norm=norm, norm_inputs=config.norm_inputs,
                 norm_scope=config.norm_scope)
        except ValueError as e:
            raise ValueError(f"norms: {norm!r} does not fit width={config.width}: {e}") from None


def pooled(config: StudyConfig, executor: str, nproc: int, runs: Sequence[RunSpec] | None) -> bool:
    """Whether the runs train in a local pool: ``workers > 1``, more than one run, and no other placement (Ray, or
    data-parallel processes, place the runs themselves and leave ``workers`` unused)."""
    several = len(planned_runs(config) if runs is None else runs) > 1
    return config.workers > 1 and several and executor == "local" and nproc == 1 and env_world_size() == 1
