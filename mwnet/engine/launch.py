"""How a run starts and ends, behind both scripts: main(script, argv) parses the flags (options.py), settles the
run directory (a fresh start, or --resume with the run's own flags), builds the parts (components.py) on every
process of the run (distributed.py), runs the loop (training.py) and writes the results. Exit codes: errors.py.
"""

import os
import signal
import sys
import time
import traceback

import numpy as np
import torch

from mwnet.data.catalog import spec
from mwnet.engine import distributed, meta_selection, samples
from mwnet.engine.components import (
    autocast,
    build_data,
    build_learner,
    class_count,
    environment,
    image_size,
    keep_freed_memory,
    load_test,
    pick_device,
    run_seeds,
    set_numerics,
)
from mwnet.engine.loop_state import WINDOWS, Progress, Tally, epoch_weight, restore
from mwnet.engine.options import args_from_stored, given_flags, name_baseline, parse_args
from mwnet.engine.training import LOSS_GRID, Session, StopSignals, evaluate, make_plan, train, vnet_curve
from mwnet.errors import EXIT_DIVERGED, EXIT_OK, EXIT_USER, UserError
from mwnet.method import method
from mwnet.models import build_model
from mwnet.models.meta_layers import VNet
from mwnet.runs.reporting import Reporter, TensorBoard, banner, silence
from mwnet.runs.run_files import (
    BEST,
    CHECKPOINT,
    CONFIG,
    FREE_FLAGS,
    LOG,
    MARKER,
    META_BEST,
    TENSORBOARD,
    ReadOnlyRunDir,
    RunDir,
    config_differences,
    default_run_name,
    is_ours,
    model_file,
    read_json,
)
from mwnet.untrusted import check_state


def start(args, config, run_dir, data, learner, device, seeds, world):
    """Under the lock: a fresh start (writes config and split) or the checkpoint's state, and the run's data (with
    the selected meta set a resumed run had made). None: nothing to do."""
    progress = Progress.new(len(data.train_idx), device, len(data.train), data.train.batch_size)
    tally = Tally(device, meta=method(args.method).meta_set)
    current = run_dir.status() if args.resume else None
    if current == "finished":
        print(f"{run_dir.path} has finished; nothing to continue (results in {run_dir.file('results.json')})")
        return None
    if current == "diverged":
        raise UserError(
            f"{run_dir.path} diverged (see its results.json); nothing to continue: start a new run with other flags"
        )
    recorded = {
        "seeds": seeds,
        "noise_rate": data.noise_rate,
        "vnet_loss_grid": LOSS_GRID,
        "vnet_curve_init": vnet_curve(learner.vnet, device),  # its weighting function before any step (None: no V)
        "data_fingerprint": data.fingerprint,
        "noise_source": data.noise_source,
        "train_subset_drawn": data.subset,
        "folder": data.folder,
        "model_source": learner.source,
        "environment": environment(device),
    }
    if current != "stopped":
        run_dir.prepare_fresh()  # refuses a directory that holds a run; a resume without checkpoint starts afresh
        run_dir.write_config({**config, **recorded})
        run_dir.save_split(data.meta_idx, data.train_idx, data.clean_labels, data.noisy_labels)
        return progress, tally, None, data
    state = run_dir.load_checkpoint()
    if state["device_type"] != device.type:
        # The batch generators' states belong to their device; so does bit-for-bit continuation.
        raise UserError(
            f"{run_dir.file(CHECKPOINT)} was made on {state['device_type']}; resume it with --device {state['device_type']}"
        )
    ran_with, now = state["config"].get("world_size", 1), config["world_size"]
    if ran_with != now:  # another split of each batch, another BatchNorm: not an exact continuation
        how = (
            "in one process (without torchrun)"
            if ran_with == 1
            else f"with torchrun --nproc_per_node {ran_with} (on one machine)"
        )
        raise UserError(f"{run_dir.path} ran in {ran_with} processes, not {now}; resume it {how}")
    diffs = config_differences(state["config"], config)
    if diffs:
        raise UserError(
            f"{run_dir.file(CHECKPOINT)} and {run_dir.file(CONFIG)} disagree ({'; '.join(diffs)}); the directory is damaged"
        )
    started_with = state.get("data_fingerprint")  # absent from checkpoints made before it was recorded
    if started_with not in (None, data.fingerprint) and not args.accept_other_data:
        raise UserError(
            f"the data under --data_path {args.data_path} is not the data {run_dir.path} started with (other images or labels); pass the run's own data, or --accept_other_data to continue with these"
        )
    run_dir.remove_temporaries()
    if state.get("meta_selection") is not None:  # past the warm-up: the same meta set again
        data = meta_selection.attach(args, data, world, seeds, state["meta_selection"], run_dir.file(CHECKPOINT))
    progress = restore(state, learner, data, tally, run_dir.file(CHECKPOINT))
    run_dir.rewrite_metrics(progress.records)
    if run_dir.read_config() is None:  # config.json was lost; the checkpoint holds the run's flags
        run_dir.write_config({**state["config"], **recorded})
    return progress, tally, progress.step, data


def run(args):
    """One run: of this process alone, or (torchrun) of every process of it, process 0 writing and speaking."""
    try:
        world = distributed.start(args.device)
    except UserError:
        if os.environ.get("RANK", "0") == "0":  # one line, from process 0; the others end quietly
            raise
        return EXIT_USER
    ended = False
    try:
        code = run_in(world, args)
        ended = True
        return code
    except UserError:
        if world.writer:
            raise
        return EXIT_USER  # process 0 says it
    finally:
        world.close(ended)


def prepare(world, args, run_dir):
    """Everything before the lock, on every process; any process's failure stops them all, with one line."""
    error = parts = None
    try:
        if world.size > 1 and not args.detach_vnet_input:
            raise UserError("--no-detach_vnet_input runs in one process only; start it without torchrun")
        device = pick_device(args.device, world.local_rank)
        set_numerics(args.precision, args.deterministic)
        keep_freed_memory()
        run_dir.check_usable()
        seeds = run_seeds(args.seed)
        data = build_data(args, device, seeds)  # reads, checks sizes; nothing written yet
        for loader in (data.train, data.meta):
            if loader is not None:
                loader.part = (world.rank, world.size)  # the same global batch, this process's slice of it
        plan = make_plan(args, len(data.train), len(data.train_idx))
        counts = np.bincount(data.noisy_labels, minlength=data.num_classes)  # the labels the learner sees
        learner = build_learner(args, data.num_classes, device, seeds[0], counts)
        if args.pretrained and not (args.resume and run_dir.status() == "stopped"):  # a fresh start: its weights
            from mwnet.models.imagenet import load_pretrained

            learner.source = load_pretrained(learner.model, args.pretrained)
        parts = device, seeds, data, plan, learner
    except UserError as e:
        error = str(e)
    world.settle(error)
    world.check_same("flags", distributed.flags_digest(vars(args), FREE_FLAGS))
    world.check_same("code", distributed.code_digest() if world.size > 1 else None)
    world.check_same("data", parts[2].fingerprint)
    return parts


def run_in(world, args):
    run_dir = RunDir(args.out) if world.writer else ReadOnlyRunDir(args.out)
    device, seeds, data, plan, learner = prepare(world, args, run_dir)
    config = {**vars(args), "world_size": world.size}
    with run_dir.owned():
        started = error = None
        try:
            started = start(args, config, run_dir, data, learner, device, seeds, world)
        except UserError as e:
            error = str(e)
        world.settle(error)
        if started is None:
            return EXIT_OK
        progress, tally, resumed_at, data = started
        run_dir.claim()
        report = Reporter(run_dir.file(LOG) if world.writer else None)
        s = Session(args, plan, run_dir, config, data, learner, progress, tally, report, world, seeds)
        s.checkpointed_at, s.checkpoint_time = resumed_at, time.perf_counter()
        try:
            for line in banner(args, plan, data, device, run_dir.path, resumed_at, world.size):
                s.report.line(line)
            s.tb = TensorBoard(run_dir.file(TENSORBOARD)) if args.tensorboard and world.writer else None
            s.report.start(plan.total, progress.step, f"{args.method} {args.dataset}")
            with StopSignals(hold=world.size > 1) as signals:
                outcome, detail = train(s, signals)
            return finish(s, outcome, detail)
        except RuntimeError as e:
            if world.size == 1 or not distributed.lost(e):
                raise
            kept = (
                f"the checkpoint of iteration {s.checkpointed_at} is kept"
                if s.checkpointed_at
                else "no checkpoint was written"
            )
            error = UserError(
                f"another process of the run ended ({str(e).splitlines()[0][:100]}); {kept}: continue it with torchrun and --resume {run_dir.path}"
            )
            s.report.write_log(f"error: {error}\n")
            raise error from None
        except (UserError, KeyboardInterrupt) as e:
            s.report.write_log(f"error: {e or 'interrupted'}\n")
            raise
        except Exception:
            s.report.write_log(traceback.format_exc())
            raise
        finally:
            if s.tb is not None:
                s.tb.close()
            s.report.close()


def finish(s, outcome, detail):
    """The run's end: results.json and the exit code."""
    progress, data, run_dir = s.progress, s.data, s.run_dir
    results = {
        "status": outcome,
        "best_test_acc": progress.best_acc,
        "best_iteration": progress.best_step,
        "last_test_acc": progress.last_acc,
        "noise_rate": data.noise_rate,
        "iterations": s.plan.total,
        "iters_per_sec": progress.step / progress.train_seconds if progress.train_seconds else None,
        "wall_time": progress.elapsed,
        "device": str(data.test.device),
        "precision": s.args.precision,
    }
    if data.selection is not None:  # --meta_source selected: how clean the meta set it chose was (for the record)
        results["meta_selection"] = {k: data.selection[k] for k in ("iteration", "purity", "purity_per_class", "known")}
    if outcome == "stopped":
        why = "its output was closed" if detail == signal.SIGPIPE else f"stopped by {signal.Signals(detail).name}"
        s.report.line(
            f"{why} at iteration {progress.step}; checkpoint written; continue with --resume {run_dir.path}",
            error=True,
        )
        return 128 + detail
    if outcome == "diverged":
        first, last = detail
        kept = (
            f"the checkpoint of iteration {s.checkpointed_at} is kept"
            if s.checkpointed_at
            else "no checkpoint was written"
        )
        run_dir.write_results({**results, "diverged_between": [first, last]})
        why = "a non-finite training loss, meta loss, weight or test loss"
        args = s.args
        hint = (
            f"--momentum {args.momentum:g} is 1 or more, which makes SGD grow without bound: pass one below 1"
            if args.momentum >= 1
            else "try a lower --lr"
        )
        s.report.line(
            f"{args.script}: diverged between iterations {first} and {last} ({why}); {kept}; {hint}", error=True
        )
        return EXIT_DIVERGED
    weights = progress.last_loss.cpu().numpy(), progress.last_weight.cpu().numpy()
    run_dir.save_weights(data.train_idx, data.clean_labels, data.noisy_labels, *weights)
    if not s.args.dry_run:  # the suspect labels: a pass over the training images (a dry run's would be no result)
        learner, epoch_weight = s.learner, progress.epoch_weight()
        with autocast(s.args.precision, data.test.device):
            history = progress.history_means()
            columns, sorted_by = samples.table(
                data, learner.model, learner.vnet, s.args.method, epoch_weight, s.world, history
            )
        run_dir.save_samples(columns)
        results["samples_sorted_by"] = sorted_by
    if s.learner.vnet is not None:
        run_dir.save_weighting_function(LOSS_GRID, progress.records[-1]["vnet_curve"])
    run_dir.write_results(results)
    best, last, where = progress.best_acc, progress.last_acc, run_dir.file("results.json")
    s.report.line(
        f"finished: best test accuracy {best:.2f}% (iteration {progress.best_step}), last {last:.2f}%; results in {where}"
    )
    return EXIT_OK


def resolve(script, args, argv):
    """A fresh run's directory, or a resumed run's flags: its own, stored, with only free flags given beside."""
    if not args.resume:
        args.out = args.out or os.path.join(
            "runs", args.name or default_run_name(vars(args), name_baseline(args), spec(args.dataset))
        )
        return args
    path = args.resume
    run_dir = path
    if os.path.isfile(path):
        if os.path.basename(path) != CHECKPOINT:
            raise UserError(
                f"--resume {path}: resume takes a run directory or its {CHECKPOINT}, not another file (a model_best.pt holds no optimiser or loader state: evaluate it with --evaluate)"
            )
        run_dir = os.path.dirname(path) or "."
    if not is_ours(run_dir):
        raise UserError(
            f"--resume {path}: {run_dir} is not a run directory of this project; pass the directory of a run"
        )
    stored = RunDir(run_dir).read_config()
    if stored is None and os.path.exists(os.path.join(run_dir, CHECKPOINT)):
        stored = RunDir(run_dir).load_checkpoint()["config"]  # config.json lost: the checkpoint holds the flags
    if stored is None:
        raise UserError(
            f"--resume {path}: no run there ({os.path.join(run_dir, CONFIG)} does not exist); start the run with its flags, without --resume"
        )
    given = given_flags(script, argv)
    if "out" in given and os.path.realpath(given["out"]) != os.path.realpath(run_dir):
        raise UserError(
            f"--out {given['out']} is not the resumed run's directory {run_dir}; leave --out out: a run is continued in its own directory"
        )
    given.update(resume=run_dir, out=run_dir)
    return args_from_stored(script, stored, given, run_dir)


def evaluate_checkpoint(script, args, argv):
    """--evaluate: the test loss and accuracy of a checkpoint or best model; nothing is written."""
    path, state = model_file(args.evaluate)
    given = {**given_flags(script, argv), "resume": ""}
    args = args_from_stored(script, state["config"], given, path)
    device = pick_device(args.device)
    set_numerics(args.precision, args.deterministic)
    test = load_test(args, device)
    model = build_model(args, class_count(args), image_size(args)).to(device, memory_format=torch.channels_last)
    check_state(
        model, state["model"], "the model its config names", "pass a checkpoint.pt or model_best.pt of a run", name=path
    )
    model.load_state_dict(state["model"])
    with autocast(args.precision, device):
        loss, acc = evaluate(model, test)
    step = state["step"] if "step" in state else state["progress"]["step"]
    print(
        f"{path} (iteration {step}): test loss {loss:.4f}, test accuracy {acc:.2f}% on {len(test.labels)} test images"
    )
    if not args.dry_run:
        write_samples(args, path, state, model, device, step)
    return EXIT_OK


def epoch_weights(path, progress, n):
    """A checkpoint's mean weights over the last epoch (loop_state.epoch_weight); all NaN from a checkpoint
    made before they were kept."""
    index, weight = progress.get("recent_index"), progress.get("recent_weight")
    if index is None and weight is None:
        return np.full(n, np.nan)
    fits = isinstance(index, torch.Tensor) and isinstance(weight, torch.Tensor) and index.shape == weight.shape
    if not (fits and index.dim() == 2 and index.dtype == torch.long and bool(((index >= -1) & (index < n)).all())):
        raise UserError(f"{path}: its training weights do not fit the training set; the run directory is damaged")
    return epoch_weight(index, weight, n)


def history_means(path, progress, n):
    """A checkpoint's history of each sample in training (Progress.history_means); None from a checkpoint made
    before it was kept."""
    history = progress.get("history")
    if history is None:
        return None
    if not (isinstance(history, torch.Tensor) and tuple(history.shape) == (len(WINDOWS), 3, n)):
        raise UserError(f"{path}: its training history does not fit the training set; the run directory is damaged")
    return Progress(torch.zeros(n), torch.zeros(n), history=history.double()).history_means()


def write_samples(args, path, state, model, device, step):
    """--evaluate's samples file, beside the model file in its run directory: samples-it<N>.csv of a checkpoint,
    samples-best-it<N>.csv of model_best.pt, samples-metabest-it<N>.csv of model_meta_best.pt; never into a folder this project did not make, nor into a run in use."""
    folder = os.path.dirname(os.path.abspath(path))
    kind = {BEST: "best-", META_BEST: "metabest-"}.get(os.path.basename(path), "")
    best = bool(kind)  # a best model's file: no training progress beside it
    name = f"samples-{kind}it{step}.csv"
    if not (os.path.exists(os.path.join(folder, MARKER)) and is_ours(folder)):
        say(f"note: {name} not written: {folder} is not a run directory of this project")
        return
    vnet = None
    if state.get("vnet") is not None and method(args.method).vnet:
        vnet = VNet(1, 100, 1).to(device)
        check_state(
            vnet, state["vnet"], "a meta-weight-net", "pass a checkpoint.pt or model_best.pt of a run", name=path
        )
        vnet.load_state_dict(state["vnet"])
    progress = state.get("progress") if not best else None
    if not best and not isinstance(progress, dict):
        raise UserError(f"{path} holds no training progress; the run directory is damaged")
    data = build_data(args, device, run_seeds(args.seed))
    trained_on = state.get("data_fingerprint") or (read_json(os.path.join(folder, CONFIG)) or {}).get(
        "data_fingerprint"
    )
    if trained_on not in (None, data.fingerprint) and not args.accept_other_data:
        raise UserError(
            f"{name} not written: the data under --data_path {args.data_path} is not the data {folder} was trained on (other images or labels); pass the run's own data, or --accept_other_data"
        )
    weights = None if best else epoch_weights(path, progress, len(data.train_idx))
    history = None if best else history_means(path, progress, len(data.train_idx))
    with autocast(args.precision, device):
        columns, sorted_by = samples.table(data, model, vnet, args.method, weights, history=history)
    run_dir = RunDir(folder)
    try:
        run_dir.lock()  # a training process holds it: its files are its own
    except UserError as e:
        say(f"note: {name} not written: {e}")
        return
    try:
        run_dir.save_samples(columns, name)
    finally:
        run_dir.release()
    print(
        f"samples: {run_dir.file(name)} (the training samples, most suspect first by {sorted_by}; python -m mwnet suspects)"
    )


def main(script, argv=None):
    """Entry point of both scripts: 0 when done, 2 with one line on a user's mistake or a fault, 3 when
    diverged, 128 + signal when stopped by one (docs/usage.md, "Run files")."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_args(script, argv)
        if args.evaluate:
            return evaluate_checkpoint(script, args, argv)
        return run(resolve(script, args, argv))
    except UserError as e:
        say(f"{script}: error: {e}")
        return EXIT_USER
    except KeyboardInterrupt:
        say(f"{script}: interrupted; continue from the last checkpoint with --resume <run directory>")
        return 128 + signal.SIGINT
    except BrokenPipeError:  # stdout closed outside the loop (--evaluate's line, --help): a run handles it itself
        say(f"{script}: error: its output was closed")
        return EXIT_USER
    except OSError as e:
        say(
            f"{script}: error: {e.strerror or e} ({e.filename or 'no file named'}); check the path, its permissions and free space"
        )
        return EXIT_USER


def say(line):
    """The last line, on stderr, and whatever stdout still holds; a closed one is silenced, so that Python has
    nothing to complain about at exit."""
    for stream, text in ((sys.stdout, ""), (sys.stderr, line + "\n")):
        try:
            stream.write(text)
            stream.flush()
        except OSError:
            silence(stream)
