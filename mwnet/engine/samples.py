"""The suspect labels: each training sample as the trained model and meta-weight-net see it, for samples.csv
(run_files.SAMPLE_COLUMNS; docs/usage.md, "Run files").

Every training image once, in order, unaugmented, in evaluation mode: its loss against its given (noisy) label,
the class the model predicts and that class's probability, and (MW-Net) the weight the final meta-weight-net
gives that loss. Beside it the mean weight the image received in the last epoch of training (the last
len(training loader) iterations: with shuffled passes, its one weight of the last pass; with the WRN script's
random batches, the mean of its draws in them). Then its history in training, at no extra pass: the mean of
its training losses and of its margins (the logit of the given label minus the largest other; Pleiss et al.,
2020) over every draw (mean_loss, mean_margin) and over the draws before the first lr drop (early_loss,
early_margin), before memorisation. Sorted from the most to the least suspect by ORDER: the mean loss before the
first lr drop, highest first (ties by the final loss, then by position), the signal that found the corrupted
labels best in benchmarks/bench_label_errors.py (docs/results-fashion-mnist.md, "Finding the wrong labels");
a file without a history (a best model's) by the final loss.

Not by the weight: MW-Net's weight is a function of the loss alone, so where the learned function falls with
the loss (label noise, the paper's figures) the two orders agree but for ties where it saturates, which the
loss breaks; where it rises (under class imbalance, the paper's figures; and it did, early, on a version of
examples/make_own_data.py's images), the lowest weights are the easiest samples, which an order by weight would
put first.
"""

import numpy as np
import torch
import torch.nn.functional as F

from mwnet.engine.distributed import World
from mwnet.method import method
from mwnet.runs.run_files import SAMPLE_ORDERS

HISTORY_COLUMNS = ("mean_loss", "mean_margin", "early_loss", "early_margin")
# The column that orders samples.csv, most suspect first, in its direction (run_files.SAMPLE_ORDERS).
FINAL_LOSS = "loss"
ORDER = "early_loss"


@torch.no_grad()
def predictions(model, loader, world=None):
    """(losses, predicted classes, their probabilities) of the loader's images in its order, in evaluation mode;
    in a run of several processes each does its share of the batches and every process gets the whole."""
    world = world or World()
    model.eval()
    at, losses, predicted, probability = [], [], [], []
    for x, y, idx in loader.in_order(part=(world.rank, world.size)):
        logits = model(x).float()
        losses.append(F.cross_entropy(logits, y, reduction="none"))
        p, c = logits.softmax(1).max(1)
        at.append(idx)
        predicted.append(c)
        probability.append(p)
    model.train()
    if not at:  # more processes than batches: this one had none
        none = torch.zeros(0, dtype=torch.long, device=loader.labels.device)
        at, losses, predicted, probability = [none], [none.float()], [none], [none.float()]
    return world.assemble(*(torch.cat(t) for t in (at, losses, predicted, probability)))


@torch.no_grad()
def table(data, model, vnet, method_name, epoch_weight=None, world=None, history=None):
    """samples.csv's columns (run_files.SAMPLE_COLUMNS), one value per training sample, most suspect first (by
    ORDER's column, or the final loss where there is no history), and the name of the column that sorted them.
    epoch_weight: each sample's mean weight over the last epoch of training (NaN where not drawn in it), or None
    (a best model's file). world: the processes of a run, which share the pass out. history: Progress.history_means
    (each sample's mean loss and margin in training, over every draw and before the first lr drop), or None."""
    loss, predicted, probability = predictions(model, data.training_loader(), world)
    weight = None
    if method(method_name).vnet and vnet is not None:
        weight = vnet(loss.unsqueeze(1)).squeeze(1).float().cpu().numpy()
    loss, predicted, probability = (t.float().cpu().numpy() for t in (loss, predicted, probability))
    positions = np.arange(len(loss))
    sorted_by = ORDER if history is not None else FINAL_LOSS  # a best model's file: no history
    score = SAMPLE_ORDERS[sorted_by] * (
        loss if sorted_by == "loss" else np.asarray(history[sorted_by], dtype=np.float64)
    )
    drawn = ~np.isnan(score)  # a sample never drawn has no history: after the others, by its final loss
    order = np.lexsort((positions, -loss, -np.where(drawn, score, 0.0), ~drawn))
    given, clean = data.noisy_labels, data.clean_labels
    names = data.classes or [str(c) for c in range(data.num_classes)]
    predicted = predicted.astype(np.int64)
    kept = (
        None if not method(method_name).meta_set or epoch_weight is None else np.asarray(epoch_weight, dtype=np.float64)
    )
    columns = {
        "rank": positions + 1,
        "index": data.train_idx[order],
        "path": [data.paths[i] for i in order] if data.paths is not None else [""] * len(order),
        "given_label": given[order],
        "given_class": [names[c] for c in given[order]],
        "predicted_label": predicted[order],
        "predicted_class": [names[c] for c in predicted[order]],
        "probability": probability[order],
        "loss": loss[order],
        "weight": None if weight is None else weight[order],
        "epoch_weight": None if kept is None else kept[order],
        **{name: None if history is None else history[name][order] for name in HISTORY_COLUMNS},
        "clean_label": np.where(clean[order] >= 0, clean[order], -1),
        "corrupted": np.where(clean[order] >= 0, (clean[order] != given[order]).astype(np.int64), -1),
    }
    return columns, sorted_by
