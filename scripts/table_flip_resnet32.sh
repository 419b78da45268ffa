#!/usr/bin/env bash
# Paper table: flip noise, ResNet-32, CIFAR-10/100 at 0, 20, 40 % (60 epochs, lr x0.1 at epochs 40 and 50).
# Rows: MW-Net, L2RW, plain training with the same schedule, and plain training with the BaseModel's
# longer schedule (L2RW's 60k iterations in epochs: 120, lr x0.1 at 80 and 100). FLIP_TYPE=flip2 (the
# default: each class flips to two others, the paper's description) or flip. Environment: scripts/common.sh.
source "$(dirname "$0")/common.sh"
FLIP_TYPE="${FLIP_TYPE:-flip2}"
for dataset in $DATASETS; do
  for p in 0.0 0.2 0.4; do
    for seed in $SEEDS; do
      cell="flip_resnet32/$dataset/${FLIP_TYPE}_p$p"
      flags="--dataset $dataset --corruption_type $FLIP_TYPE --corruption_prob $p --seed $seed"
      emit MW-Net.py "$cell/mwnet/seed$seed" $flags --epochs 60 --milestones 40 50 --method mwnet
      emit MW-Net.py "$cell/l2rw/seed$seed" $flags --epochs 60 --milestones 40 50 --method l2rw
      emit MW-Net.py "$cell/erm/seed$seed" $flags --epochs 60 --milestones 40 50 --method erm
      emit MW-Net.py "$cell/erm_long/seed$seed" $flags --epochs 120 --milestones 80 100 --method erm
    done
  done
done
run_all
