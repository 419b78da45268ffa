#!/usr/bin/env bash
# The class-imbalance half on the laptop protocol (--protocol laptop_lt: SmallCNN, Fashion-MNIST's fixed
# subset of 500 images a class cut to a long tail, 10 clean meta images a class from outside it, the
# class-imbalance code's iteration, 40 epochs): imbalance factors 200, 100, 50, 20, 10 and 1; plain training,
# focal loss, the class-balanced loss, fine-tuning on the meta set, L2RW, MW-Net and logit adjustment, each the
# whole run. NOISE adds label noise on top ("type p", comma-separated: the imbalance and the noise at once).
# FACTORS, ROWS and NOISE choose a part of it. A CPU finishes it (docs/results-fashion-mnist.md).
#   GPUS=cpu,cpu SEEDS="1 2 3" RUNS=results/laptop bash scripts/table_laptop_lt.sh
#   GPUS=cpu,cpu SEEDS="1 2 3" RUNS=results/laptop FACTORS=10 NOISE="unif 0.4,flip2 0.4" \
#     ROWS="erm cb la l2rw mwnet" bash scripts/table_laptop_lt.sh
source "$(dirname "$0")/common.sh"
ROWS="${ROWS:-erm focal cb finetune l2rw mwnet la}"
FACTORS="${FACTORS:-200 100 50 20 10 1}"
IFS=, read -ra noises <<<"${NOISE:-none}"
for noise in "${noises[@]}"; do
  set -- $noise
  for factor in $FACTORS; do
    for seed in $SEEDS; do
      if [ "$1" = none ]; then
        cell="fashionmnist_laptop_lt/fashionmnist/imb$factor"
        flags="--protocol laptop_lt --imb_factor $factor --seed $seed"
      else
        cell="fashionmnist_laptop_lt/fashionmnist/imb${factor}_${1}_p$2"
        flags="--protocol laptop_lt --imb_factor $factor --corruption_type $1 --corruption_prob $2 --seed $seed"
      fi
      for row in $ROWS; do
        emit MW-Net.py "$cell/$row/seed$seed" $flags --method "$row"
      done
    done
  done
done
run_all
