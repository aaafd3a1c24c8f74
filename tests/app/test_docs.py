"""The README stays a short entry point and the docs stay reachable, linked and in step with the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from mmad_edge.cli import app

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def prose(path: Path) -> str:
    """The page without its code blocks (a link-like text inside code is not a link)."""
    return FENCE.sub("", path.read_text())


def relative_links(path: Path) -> list[str]:
    return [target for target in LINK.findall(prose(path)) if not re.match(r"[a-z]+:", target)]


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.+)$", prose(path), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_readme_is_at_most_200_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to a docs/ page"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / target.split("#")[0]).resolve() for target in relative_links(README)}
    assert DOCS, "no docs/*.md found"
    missing = [page.name for page in DOCS if page.resolve() not in linked]
    assert not missing, f"docs pages not linked from README.md: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_relative_links_resolve_to_files_and_headings(page):
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading '#{anchor}' in {destination.name}")
    assert not broken, f"{page.name}: {broken}"


def test_link_checker_sees_links_and_skips_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See [a](a.md#b-c) and [web](https://x.org).\n```\n[code](nowhere.md)\n```\n# B c\n")
    assert relative_links(page) == ["a.md#b-c"]
    assert anchors(page) == {"b-c"}


def test_readme_states_the_make_targets_as_the_makefile_defines_them():
    makefile = (ROOT / "Makefile").read_text()
    readme = README.read_text()
    for target in ("demo", "test"):
        recipe = re.search(rf"^{target}:.*\n\t(.+)$", makefile, re.M)
        assert recipe, f"Makefile has no {target} target"
        command = recipe.group(1).replace("$(BIN)", ".venv/bin")
        assert f"make {target}" in readme and command in readme, f"README.md does not say `make {target}` runs {command}"
    install = re.search(r"pip install -q (-c constraints-cpu.txt -e \S+)", makefile).group(1)
    assert f"pip install {install}" in readme


def test_cli_page_lists_every_command_and_option():
    page = (ROOT / "docs" / "cli.md").read_text()
    root = typer.main.get_command(app)
    missing = []
    for name, command in root.commands.items():
        if f"## `mmad-edge {name}`" not in page:
            missing.append(f"section for {name}")
        options = [opt for param in command.params for opt in param.opts if opt.startswith("--") and opt != "--help"]
        section = page.split(f"## `mmad-edge {name}`", 1)[-1].split("\n## ", 1)[0]
        missing += [f"{name} {opt}" for opt in options if f"`{opt}`" not in section]
    assert not missing, f"docs/cli.md lacks: {missing}; regenerate its tables from `mmad-edge COMMAND --help`"
