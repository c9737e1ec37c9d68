"""The staff dashboard in a real browser: headless Chromium (Debian package `chromium`) signs in to the
default run after traffic through the simulator and finds data in every chart (the same check as
`make screenshots`, whose PNGs are in docs/screenshots/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.chromium import chromium_path
from devstack.screenshots import CHARTS, capture


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (Debian package `chromium`)")
@pytest.mark.timeout(300)
def test_the_dashboard_renders_with_data_in_every_chart(tmp_path: Path) -> None:
    points = capture(tmp_path, rounds=1, pause=0)
    assert all(points[chart] > 0 for chart in CHARTS), points
    assert (tmp_path / "dashboard.png").stat().st_size > 50_000
    assert (tmp_path / "admin-index.png").read_bytes().startswith(b"\x89PNG")
