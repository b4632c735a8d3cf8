"""Word counts of a text: already fast; the demo's second candidate, whose proposed "improvement" is slower."""


def word_counts(text: str) -> dict[str, int]:
    """How often each word (lower-cased, surrounding punctuation removed) occurs in ``text``."""
    counts: dict[str, int] = {}
    for raw in text.lower().split():
        word = raw.strip(".,;:!?\"'()")
        if word:
            counts[word] = counts.get(word, 0) + 1
    return counts
