"""MkDocs hook: the reference pages generated from the code at build time.

* ``reference/cli.md``: one section per sub-command of the real argparse parser
  (``emodist.cli.build_parser()``): description, usage, options, examples.
* ``reference/api/<dotted module path>.md``: one ``::: module`` page per public module
  of the ``emodist`` package (no path part starting with ``_``); mkdocstrings
  shows exactly what the module's ``__all__`` lists (option ``members``).

The API pages go into the nav in place of the entry ``reference/api/index.md``,
grouped by sub-package, so a module that is added or moved shows up without an
edit to the docs.  Nothing is written into ``docs/``.
"""

from __future__ import annotations

import argparse
import html
import importlib
import importlib.util
import json
import os
import re
from pathlib import Path

import griffe
from mkdocs.structure.files import File

PACKAGE = "emodist"
#: the folder that holds the package (found on sys.path, as the build imports it)
ROOT = Path(importlib.util.find_spec(PACKAGE).origin).parents[1]
API_DIR = "reference/api"
API_INDEX = f"{API_DIR}/index.md"
CLI_PAGE = "reference/cli.md"

_modules: list[griffe.Module] = []


# --- API -------------------------------------------------------------------

def public_modules() -> list[griffe.Module]:
    """Every module of the package whose dotted path has no part starting with ``_``."""
    package = griffe.load(PACKAGE, search_paths=[str(ROOT)], resolve_aliases=False)
    found: list[griffe.Module] = []

    def walk(module: griffe.Module) -> None:
        found.append(module)
        for name, member in sorted(module.members.items()):
            if not member.is_alias and member.is_module and not name.startswith("_"):
                walk(member)

    walk(package)
    return found


def api_page(module: griffe.Module) -> str:
    """``reference/api/emodist.store.zarrio.md``: flat, so a module named ``index`` is no folder's index."""
    return f"{API_DIR}/{module.path}.md"


def api_markdown(module: griffe.Module) -> str:
    exports = module.exports
    note = ("" if exports is not None else
            "\n!!! note\n    This module declares no `__all__`: its names without a leading"
            " underscore are shown.\n")
    members = "" if exports is None else f"      members: {json.dumps([str(n) for n in exports])}\n"
    text = (f"# `{module.path}`\n{note}\n::: {module.path}\n"
            f"    options:\n      show_root_heading: false\n{members}")
    # a name of __all__ that static analysis cannot see (a lazy module ``__getattr__``):
    # documented from the object the module really returns
    for name in exports or ():
        if name not in module.members:
            obj = getattr(importlib.import_module(module.path), name)
            if not hasattr(obj, "__qualname__"):  # a constant taken from another module
                text += f"\n**`{name}`** = `{obj!r}`\n"
                continue
            target = f"{obj.__module__}.{obj.__qualname__}"
            text += (f"\n::: {target}\n    options:\n      show_root_heading: true\n"
                     f"      heading: \"{name}\"\n      toc_label: \"{name}\"\n")
    return text


def api_index(modules: list[griffe.Module]) -> str:
    lines = ["# API reference", "",
             "Generated from the package at build time: one page per public module, showing",
             "exactly the names its `__all__` lists.", "",
             "| module | summary |", "|---|---|"]
    for module in modules:
        summary = (module.docstring.value.strip().splitlines() or [""])[0] if module.docstring else ""
        link = os.path.relpath(api_page(module), API_DIR)
        lines.append(f"| [`{module.path}`]({link}) | {_summary(summary)} |")
    return "\n".join(lines) + "\n"


def api_nav(modules: list[griffe.Module]) -> list:
    """Nav entries: the index, then one section per sub-package (top-level modules first)."""
    sections: dict[str, list] = {}
    for module in modules:
        parts = module.path.split(".")
        package = module.is_package or module.is_subpackage
        key = PACKAGE if len(parts) == 1 or (len(parts) == 2 and not package) \
            else ".".join(parts[:2])
        sections.setdefault(key, []).append({module.path: api_page(module)})
    return [API_INDEX] + [{key: entries} for key, entries in sections.items()]


def _replace_in_nav(nav: list, target: str, replacement: list) -> bool:
    for i, item in enumerate(nav):
        if isinstance(item, dict):
            (title, value), = item.items()
            if value == target:
                nav[i] = {title: replacement}
                return True
            if isinstance(value, list) and _replace_in_nav(value, target, replacement):
                return True
    return False


# --- CLI -------------------------------------------------------------------

def _cell(text: str) -> str:
    """Text for a Markdown table cell: HTML-escaped, no pipes, no emphasis."""
    text = html.escape(" ".join(text.split()), quote=False)
    return re.sub(r"([|*_`\[\]])", r"\\\1", text)


def _summary(line: str) -> str:
    """A docstring's first line for a table cell: reST roles and literals as code spans."""
    line = re.sub(r":[\w:]+:`~?([^`]+)`", r"`\1`", line).replace("``", "`")
    return line.replace("|", "\\|")


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    seen, out = set(), []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    out.append((name, sub))
    return out


def _option_rows(parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(
                action, (argparse._SubParsersAction, argparse._HelpAction)):
            continue
        names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
        if action.choices is not None:
            value = "{" + ",".join(str(c) for c in action.choices) + "}"
        elif action.nargs == 0:
            value = ""
        else:
            value = formatter._format_args(action, action.metavar or action.dest.upper())
        default = action.default
        shown = "" if default in (None, False, argparse.SUPPRESS) or action.nargs == 0 \
            else f"`{default}`"
        help_text = formatter._expand_help(action) if action.help else ""
        rows.append(f"| {names} | {('`' + value + '`') if value else ''} | {shown} | "
                    f"{_cell(help_text)} |")
    return rows


def _command_markdown(name: str, parser: argparse.ArgumentParser, level: int) -> list[str]:
    out = [f"{'#' * level} `{name}`", ""]
    if parser.description:
        out += [html.escape(" ".join(parser.description.split()), quote=False), ""]
    out += ["```text", parser.format_usage().strip(), "```", ""]
    rows = _option_rows(parser)
    if rows:
        out += ["| option | value | default | what |", "|---|---|---|---|", *rows, ""]
    subs = _subcommands(parser)
    if subs:
        out += ["Sub-commands: " + ", ".join(f"`{s}`" for s, _ in subs) + ".", ""]
    if parser.epilog:
        out += ["```text", parser.epilog.strip("\n"), "```", ""]
    for sub_name, sub in subs:
        out += _command_markdown(f"{name} {sub_name}", sub, level + 1)
    return out


def cli_markdown() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps usage lines at the terminal width
    from emodist.cli import build_parser

    parser = build_parser()
    lines = ["# Command line reference", "",
             "Generated at build time from the argparse parsers of `emodist.cli`",
             "(`emodist COMMAND --help` prints the same).  The flag vocabulary shared by",
             "the commands: [CLI vocabulary](cli-vocabulary.md).", ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    lines += ["| option | value | default | what |", "|---|---|---|---|", *_option_rows(parser), ""]
    for name, sub in _subcommands(parser):
        lines += _command_markdown(f"emodist {name}", sub, 2)
    return "\n".join(lines)


# --- MkDocs events ---------------------------------------------------------

def on_config(config):
    _modules[:] = public_modules()
    if not _replace_in_nav(config["nav"] or [], API_INDEX, api_nav(_modules)):
        raise ValueError(f"mkdocs.yml: the nav has no entry {API_INDEX} to put the API pages at")
    return config


def on_files(files, config):
    files.append(File.generated(config, CLI_PAGE, content=cli_markdown()))
    files.append(File.generated(config, API_INDEX, content=api_index(_modules)))
    for module in _modules:
        files.append(File.generated(config, api_page(module), content=api_markdown(module)))
    return files
