"""The staging lake shared by every stage: layout, manifest log and atomic writes."""
