"""Lay Databento's real sample files out as replay-gateway data, so tests can serve real vendor records.

<source>/<DATASET>/test_data.<schema>.dbn.zst becomes <out>/<DATASET>/<schema>/<YYYY-MM-DD>.dbn.zst, one
file per UTC day of each record's index timestamp (ts_recv, else ts_event), for the schemas the gateway
serves. Record bytes, DBN version and layout stay the sample's own; each sample's metadata mappings are
merged into <out>/<DATASET>/symbology.json under its stype_in (raw_symbol for Databento's samples).

    python tools/samples.py --source /work/shared/samples/databento --out data
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path

import databento_dbn as dbn
import numpy as np
from databento import DBNStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.generate import NS, RECORDS, day_start_ns, index_ts, merge_symbology, metadata, write_dbn

DAY_NS = 86400 * NS
PREFIX, SUFFIX = "test_data.", ".dbn.zst"


def import_samples(source: Path, out: Path) -> dict[str, list[str]]:
    """Import every sample of a known schema; returns dataset -> schemas imported."""
    imported: dict[str, list[str]] = {}
    for path in sorted(source.glob(f"*/{PREFIX}*{SUFFIX}")):
        dataset, schema = path.parent.name, path.name.removeprefix(PREFIX).removesuffix(SUFFIX)
        if schema not in RECORDS:
            continue
        store = DBNStore.from_file(path)
        meta = store.metadata
        if meta.ts_out:
            raise ValueError(f"{path}: records with ts_out are not supported by the replay gateway")
        stype_in, stype_out = str(meta.stype_in or dbn.SType.RAW_SYMBOL), str(meta.stype_out)
        mappings = {symbol: [{"d0": i["start_date"].isoformat(), "d1": i["end_date"].isoformat(), "s": i["symbol"]}
                             for i in intervals] for symbol, intervals in meta.mappings.items()}
        records = store.to_ndarray()  # a view of the file's own record bytes, in its version's layout
        days = index_ts(records) // DAY_NS
        for number in np.unique(days):
            day = date(1970, 1, 1) + timedelta(days=int(number))
            start = day_start_ns(day)
            header = metadata(dataset, schema, start, start + DAY_NS, list(meta.symbols), mappings, stype_in,
                              stype_out, version=meta.version)
            write_dbn(out / dataset / schema / f"{day.isoformat()}{SUFFIX}", header, records[days == number])
        merge_symbology(out / dataset / "symbology.json", {stype_in: mappings})
        imported.setdefault(dataset, []).append(schema)
    return imported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="folder of <DATASET>/test_data.<schema>.dbn.zst")
    parser.add_argument("--out", type=Path, required=True, help="the replay gateway's data folder")
    args = parser.parse_args()
    for dataset, schemas in import_samples(args.source, args.out).items():
        print(f"{dataset}: {', '.join(schemas)}")


if __name__ == "__main__":
    main()
