"""`hist query --chart`: a candlestick PNG with volume underneath, from the rows in TimescaleDB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import image

from stages.inspection.chart import DPI, SIZE_INCHES
from tests.conftest import DATASET, HistRunner

DAY = ["--start-date", "2024-01-02", "--end-date", "2024-01-03"]


def test_query_chart_given_bars_in_the_database_draws_candles_and_volume(hist: HistRunner, tmp_path: Path) -> None:
    hist("ingest", "--dataset", DATASET, "--schema", "ohlcv-1m", "--symbols", "ESH4", *DAY)
    png = tmp_path / "bars.png"

    result = hist("query", "--schema", "ohlcv-1m", "--symbols", "ESH4", *DAY, "--interval", "15m", "--chart", str(png))

    assert f"drawn to {png}" in result.stdout
    pixels = image.imread(png)
    assert pixels.shape[:2] == (SIZE_INCHES[1] * DPI, SIZE_INCHES[0] * DPI)
    colours = {tuple(p) for p in (pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3)[::7]}
    assert len(colours) > 20, "not blank: candles, wicks, volume bars, axes and labels"
    up_green = np.all(np.abs(pixels[..., :3] - np.array([0x26, 0xA6, 0x9A]) / 255) < 0.02, axis=-1)
    assert up_green.sum() > 500, "rising candles are drawn"


def test_query_chart_given_rows_that_are_not_bars_says_so(hist: HistRunner, tmp_path: Path) -> None:
    hist("ingest", "--dataset", DATASET, "--schema", "trades", "--symbols", "ESH4", *DAY)

    result = hist("query", "--schema", "trades", "--symbols", "ESH4", *DAY, "--chart", str(tmp_path / "t.png"),
                  check=False)

    assert result.returncode == 1 and "--chart draws bars" in result.stderr
    assert not (tmp_path / "t.png").exists()
