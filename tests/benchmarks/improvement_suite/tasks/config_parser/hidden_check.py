"""Hidden check of config_parser: a line holding only a name no longer raises and reads as "true"; everything else
reads as before."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import checklib

module = checklib.component("config_parser")
text = "# shop api\nworkers = 4\nverbose\n  dry-run  \nurl = http://x/?a=b\n\nlevel=\n"
expected = {"workers": "4", "verbose": "true", "dry-run": "true", "url": "http://x/?a=b", "level": ""}
checklib.expect_equal(checklib.attempt("parse_config with flag lines", lambda: module.parse_config(text)), expected,
                      "parse_config with flag lines")  # fmt: skip
checklib.expect_equal(checklib.attempt("parse_config('debug')", lambda: module.parse_config("debug")),
                      {"debug": "true"}, "parse_config('debug')")  # fmt: skip
checklib.expect_equal(module.parse_config(""), {}, "parse_config('')")
checklib.expect_equal(module.config_int({"n": "7"}, "n", 1), 7, "config_int")
checklib.finish()
