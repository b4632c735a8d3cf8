"""Hidden check of settings_file: values as the file says now (an edit takes effect at once, also one that keeps
the size), a missing file gives the default, and an unchanged file is not opened again on every read."""

from __future__ import annotations

import builtins
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import checklib

module = checklib.component("settings_file")
opened = 0
real_open, real_os_open = io.open, os.open


def counting_open(*args: Any, **kwargs: Any) -> Any:
    global opened
    opened += 1
    return real_open(*args, **kwargs)


def counting_os_open(*args: Any, **kwargs: Any) -> Any:
    global opened
    opened += 1
    return real_os_open(*args, **kwargs)


with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "service.conf"
    settings = module.SettingsFile(path)
    checklib.expect_equal(checklib.attempt("get without a file", lambda: settings.get("a", "d")), "d", "missing file")
    path.write_text("# settings\na = 1\nb = two = 2\n" + "".join(f"k{i} = {i}\n" for i in range(500)), "utf-8")
    checklib.expect_equal(checklib.attempt("get", lambda: settings.get("b")), "two = 2", "get('b')")
    io.open = builtins.open = counting_open  # type: ignore[assignment]
    os.open = counting_os_open
    try:
        values = [settings.get(f"k{i}") for i in range(300)]
    finally:
        io.open = builtins.open = real_open  # type: ignore[assignment]
        os.open = real_os_open
    checklib.expect_equal(values, [str(i) for i in range(300)], "300 reads of an unchanged file")
    checklib.expect(opened <= 3, f"300 reads of an unchanged file opened it {opened} times (at most 3)")
    path.write_text("a = 100\n", "utf-8")
    checklib.expect_equal(settings.get("a"), "100", "get('a') after an edit")
    checklib.expect_equal(settings.get("k1", "gone"), "gone", "a key the edit removed")
    before = path.stat().st_mtime_ns
    path.write_text("a = 200\n", "utf-8")  # the same size: only the modification time tells
    os.utime(path, ns=(before + 5_000_000_000, before + 5_000_000_000))
    checklib.expect_equal(settings.get("a"), "200", "get('a') after an edit of the same size")
    path.unlink()
    checklib.expect_equal(checklib.attempt("get after delete", lambda: settings.get("a", "d")), "d", "deleted file")
checklib.finish()
