"""``normrnn bench``: side-by-side timings, reported as ratios measured in one run.

- :mod:`.timing`: the engine (interleaved rounds, paired ratios, the check before timing);
- :mod:`.reference`: the naive ConvLSTM loop and the conv-only floor;
- :mod:`.norm_bench`: ``bench norms``; :mod:`.layers`: ``bench cells`` and ``bench layers``;
- :mod:`.profile`: ``bench profile``, where one training step's CPU time goes;
- :mod:`.output`: the table and the JSON file.
"""

from ..profiling import saved_tensor_bytes
from .layers import CELL_BENCH, CELL_BENCH_QUICK, LayerBenchConfig, bench_layers
from .norm_bench import NormBenchConfig, Variant, bench_norms, check_agreement
from .output import format_table, write_json
from .profile import ProfileRow, format_profile, profile_step
from .reference import ConvOnly, NaiveConvLSTM
from .timing import check_close, paired_ratios, time_interleaved, timing_row

__all__ = [
    "CELL_BENCH",
    "CELL_BENCH_QUICK",
    "ConvOnly",
    "LayerBenchConfig",
    "NaiveConvLSTM",
    "NormBenchConfig",
    "ProfileRow",
    "Variant",
    "bench_layers",
    "bench_norms",
    "check_agreement",
    "check_close",
    "format_profile",
    "format_table",
    "paired_ratios",
    "profile_step",
    "saved_tensor_bytes",
    "time_interleaved",
    "timing_row",
    "write_json",
]
