import pytest
import torch

from normrnn.norms.layout import Layout


def test_parse_canonicalizes_feature_alias_and_keeps_spelling():
    layout = Layout.parse("btf")
    assert layout.letters == "BTC"
    assert layout.spelled == "BTF"
    assert layout.dim("C") == 2
    assert layout.spell("BC") == "BF"


@pytest.mark.parametrize(
    ("text", "message"),
    [("BXC", "unknown letters"), ("BCC", "repeats"), ("BCF", "repeats"), ("THW", "no batch"), ("BTHW", "no channels"),
     ("", "expected a layout")],
)
def test_bad_layouts_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        Layout.parse(text)


def test_axes_are_put_in_layout_order_and_unknown_letters_rejected():
    layout = Layout.parse("BTCHW")
    assert layout.axes("whc") == "CHW"
    with pytest.raises(ValueError, match=r"names axes \['D'\] that are not in layout 'BTCHW'"):
        layout.axes("DHW")


def test_check_reports_rank_and_channels():
    layout = Layout.parse("BTF")
    with pytest.raises(ValueError, match=r"expected a 3-D input for layout 'BTF', got a 2-D input of shape \(4, 3\)"):
        layout.check(torch.zeros(4, 3), 3)
    with pytest.raises(ValueError, match=r"expected 3 channels on axis F \(dim 2\).* got 5"):
        layout.check(torch.zeros(4, 2, 5), 3)


def test_describe_uses_letters_and_sizes():
    layout = Layout.parse("BTF")
    assert layout.describe("BT", (4, 2)) == "(B, T) = (4, 2)"
    assert layout.describe("C", (3,)) == "(F,) = (3,)"
