"""The training loop behind both scripts (training.py), how a run starts and ends (launch.py), its flags
(options.py, with presets.py, flags.py and checks.py), the parts a run is built from (components.py), the
loop's state that a checkpoint carries (loop_state.py), and one run on several processes (distributed.py)."""
