"""Every command's options, walked: help text present, no type placeholders, flags as --x/--no-x,
one default per shared option name, and --batch with one meaning."""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

from mmad_edge.cli import app

COMMAND = typer.main.get_command(app)
# A training batch and a deployment batch (a camera frame waits for no other) differ on purpose.
DEFAULTS_MAY_DIFFER = {"--batch-size", "--out", "--json", "--help", "--precision", "--backend"}


def options() -> list[tuple[str, object]]:
    return [(name, param) for name, cmd in COMMAND.commands.items() for param in cmd.params]


def test_every_option_has_help_and_flags_can_be_negated():
    for command, param in options():
        if param.param_type_name == "option":
            assert param.help and param.help.strip(), f"{command} {param.opts[0]} has no help text"
            if param.is_flag and param.opts[0] != "--help":
                assert param.secondary_opts, f"{command} {param.opts[0]} is not a --x/--no-x flag"
        else:
            assert getattr(param, "help", None), f"{command} argument {param.name} has no help text"


def test_shared_options_have_one_default():
    seen: dict[str, set] = {}
    for command, param in options():
        if param.param_type_name == "option" and param.opts[0] not in DEFAULTS_MAY_DIFFER:
            if not param.required and param.default is not None:  # None: taken from the input, said in the help
                seen.setdefault(param.opts[0], set()).add(repr(param.default))
    assert {name: values for name, values in seen.items() if len(values) > 1} == {}


def test_batch_means_one_thing_and_category_repeats_where_data_is_read():
    helps = {param.help for _, param in options() if param.param_type_name == "option" and param.opts[0] == "--batch"}
    assert len(helps) == 1 and "MIN:OPT:MAX" in helps.pop()
    for name in ("train", "eval", "export"):
        category = next(p for p in COMMAND.commands[name].params if p.name == "category")
        assert category.multiple, name


def test_help_shows_no_placeholders():
    runner = CliRunner()
    for name in ["", *COMMAND.commands]:
        result = runner.invoke(app, [*([name] if name else []), "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert not re.search(r"<(bool|int|str|float|path|list)\b|\{\w+\}", result.output), (name, result.output)


def test_bench_protocol_takes_what_the_help_says():
    from mmad_edge.bench.suite import parse_protocols

    protocol = next(p for p in COMMAND.commands["bench"].params if p.name == "protocol")
    assert parse_protocols(protocol.default) == ["paper", "e2e"]
    offered = re.findall(r"\b(paper|e2e|both|all)\b", protocol.help)
    assert {"paper", "e2e"} <= set(offered)
    for word in offered:
        assert parse_protocols(word) == [word]
