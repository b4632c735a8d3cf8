"""Tests of word_counts."""

from components.word_index import word_counts


def test_counts_words_case_and_punctuation_insensitive() -> None:
    """Case and surrounding punctuation are ignored."""
    assert word_counts("The cat. the CAT, a dog!") == {"the": 2, "cat": 2, "a": 1, "dog": 1}


def test_empty_text() -> None:
    """No words, no counts."""
    assert word_counts("  ... ") == {}
