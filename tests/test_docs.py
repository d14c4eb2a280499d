"""The documentation: README.md stays a front page, and every relative link in it and in docs/ resolves."""

import os
import re

from conftest import ROOT

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _pages():
    pages = [os.path.join(ROOT, "README.md")]
    for root, _, files in os.walk(os.path.join(ROOT, "docs")):
        pages += [os.path.join(root, f) for f in files if f.endswith(".md")]
    return pages


def broken_links(path: str) -> list[str]:
    """Relative links of the markdown file `path` (anchors and web addresses aside) whose target is missing."""
    text = re.sub(r"```.*?```", "", open(path, encoding="utf-8").read(), flags=re.S)  # code blocks hold no links
    bad = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not os.path.exists(os.path.join(os.path.dirname(path), target.split("#")[0])):
            bad.append(target)
    return bad


def test_every_relative_link_resolves(tmp_path):
    pages = _pages()
    assert len(pages) > 5
    bad = {os.path.relpath(p, ROOT): b for p in pages if (b := broken_links(p))}
    assert not bad, bad
    # and the check finds a broken one
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) [web](https://example.org) [gone](missing/file.md#x) [anchor](#top)\n")
    assert broken_links(str(page)) == ["missing/file.md#x"]


def test_the_readme_is_a_front_page():
    lines = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().splitlines()
    assert len(lines) <= 200, len(lines)
    text = "\n".join(lines[:40])
    assert "python launch.py --config=configs/defocus.py:quick" in text and "pytest" in text
