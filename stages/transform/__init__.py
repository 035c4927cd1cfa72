"""Transform: raw DBN chunks -> standardized and quarantine Parquet partitions, with DuckDB SQL."""
