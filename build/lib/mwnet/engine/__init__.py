"""The training loop behind both scripts (training.py), how a run starts and ends (launch.py), its flags and
presets (options.py), the parts a run is built from (components.py), the loop's state that a checkpoint carries
(loop_state.py), and one run on several processes (distributed.py)."""
