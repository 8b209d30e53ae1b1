"""Where the tests find the checkout: REPO (the repository root) and TESTS (this folder, with
the shared helpers and fixtures), whichever room's folder a test lives in."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
