"""What a run writes and reads back (run_files.py: the one owner and reader of run directories, usable
without torch) and what it shows while it runs (reporting.py)."""
