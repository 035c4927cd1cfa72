"""Record contracts shared by the stages: configuration, Databento records, standardized rows."""
