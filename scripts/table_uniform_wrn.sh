#!/usr/bin/env bash
# Paper table: uniform noise, WRN-28-10, CIFAR-10/100 at 0, 40, 60 % (train_WRN-28-10_Meta_PGC.py protocol).
# Rows: MW-Net, L2RW, plain training with MW-Net's 20k-iteration schedule, and plain training with the
# paper's BaseModel schedule (60k iterations, lr x0.1 at 40k and 50k). Environment: scripts/common.sh.
#   bash scripts/table_uniform_wrn.sh                      # every cell, 5 seeds, on all local GPUs
#   SLURM=uniform.sbatch bash scripts/table_uniform_wrn.sh  # or a SLURM job array
source "$(dirname "$0")/common.sh"
WRN=train_WRN-28-10_Meta_PGC.py
for dataset in $DATASETS; do
  for p in 0.0 0.4 0.6; do
    for seed in $SEEDS; do
      cell="uniform_wrn/$dataset/unif_p$p"
      flags="--dataset $dataset --corruption_type unif --corruption_prob $p --seed $seed"
      emit $WRN "$cell/mwnet/seed$seed" $flags --method mwnet
      emit $WRN "$cell/l2rw/seed$seed" $flags --method l2rw
      emit $WRN "$cell/erm/seed$seed" $flags --method erm
      emit $WRN "$cell/erm_long/seed$seed" $flags --method erm --iters 60000 --milestones 40000 50000 --eval_every 500
    done
  done
done
run_all
