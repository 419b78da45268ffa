#!/usr/bin/env bash
# The paper's real-world table: Clothing1M, ResNet-50 pretrained on ImageNet; rows MW-Net, L2RW and plain training,
# each on --dataset clothing1m's protocol (README, "Clothing1M": batch 32, lr 0.01 x0.1 after epoch 5, 10 epochs,
# SGD momentum 0.9, wd 1e-3, a meta set of 7,000 clean validation images; the assumed values are marked there).
# The reported figure is the last epoch's test accuracy, as the paper's. DATA is a user's own copy of Clothing1M
# (its terms forbid redistribution). One GPU per run here; torchrun runs one on several (README, "Several GPUs").
#   SEEDS="1 2 3" DATA=/data/clothing1m GPUS=0,1,2 bash scripts/table_clothing1m.sh    # environment: scripts/common.sh
source "$(dirname "$0")/common.sh"
for seed in $SEEDS; do
  cell="clothing1m_resnet50/clothing1m/noisy"
  for method in mwnet l2rw erm; do
    emit MW-Net.py "$cell/$method/seed$seed" --dataset clothing1m --seed "$seed" --method "$method"
  done
done
run_all
