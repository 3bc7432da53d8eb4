"""The README's screenshots, refreshed from the browser tests' own (``make screenshots``).

The browser tests (tests/test_web_workbench.py, tests/test_web_candidate.py)
write a screenshot of each page they drive to ``test-artifacts/``, under the
name the README uses; this copies those that docs/screenshots/ holds, reduced
to 256 colours so the repository stays small. A screenshot the tests did not
write this time is reported and left as it is (exit 1), so a stale picture
cannot pass for a fresh one. tests/test_docs_screenshots.py checks that every
picture the README shows is one the tests write.

    python -m tests.screenshots            # after a run of the browser tests
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
DOCS = ROOT / "docs" / "screenshots"


def refresh(artifacts: Path = ARTIFACTS, docs: Path = DOCS) -> tuple[list[str], list[str]]:
    """Copy each docs screenshot's fresh artifact over it; (refreshed, missing) names."""
    refreshed, missing = [], []
    for target in sorted(docs.glob("*.png")):
        source = artifacts / target.name
        if not source.is_file():
            missing.append(target.name)
            continue
        img = Image.open(source).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        img.save(target, optimize=True)
        refreshed.append(target.name)
    return refreshed, missing


def main() -> None:
    refreshed, missing = refresh()
    print(f"refreshed {len(refreshed)} screenshot(s) in {DOCS.relative_to(ROOT)}")
    for name in missing:
        print(f"not written by this run of the browser tests: {name}", file=sys.stderr)
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
