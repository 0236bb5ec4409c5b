import pytest
from torch import nn

from normrnn import explain
from normrnn.norms.explaining import parse_shape, tour


def _verdicts(e):
    return {eq.label: eq.holds for eq in e.equivalences}


def test_seed_sequence_layer_norm_has_statistics_per_step():
    e = explain("layer", layout="BTF", shape=(4, 2, 3))
    assert (e.stats_letters, e.stats_shape) == ("BT", (4, 2))
    assert (e.param_letters, e.param_shape) == ("C", (3,))
    assert "statistics   (B, T) = (4, 2)" in str(e)
    verdicts = _verdicts(e)
    assert verdicts["group:1 over (F,)"] is True
    assert verdicts["layer over (T, F)"] is False  # TF1's default reduces time too
    assert verdicts["group:1 over (T, F)"] is False  # TFA #2143


def test_seed_image_layer_norm_has_statistics_per_sample():
    e = explain("layer", layout="BHWC", shape=(4, 2, 2, 3))
    assert (e.stats_letters, e.stats_shape) == ("B", (4,))
    assert _verdicts(e)["layer over (C,)"] is False  # Keras LayerNormalization(axis=-1) is per pixel


def test_group_one_equals_layer_over_chw_but_not_over_c():
    e = explain("group:1", layout="BCHW", shape=(4, 3, 5, 5))
    verdicts = _verdicts(e)
    assert verdicts["layer over (C, H, W)"] is True
    assert verdicts["batch over (B, H, W)"] is False
    e = explain("group:3", layout="BCHW", shape=(4, 3, 5, 5))
    assert _verdicts(e)["instance over (H, W)"] is True  # one channel per group is instance norm
    assert e.stats_letters == "BG"


def test_explain_groups_over_time_and_kernel():
    e = explain("group:2", layout="BTCHW", shape=(2, 3, 4, 5, 5), reduce="TCHW")
    assert e.stats_shape == (2, 2) and e.count == 3 * 2 * 25
    assert e.kernel.startswith("permute to BCTHW")


def test_explain_batch_none_and_recurrent():
    assert explain("batch", layout="BTF", shape=(4, 2, 3)).stats_letters == "C"
    assert "unchanged" in str(explain("none", layout="BTF", shape=(4, 2, 3)))
    e = explain("recurrent_batch:5", layout="BTF", shape=(4, 8, 3))
    assert (e.stats_letters, e.stats_shape) == ("TC", (5, 3))


def test_explain_errors():
    with pytest.raises(ValueError, match="expected a shape with 3 sizes"):
        explain("layer", layout="BTF", shape=(4, 2))
    with pytest.raises(ValueError, match="expected a shape such as"):
        parse_shape("4,a")
    with pytest.raises(ValueError, match="unknown norm spec"):
        explain("lyer", layout="BTF", shape="4,2,3")


def test_tour_reproduces_the_tensorflow_printouts():
    text = tour()
    assert "max |GN(1) - LN(F)| = 2.3092" in text
    assert "running mean 0.25, running var 1.06667" in text
    assert "running mean 0.025, running var 1.0025" in text
    diffs = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if ", printed:" in line]
    assert len(diffs) == 2 and max(diffs) < 2e-6
    assert "Seed" not in text and "seed" not in text  # the tour speaks of the questions, not of our documents


def test_explain_converts_torch_modules_and_rejects_others():
    e = explain(lambda c, **kw: nn.GroupNorm(2, c), layout="BCHW", shape=(2, 8, 4, 4))
    assert e.stats_letters == "BG" and e.stats_shape == (2, 2)
    assert explain(nn.BatchNorm2d, layout="BCHW", shape=(2, 8, 4, 4)).stats_letters == "C"
    with pytest.raises(ValueError, match=r"explain needs a normrnn norm or a convertible torch\.nn norm"):
        explain(lambda c, **kw: nn.Linear(c, c), layout="BC", shape=(2, 8))
