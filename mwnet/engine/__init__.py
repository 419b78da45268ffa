"""The training loop behind both scripts (training.py), its flags and presets (options.py), the parts a run
is built from (components.py) and the loop's state that a checkpoint carries (loop_state.py)."""
