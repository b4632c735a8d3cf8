"""The mechanical repairs of a model's reply: only a module used as ``name.attribute`` and bound nowhere in the file,
only from the standard library (and pytest), never where a star import could bind it."""

from __future__ import annotations

import pytest

from generators.codegen.repairs import missing_imports, with_imports


@pytest.mark.parametrize(
    ("source", "missing"),
    [
        ("def f(t: str) -> list[str]:\n    return re.findall('a', t)\n", ["re"]),
        ("import re\n\ndef f(t: str) -> list[str]:\n    return re.findall('a', t)\n", []),
        ("def f(re: object) -> object:\n    return re.x\n", []),  # a parameter of that name
        ("for json in items:\n    json.dump()\n", []),  # a loop variable
        ("def f() -> None:\n    numpy.zeros(3)\n", []),  # not a standard module: not guessed
        ("from typing import *\n\ndef f(t: str) -> bool:\n    return bool(re.match('a', t))\n", ["re"]),
        ("from somewhere import *\n\nre.match('a', 'b')\n", []),  # an unknown star import may bind it
        ("def f() -> None:\n    with pytest.raises(ValueError):\n        g()\n", ["pytest"]),
        ("def f(:\n", []),  # the syntax stage reports it
    ],
)
def test_missing_imports(source: str, missing: list[str]) -> None:
    assert missing_imports(source) == missing


def test_imports_go_after_the_docstring_and_future_imports() -> None:
    source = '"""Doc."""\n\nfrom __future__ import annotations\n\nx = re.compile("a")\n'
    assert with_imports(source, ["re"]) == (
        '"""Doc."""\n\nfrom __future__ import annotations\n\nimport re\n\nx = re.compile("a")\n'
    )
    assert with_imports("x = re.compile('a')\n", ["re"]) == "import re\nx = re.compile('a')\n"


def test_lines_are_counted_as_the_parser_counts_them() -> None:
    """A form feed or a line separator inside a docstring is no line break to the parser (it was to
    ``str.splitlines``, and the import went into the docstring, or before ``__future__``)."""
    feed = '"""Doc\x0cwith a form feed."""\n\nx = re.compile("a")\n'
    assert with_imports(feed, ["re"]) == '"""Doc\x0cwith a form feed."""\n\nimport re\n\nx = re.compile("a")\n'
    separator = '"""Doc\u2028line."""\nfrom __future__ import annotations\nx = re.compile("a")\n'
    repaired = with_imports(separator, ["re"])
    assert repaired is not None and repaired.index("from __future__") < repaired.index("import re")
