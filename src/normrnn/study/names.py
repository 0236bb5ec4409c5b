"""The study's names, apart from its machinery: the baseline, the choices of each setting, the config's parts. A
leaf that imports nothing, so the report side (and anything else that needs a name) loads no training code."""

from __future__ import annotations

__all__ = ["BASELINE", "DEFAULT_NORMS", "GRID", "HEADS", "LR_SEARCHES", "NOT_RESULTS", "PARTS", "PRECISIONS",
           "SCHEDULES", "STUDY_NORMS", "TOPOLOGIES"]

TOPOLOGIES = ("stacked", "residual")  # the study's topologies: plain stacks, and each layer's input added to its output
DEFAULT_NORMS = ("none", "layer", "group:8", "recurrent_batch", "instance", "rms")
STUDY_NORMS = ("none", "layer", "group:8", "recurrent_batch")  # bias-only, per-sample, grouped, batch statistics
BASELINE = "none"  # bias-only: the reference of every comparison, cost ratio and answer in the report
HEADS = ("sigmoid", "linear")  # the forecaster's output: squashed into [0, 1], or left as is
SCHEDULES = ("onecycle", "cosine", "constant")
GRID = ("norms", "topologies", "depths", "seeds", "lr_mults", "lr_search")  # which runs; not how each run trains
LR_SEARCHES = ("grid", "halving")
PRECISIONS = ("fp32", "bf16", "auto")
NOT_RESULTS = ("name", "threads", "workers")  # a label and speed settings: they never change a run's numbers
# The config's parts: every field belongs to exactly one (tested). Code that needs a part takes it whole
# (StudyConfig.part; the model's ModelConfig.for_run), so a new model setting is a field here and its use in the model.
PARTS: dict[str, tuple[str, ...]] = {
    "data": ("data", "dataset", "data_path", "size", "frames_in", "frames_out", "train_samples", "val_samples",
             "test_samples", "data_seed", "fresh_train"),
    "model": ("model", "cell", "width", "kernel_size", "patch", "norm_inputs", "norm_scope", "forget_bias",
              "recurrent_init", "head", "model_version"),
    "optim": ("loss", "epochs", "batch_size", "lr", "weight_decay", "schedule", "warmup", "clip", "precision",
              "divergence_bound", "teacher_decay"),
    "grid": GRID,
    "run": ("name", "device", "threads", "workers"),  # where and how fast: never a run's numbers (but device)
}
