"""Fixtures for the MABSA benchmark data (../shared/data/mabsa, or LRSA_DATA_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lrsa.settings import DEFAULT_DATA_DIR


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("LRSA_DATA_DIR", DEFAULT_DATA_DIR))
    if not (path / "twitter2015" / "dev.json").exists():
        pytest.skip(f"MABSA data not found at {path}: set LRSA_DATA_DIR to the folder holding "
                    "twitter2015/, twitter2017/ and rationales/ (see ../shared/data/mabsa/README.md)")
    return path
