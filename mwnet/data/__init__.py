"""What a run trains and tests on: the datasets (catalog.py), their files (files.py), the noise and split
protocol of the original code (noise.py), the original's Dataset classes (datasets.py) and the batches
made on the device (device_loader.py). A new dataset: its reader in files.py, its entry in catalog.py."""
