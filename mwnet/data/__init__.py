"""What a run trains and tests on: the datasets (catalog.py), their files (files.py), the noise and split
protocol of the original code (noise.py), the original's Dataset classes (datasets.py) and the batches
made on the device (device_loader.py). A new dataset: its reader (files.py, or a streamed reader in streamed.py), its DatasetSpec in catalog.py."""
