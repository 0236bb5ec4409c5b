"""``normrnn bench``: side-by-side timings, reported as ratios measured in one run.

- :mod:`.timing`: the engine (interleaved rounds, paired ratios, the check before timing);
- :mod:`.reference`: the naive ConvLSTM loop and the conv-only floor;
- :mod:`.norms`: ``bench norms``; :mod:`.layers`: ``bench cells`` and ``bench layers``;
- :mod:`.output`: the table and the JSON file.
"""

from ..profiling import saved_tensor_bytes
from .layers import CELLS, CELLS_QUICK, LayerBenchConfig, bench_layers
from .norms import NormBenchConfig, Variant, bench_norms, check_agreement
from .output import format_table, write_json
from .reference import ConvOnly, NaiveConvLSTM
from .timing import check_close, paired_ratios, time_interleaved, timing_row

__all__ = [
    "CELLS",
    "CELLS_QUICK",
    "ConvOnly",
    "LayerBenchConfig",
    "NaiveConvLSTM",
    "NormBenchConfig",
    "Variant",
    "bench_layers",
    "bench_norms",
    "check_agreement",
    "check_close",
    "format_table",
    "paired_ratios",
    "saved_tensor_bytes",
    "time_interleaved",
    "timing_row",
    "write_json",
]
