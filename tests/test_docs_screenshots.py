"""The README's screenshots are the browser tests' own: each one shown exists and is written by a test.

The pictures in docs/screenshots/ are copies of what the browser tests write to
test-artifacts/ (``make screenshots``, tests/screenshots.py); a picture no test
writes could only go stale.
"""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "screenshots"
BROWSER_TESTS = ("test_web_workbench.py", "test_web_candidate.py", "test_web_ui.py")


def _shown() -> set[str]:
    return set(re.findall(r"docs/screenshots/([a-z0-9-]+\.png)", (ROOT / "README.md").read_text()))


def test_every_screenshot_the_readme_shows_is_in_docs() -> None:
    shown = _shown()
    assert shown, "the README shows no screenshot"
    kept = {p.name for p in DOCS.glob("*.png")}
    assert shown <= kept, sorted(shown - kept)
    assert kept <= shown, f"kept but never shown: {sorted(kept - shown)}"
    for name in shown:
        with Image.open(DOCS / name) as img:
            assert img.width >= 390 and img.height >= 300, name  # a page, not a stub


def test_every_screenshot_is_written_by_a_browser_test_under_its_name() -> None:
    sources = "\n".join((ROOT / "tests" / name).read_text() for name in BROWSER_TESTS)
    for name in sorted(_shown()):
        stem = name.removesuffix(".png")
        assert f'"{stem}"' in sources or f'"{name}"' in sources, f"no browser test writes {name}"
