"""One training iteration of each method on the same machinery: Meta-Weight-Net, learning-to-reweight
(L2RW) and plain training (meta_step.py). A new method: its step function there, its name in
engine/options.py's --method and in engine/training.py's one_step."""
