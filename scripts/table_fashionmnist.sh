#!/usr/bin/env bash
# Offline evidence on real data: Fashion-MNIST, ResNet-32, the flip table's protocol (60 epochs, lr x0.1
# at 40 and 50), uniform noise 40 and 60 %, flip noise 20 and 40 %, the four rows of the paper tables.
# EPOCHS and MILESTONES shorten the schedule where the hardware needs it (say so with the results);
# they may be fractions of an epoch. The BaseModel row (erm_long) runs twice as long, milestones doubled.
#   SEEDS="1 2 3" bash scripts/table_fashionmnist.sh
#   SEEDS="1 2 3" EPOCHS=0.1695 MILESTONES="0.1136 0.1407" EXTRA="--eval_every 0.0848" \
#     bash scripts/table_fashionmnist.sh   # 100 iterations (x0.1 at 67 and 83), evaluated at 50 and 100
source "$(dirname "$0")/common.sh"
EPOCHS="${EPOCHS:-60}"
MILESTONES="${MILESTONES:-40 50}"
FLIP_TYPE="${FLIP_TYPE:-flip2}"
double() { awk -v x="$1" 'BEGIN { print 2 * x }'; }
LONG_EPOCHS=$(double "$EPOCHS")
LONG_MILESTONES=$(for m in $MILESTONES; do echo -n "$(double "$m") "; done)
for setting in "unif 0.4" "unif 0.6" "$FLIP_TYPE 0.2" "$FLIP_TYPE 0.4"; do
  set -- $setting
  for seed in $SEEDS; do
    cell="fashionmnist_resnet32/fashionmnist/${1}_p$2"
    flags="--dataset fashionmnist --corruption_type $1 --corruption_prob $2 --seed $seed"
    emit MW-Net.py "$cell/mwnet/seed$seed" $flags --epochs "$EPOCHS" --milestones $MILESTONES --method mwnet
    emit MW-Net.py "$cell/l2rw/seed$seed" $flags --epochs "$EPOCHS" --milestones $MILESTONES --method l2rw
    emit MW-Net.py "$cell/erm/seed$seed" $flags --epochs "$EPOCHS" --milestones $MILESTONES --method erm
    emit MW-Net.py "$cell/erm_long/seed$seed" $flags --epochs "$LONG_EPOCHS" --milestones $LONG_MILESTONES --method erm
  done
done
run_all
