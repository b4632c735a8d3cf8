"""Tests of the label rules."""

from components.label_validator import invalid_labels, is_valid_label


def test_valid_labels() -> None:
    """Words of letters and digits joined by single hyphens."""
    for label in ("a", "api", "checkout-api-2", "0-1-2", "x" * 63):
        assert is_valid_label(label), label


def test_invalid_labels() -> None:
    """Empty, upper case, other characters, hyphens at an end or doubled, too long."""
    for label in ("", "Api", "api_2", "-api", "api-", "api--2", "x" * 64, "api 2"):
        assert not is_valid_label(label), label


def test_invalid_labels_listed_in_order() -> None:
    """Only the invalid ones, in their order."""
    assert invalid_labels(["ok", "Bad", "fine-1", "-no"]) == ["Bad", "-no"]
