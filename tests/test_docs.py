"""The docs hold to their rules: every figure in docs/benchmarks.md is in the raw file its section
names, the README stays short, and every link and named file in the docs resolves.

Convention of docs/benchmarks.md (a figure is a number in prose or a table):
- the document is cut into sections at `##`/`###` headings;
- a section names its raw output files as `bench/results/NAME` (in backticks);
- every number of the section outside code (fenced blocks and `inline code`, which hold commands,
  flags and file names) must occur, as printed (decimals, a glued `%` or `x`), in one of the files
  its section names; thousands separators are ignored (2,510 matches 2510);
- a section with a number and no named raw file fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH_DOC = ROOT / "docs" / "benchmarks.md"
README_MAX_LINES = 300

_FENCE = re.compile(r"^```.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_RAW = re.compile(r"bench/results/[\w./-]+\.(?:txt|json)")
#: a number not glued to a word or a dot before it; its decimals; a glued % or x (not x1, xs)
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(%|x(?![\w]))?")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_PATH_IN_CODE = re.compile(r"`((?:docs|bench/results)/[^`\s*{}]+)`")


def _sections(text: str) -> list[tuple[str, str]]:
    """(heading, body) per `##`/`###` heading; the text before the first one as ("", body)."""
    parts = re.split(r"^(#{2,3} .*)$", text, flags=re.MULTILINE)
    out = [("", parts[0])]
    out += [(parts[i].strip(), parts[i + 1]) for i in range(1, len(parts) - 1, 2)]
    return out


def figures(body: str) -> list[str]:
    """The numbers of a section as printed, outside fenced blocks and inline code."""
    prose = _CODE.sub(" ", _FENCE.sub(" ", body))
    return ["".join(g or "" for g in m.groups()) for m in _NUMBER.finditer(prose)]


def occurs(figure: str, raw: str) -> bool:
    """`figure` printed in `raw` as a whole number (not part of a longer one)."""
    plain = figure.replace(",", "")
    pattern = r"(?<![\d.])" + re.escape(plain) + (r"(?![\d])(?!\.\d)" if plain[-1].isdigit() else "")
    return re.search(pattern, raw) is not None


def unbacked_figures(text: str, root: Path) -> list[str]:
    """Every problem of a benchmarks document: a figure missing from its section's raw files."""
    problems = []
    for heading, body in _sections(text):
        names = sorted(set(_RAW.findall(heading + body)))
        found = figures(heading + "\n" + body)
        missing = [n for n in names if not (root / n).is_file()]
        problems += [f"{heading or '(top)'}: names {n}, which does not exist" for n in missing]
        if found and not names:
            problems.append(f"{heading or '(top)'}: figures {found[:5]} but no bench/results/ file named")
            continue
        raw = "\n".join(re.sub(r"(?<=\d),(?=\d{3})", "", (root / n).read_text(errors="replace"))
                        for n in names if (root / n).is_file())
        problems += [f"{heading or '(top)'}: {f} is in none of {names}"
                     for f in found if not occurs(f, raw)]
    return problems


def test_every_figure_in_benchmarks_is_in_the_raw_file_its_section_names():
    problems = unbacked_figures(BENCH_DOC.read_text(), ROOT)
    assert not problems, "\n".join(problems)


def test_the_figures_rule_catches_a_changed_number_and_an_unnamed_file(tmp_path):
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "a.txt").write_text("per trial 167.5 ms, share 1.67%, 2510 trials/hour, 3.6x\n")
    good = "## A\n\n`bench/results/a.txt`: 167.5 ms, 1.67%, 2,510 trials an hour, 3.6x faster.\n"
    assert unbacked_figures(good, tmp_path) == []
    assert unbacked_figures(good.replace("167.5", "167.6"), tmp_path)   # a changed figure
    assert unbacked_figures(good.replace("167.5", "167"), tmp_path)     # rounded: not as printed
    assert unbacked_figures(good.replace("1.67%", "1.7%"), tmp_path)
    assert unbacked_figures(good.replace("`bench/results/a.txt`", "the file"), tmp_path)
    assert unbacked_figures(good.replace("a.txt", "b.txt"), tmp_path)  # a file that is not there
    assert unbacked_figures("## B\n\n`python x.py --seeds 1 2`\n", tmp_path) == []  # code is exempt


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _docs() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_named_files_resolve(doc):
    text = doc.read_text()
    problems = []
    for target in _LINK.findall(_FENCE.sub(" ", text)):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            problems.append(f"link {target}: {dest} does not exist")
        elif anchor and dest.suffix == ".md":
            slugs = {_slug(h) for h in re.findall(r"^#{1,6} .*$", _FENCE.sub(" ", dest.read_text()), re.MULTILINE)}
            if anchor not in slugs:
                problems.append(f"link {target}: no heading #{anchor} in {dest.name}")
    for named in _PATH_IN_CODE.findall(text):
        if not (ROOT / named).exists():
            problems.append(f"`{named}` does not exist")
    assert not problems, "\n".join(problems)
