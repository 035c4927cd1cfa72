"""`hist query --chart`: candlesticks with volume underneath, drawn with matplotlib from the rows the
query returned (TimescaleDB's bars, or trades resampled by --interval)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pyarrow as pa

from lake.errors import ConfigError

BAR_COLUMNS = ("ts_event", "open", "high", "low", "close", "volume")
SIZE_INCHES, DPI = (12.0, 7.0), 100  # a 1200 x 700 PNG
UP, DOWN = "#26a69a", "#ef5350"


def draw_candles(bars: pa.Table, path: Path, title: str) -> int:
    """Write the chart to `path` (PNG); returns the number of bars drawn."""
    missing = [c for c in BAR_COLUMNS if c not in bars.column_names]
    if missing:
        raise ConfigError(f"--chart draws bars: these rows have no {', '.join(missing)} (use an ohlcv schema, "
                          "or --interval to resample trades)")
    if bars.num_rows == 0:
        raise ConfigError("--chart: the query returned no bars to draw")
    if "symbol" in bars.column_names and len(set(bars.column("symbol").to_pylist())) > 1:
        raise ConfigError("--chart draws one symbol: give --symbols a single symbol")
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    rows = bars.to_pydict()
    times = mdates.date2num(rows["ts_event"])  # type: ignore[no-untyped-call]
    opens, highs, lows, closes = ([float(v) for v in rows[c]] for c in ("open", "high", "low", "close"))
    volume = [int(v or 0) for v in rows["volume"]]
    width = 0.7 * (min(b - a for a, b in itertools.pairwise(times)) if len(times) > 1 else 1 / 1440)
    colors = [UP if c >= o else DOWN for o, c in zip(opens, closes, strict=True)]
    figure, (price, vol) = plt.subplots(2, 1, sharex=True, figsize=SIZE_INCHES, dpi=DPI,
                                        gridspec_kw={"height_ratios": [3, 1]})
    price.vlines(times, lows, highs, colors=colors, linewidth=0.8)
    price.bar(times, [max(abs(c - o), 1e-9) for o, c in zip(opens, closes, strict=True)], width,
              bottom=[min(o, c) for o, c in zip(opens, closes, strict=True)], color=colors)
    vol.bar(times, volume, width, color=colors)
    price.set_title(title)
    price.set_ylabel("price")
    vol.set_ylabel("volume")
    vol.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz="UTC"))  # type: ignore[no-untyped-call]
    price.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return int(bars.num_rows)
