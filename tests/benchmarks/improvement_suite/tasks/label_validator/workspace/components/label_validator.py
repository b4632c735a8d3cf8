"""Resource labels ("checkout-api-2"): lower-case letters and digits in words joined by single hyphens."""

import re

_LABEL = re.compile(r"([a-z0-9]+-?)*[a-z0-9]")
MAX_LENGTH = 63


def is_valid_label(label: str) -> bool:
    """True when ``label`` is 1 to 63 characters of lower-case words of letters and digits joined by single
    hyphens: no hyphen first, last or twice in a row."""
    return len(label) <= MAX_LENGTH and _LABEL.fullmatch(label) is not None


def invalid_labels(labels: list[str]) -> list[str]:
    """The labels of ``labels`` that are not valid, in their order."""
    return [label for label in labels if not is_valid_label(label)]
