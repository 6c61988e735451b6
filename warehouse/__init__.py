"""DuckDB side of lce: the Parquet lake, benchmarks and reference data, dbt builds, queries."""
