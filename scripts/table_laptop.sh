#!/usr/bin/env bash
# The laptop table: Fashion-MNIST on the laptop protocol (--protocol laptop: SmallCNN, a fixed subset of 5,000
# training images, 100 clean meta images from outside it, 40 epochs, lr 0.02 x0.1 at 24 and 32, no augmentation),
# uniform noise 40 and 60 %, flip2 20 and 40 %, flip 40 %; MW-Net, MW-Net with a meta set selected from the noisy
# training data (--meta_source selected: no clean label), L2RW and plain training, each the whole run.
# A CPU finishes it: about 2 minutes a run on one core (docs/results-fashion-mnist.md).
# SETTINGS (comma-separated "type p") and ROWS choose a part of it.
#   GPUS=cpu,cpu SEEDS="1 2 3" RUNS=results/laptop bash scripts/table_laptop.sh
#   GPUS=cpu,cpu SETTINGS="unif 0.6,flip2 0.4" ROWS=mwnet_selected RUNS=results/laptop bash scripts/table_laptop.sh
source "$(dirname "$0")/common.sh"
ROWS="${ROWS:-mwnet mwnet_selected l2rw erm}"
IFS=, read -ra settings <<<"${SETTINGS:-unif 0.4,unif 0.6,flip2 0.2,flip2 0.4,flip 0.4}"
for setting in "${settings[@]}"; do
  set -- $setting
  for seed in $SEEDS; do
    cell="fashionmnist_laptop/fashionmnist/${1}_p$2"
    flags="--protocol laptop --corruption_type $1 --corruption_prob $2 --seed $seed"
    for row in $ROWS; do
      case "$row" in
        mwnet_selected) method="--method mwnet --meta_source selected" ;;
        *) method="--method $row" ;;
      esac
      emit MW-Net.py "$cell/$row/seed$seed" $flags $method
    done
  done
done
run_all
