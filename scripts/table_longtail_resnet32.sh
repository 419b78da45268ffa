#!/usr/bin/env bash
# Paper table: long-tailed CIFAR-10/100, ResNet-32, imbalance factors 200, 100, 50, 20, 10, 1.
# Protocol of the authors' class-imbalance code: 10 clean meta images per class, each iteration a fresh
# random meta batch, 100 epochs, lr x0.1 at 80 and 90 for the virtual step and one epoch earlier for the
# real step (it called its schedule with epoch + 1), Nesterov SGD for the classifier; MW-Net with V fed
# the loss undetached, meta-net SGD lr 1e-5 (momentum 0.9, Nesterov, wd 5e-4), weights normalised by their sum.
# Every row trains the classifier the same way (Nesterov SGD, the same schedule and meta batches); the
# BaseModel row runs the longer schedule (120 epochs, lr x0.1 at 80 and 100). Environment: scripts/common.sh.
source "$(dirname "$0")/common.sh"
for dataset in $DATASETS; do
  meta=$([ "$dataset" = cifar100 ] && echo 1000 || echo 100)
  for factor in 200 100 50 20 10 1; do
    for seed in $SEEDS; do
      cell="longtail_resnet32/$dataset/imb$factor"
      flags="--dataset $dataset --imb_factor $factor --num_meta $meta --corruption_prob 0 --seed $seed --nesterov true"
      schedule="--epochs 100 --milestones 80 90 --real_lr_ahead 1 --meta_sampling random"
      emit MW-Net.py "$cell/mwnet/seed$seed" $flags $schedule --method mwnet --no-detach_vnet_input \
        --vnet_optimizer sgd --vnet_lr 1e-5 --vnet_wd 5e-4 --normalize_weights
      emit MW-Net.py "$cell/l2rw/seed$seed" $flags $schedule --method l2rw
      emit MW-Net.py "$cell/erm/seed$seed" $flags $schedule --method erm
      emit MW-Net.py "$cell/erm_long/seed$seed" $flags --epochs 120 --milestones 80 100 --method erm
    done
  done
done
run_all
