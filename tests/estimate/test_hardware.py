import pytest

from greenlm.estimate.hardware import HardwareNotFoundError, all_hardware, find_hardware


@pytest.mark.parametrize(
    ("query", "expected_substring"),
    [
        ("A100", "A100 SXM4"),
        ("a100-80gb", "A100 SXM4 80GB"),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM4 80GB"),
        ("NVIDIA H100 80GB HBM3", "H100 SXM5"),
        ("TPU v4", "TPU v4"),
        ("tpuv3", "TPU v3"),
        ("MI250X", "MI250X"),
        ("V100-SXM2", "V100 SXM2"),
        ("a10", "NVIDIA A10"),
        ("L4", "NVIDIA L4"),
    ],
)
def test_names_are_matched_forgivingly(query, expected_substring):
    hw = find_hardware(query)
    assert expected_substring in hw.name


def test_a10_is_not_confused_with_a100():
    assert find_hardware("A10").name == "NVIDIA A10"


def test_socketed_part_preferred_over_pcie():
    assert "PCIe" not in find_hardware("H100").name
    assert "PCIe" in find_hardware("H100 PCIe").name


def test_unknown_hardware_lists_close_matches():
    with pytest.raises(HardwareNotFoundError) as e:
        find_hardware("A1000")
    assert e.value.suggestions
    assert any("A100" in s or "A10" in s for s in e.value.suggestions)
    assert "Did you mean" in str(e.value)


def test_every_table_row_is_found_by_its_own_name():
    for hw in all_hardware():
        assert find_hardware(hw.name) is hw


def test_missing_precision_is_an_error_naming_alternatives():
    hw = find_hardware("TPU v4")  # no fp8 figure in the table
    with pytest.raises(Exception, match="no fp8 throughput"):
        hw.peak_flops("fp8")


def test_peak_flops_are_in_flop_per_second():
    # A100 datasheet: 312 TFLOPS dense BF16
    assert find_hardware("A100").peak_flops("bf16") == pytest.approx(312e12)
