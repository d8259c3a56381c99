"""``edge-har convert --help``: every option comes with an example (its own help's "e.g.", or the epilog's)."""

from __future__ import annotations

import argparse
import re

from edge_har.cli import build_parser


def convert_parser() -> argparse.ArgumentParser:
    parser = build_parser("convert")  # registers convert's real options (the others stay stubs)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    return sub.choices["convert"]


def test_every_convert_option_has_an_example():
    parser = convert_parser()
    epilog_flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", parser.epilog or ""))
    missing = []
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]  # noqa: SLF001
    assert len(options) > 40  # the real parser, not a stub
    for action in options:
        if "e.g." in (action.help or "") or any(flag in epilog_flags for flag in action.option_strings):
            continue
        missing.append("/".join(action.option_strings))
    assert not missing, f"options without an example in convert --help: {', '.join(missing)}"


def test_the_help_names_every_layout():
    text = convert_parser().format_help()
    for fmt in ("hmp", "folder", "csv", "uci-har", "intervals", "hapt", "names", "ts"):
        assert fmt in text
    for flag in ("--layout", "--intervals", "--name-regex", "--label-map", "--columns", "--trial-column"):
        assert flag in text
