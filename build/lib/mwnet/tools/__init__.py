"""Commands over runs and data, each also `python -m mwnet <name>`: runner.py (a table's runs on local GPUs,
CPU slots or SLURM), summarize.py (tables beside the paper's), plot.py (figures), split.py (build a split)."""
