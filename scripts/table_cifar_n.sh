#!/usr/bin/env bash
# CIFAR-10N and CIFAR-100N (Wei et al., ICLR 2022): real human label noise, not in the MW-Net paper. Settings:
# CIFAR-10N aggre, random1, worse and CIFAR-100N noisy; rows MW-Net, L2RW and plain training, all on the
# authors' cross-entropy protocol: ResNet-34 of the CIFAR kind, 100 epochs, batch 128, SGD momentum 0.9 (no
# Nesterov), wd 5e-4, lr 0.1 then 0.01 from epoch 60, crop and flip. Every row takes its 1000 clean meta images
# out of the training set (the same split as the synthetic protocol's), which the CIFAR-N challenge rules
# forbid: these numbers are a setting of their own, beside the authors' cross-entropy ones, not a challenge entry.
# The row mwnet_selected reads no clean label: its meta set is the 100 (CIFAR-100N: 10) lowest-loss training
# images of each class by their human labels after 10 epochs of plain training (--meta_source selected), which
# stay in the training set: the challenge-compliant row (its last-epoch accuracy; the best epoch is model
# selection on the test set, which the rules forbid).
# The label files: $DATA/CIFAR-10_human.pt and $DATA/CIFAR-100_human.pt (EXTRA=--download fetches them, checked).
#   SEEDS="1 2 3" DATA=/data/cifar bash scripts/table_cifar_n.sh        # environment: scripts/common.sh
source "$(dirname "$0")/common.sh"
for setting in "cifar10 aggre" "cifar10 random1" "cifar10 worse" "cifar100 noisy"; do
  set -- $setting
  for seed in $SEEDS; do
    cell="cifar_n_resnet34/$1/$2"
    flags="--dataset $1 --corruption_type human --human_labels $2 --arch resnet34 --seed $seed"
    schedule="--epochs 100 --milestones 60 --batch_size 128"
    emit MW-Net.py "$cell/mwnet/seed$seed" $flags $schedule --method mwnet
    emit MW-Net.py "$cell/mwnet_selected/seed$seed" $flags $schedule --method mwnet --meta_source selected
    emit MW-Net.py "$cell/l2rw/seed$seed" $flags $schedule --method l2rw
    emit MW-Net.py "$cell/erm/seed$seed" $flags $schedule --method erm
  done
done
run_all
