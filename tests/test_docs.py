"""The documentation's commands and links point at things that exist.

Every `make X` in a code block names a Makefile target, every `python -m X` (in a code block or an
inline code span) names an importable module, and every relative link or image in README.md,
ARCHITECTURE.md, CHANGELOG.md and docs/*.md names a file that exists (and, for a Markdown file with
a #fragment, a heading in it).
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [p for p in [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "CHANGELOG.md",
                    *sorted((ROOT / "docs").glob("*.md"))] if p.exists()]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def code_blocks(text: str) -> list[str]:
    return FENCE.findall(text)


def prose(text: str) -> str:
    """The text with fenced code blocks and inline code spans removed (links there are not links)."""
    return INLINE.sub("", FENCE.sub("", text))


def shell_lines(block: str) -> list[str]:
    """Commands of a shell block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.split(" #")[0].strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {t for line in re.findall(r"^([^\s:=#][^:=]*?)\s*::?(?!=)", text, re.M) for t in line.split()}


def make_commands(text: str) -> list[list[str]]:
    """`make a b VAR=x` → ['a', 'b'] for each command in a code block that starts with make."""
    found = []
    for block in code_blocks(text):
        for line in shell_lines(block):
            for command in re.split(r"&&|;|\|\|", line):
                words = command.split()
                if words[:1] == ["make"]:
                    found.append([w for w in words[1:] if "=" not in w and not w.startswith("-")])
    return found


def python_modules(text: str) -> set[str]:
    spans = code_blocks(text) + INLINE.findall(FENCE.sub("", text))
    return {m for span in spans for m in re.findall(r"python3?\s+-m\s+([A-Za-z_][\w.]*)", span)}


def heading_anchors(md: Path) -> set[str]:
    """GitHub's anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", FENCE.sub("", md.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_the_documents_exist_and_the_readme_is_a_front_door():
    assert {"README.md", "ARCHITECTURE.md"} <= {p.name for p in DOCS}
    for name in ("api.md", "deploy.md", "models.md", "training.md", "speed.md"):
        assert (ROOT / "docs" / name).exists(), f"docs/{name} is missing"
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_make_commands_name_existing_targets(doc):
    targets = make_targets()
    for words in make_commands(doc.read_text()):
        for target in words:
            assert target in targets, f"{doc.name}: `make {target}` but the Makefile has no target {target!r}"


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_python_m_commands_name_existing_modules(doc):
    for module in python_modules(doc.read_text()):
        assert importlib.util.find_spec(module) is not None, f"{doc.name}: `python -m {module}`: no such module"


@pytest.mark.parametrize("doc", DOCS, ids=ids(DOCS))
def test_relative_links_point_to_existing_files(doc):
    for target in LINK.findall(prose(doc.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue    # absolute URLs, and anchors in the same page
        path, _, fragment = target.partition("#")
        file = (doc.parent / path).resolve()
        assert file.exists(), f"{doc.name}: link to {target} but {file.relative_to(ROOT)} does not exist"
        if fragment and file.suffix == ".md":
            assert fragment in heading_anchors(file), f"{doc.name}: {target}: no heading #{fragment}"


def test_the_checks_catch_what_they_look_for():
    """The parsers find a wrong target, module and link (so the tests above are not vacuous)."""
    text = "```sh\nmake run && make nosuchtarget DATA=x\n.venv/bin/python -m app.cli x \\\n  -o y\n```\n" \
           "Run `python -m training.models_doc`. See [a](docs/api.md#errors) and `[b](not-a-link.md)`.\n"
    assert make_commands(text) == [["run"], ["nosuchtarget"]]
    assert "nosuchtarget" not in make_targets() and {"run", "test", "models"} <= make_targets()
    assert python_modules(text) == {"app.cli", "training.models_doc"}
    assert importlib.util.find_spec("app.no_such_module") is None
    assert LINK.findall(prose(text)) == ["docs/api.md#errors"]
    assert "errors" in heading_anchors(ROOT / "docs" / "api.md")
