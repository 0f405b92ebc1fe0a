"""The documentation's Python examples run as written (from the repository root's data and
configs, in a scratch folder), and every page of docs/ is in the site's navigation."""
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "assets" not in p.parts)
RUN = [p for p in PAGES if re.search(r"^```python$", p.read_text(), re.M)]


def _blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", page.read_text(), re.S | re.M)


@pytest.mark.parametrize("page", RUN, ids=lambda p: str(p.relative_to(DOCS)))
def test_python_blocks_run(page, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    for sub in ("configs", "examples"):
        (tmp_path / sub).symlink_to(ROOT / sub)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    for i, block in enumerate(_blocks(page)):
        exec(compile(block, f"{page.name}[{i}]", "exec"), ns)  # the page's own code


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    missing = [str(p.relative_to(DOCS)) for p in PAGES if str(p.relative_to(DOCS)) not in nav]
    assert missing == []


def test_readme_is_short_and_points_to_the_site():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 150
    assert "docs/" in text and os.path.isfile(ROOT / "mkdocs.yml")
