"""The flags: each script's defaults are the original's, every bad value is one line before anything is written."""

import os
import re

import pytest
import torch
from conftest import MW, SMALL_WRN, WRN, assert_one_line_error, run_cli, run_main

from mwnet.data.catalog import spec
from mwnet.engine.components import build_learner, numerics, set_numerics
from mwnet.engine.options import PRECISIONS, build_parser, given_flags, name_baseline, parse_args
from mwnet.engine.training import make_plan
from mwnet.errors import UserError
from mwnet.runs.run_files import default_run_name

ORIGINAL_DEFAULTS = {
    "dataset": "cifar10",
    "corruption_prob": 0.4,
    "corruption_type": "unif",
    "num_meta": 1000,
    "start_epoch": 0,
    "batch_size": 100,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "layers": 28,
    "widen_factor": 10,
    "droprate": 0.0,
    "augment": True,
    "resume": "",
    "seed": 1,
    "prefetch": 0,
}
ORIGINAL_FLAGS = "--dataset --corruption_prob --corruption_type -ctype --num_meta --epochs --iters --start-epoch --batch_size --batch-size -b --lr --learning-rate --momentum --nesterov --weight-decay --wd --print-freq -p --layers --widen-factor --droprate --no-augment --resume --name --seed --prefetch"


@pytest.mark.parametrize("script,epochs,iters,nesterov", [(MW, 120, 60000, False), (WRN, 60, 20000, True)])
def test_help_lists_every_original_flag_with_its_default(script, epochs, iters, nesterov):
    args = parse_args(script, [])
    assert {k: getattr(args, k) for k in ORIGINAL_DEFAULTS} == ORIGINAL_DEFAULTS
    assert (args.epochs, args.iters, args.nesterov) == (epochs, iters, nesterov)
    # Two documented differences: the run folder is named from the configuration, and --print-freq is off.
    assert args.name is None and args.print_freq == 0 and args.precision == "fp32"
    text = " ".join(build_parser(script).format_help().split())  # argparse wraps lines
    for flag in ORIGINAL_FLAGS.split() + ["--precision"]:
        assert f" {flag}" in text, flag
    for value in [
        "(default: 0.4)",
        "(default: unif)",
        f"(default: {epochs})",
        f"(default: {iters})",
        "(default: 0.0005)",
    ]:
        assert value in text, value


def test_help_from_the_command_line():
    proc = run_cli(MW, "--help")
    assert proc.returncode == 0 and "--corruption_prob" in proc.stdout and "fp32" in proc.stdout


def test_presets_reproduce_the_original_scripts():
    mw, wrn = parse_args(MW, []), parse_args(WRN, [])
    assert (mw.arch, mw.unit, mw.sampling, mw.milestones, mw.eval_every) == ("resnet32", "epoch", "epoch", [80, 100], 1)
    assert (wrn.arch, wrn.unit, wrn.sampling, wrn.milestones, wrn.eval_every) == (
        "wrn",
        "iter",
        "random",
        [18000, 19000],
        100,
    )
    assert (mw.normalize_weights, wrn.normalize_weights, mw.method, mw.meta_grad) == (False, True, "mwnet", "jvp")
    assert (mw.meta_sampling, wrn.meta_sampling, mw.detach_vnet_input, mw.real_lr_ahead) == ("epoch", "random", True, 0)
    plan = make_plan(mw, batches_per_epoch=490, n_train=49000)
    assert (plan.total, plan.eval_period) == (120 * 490, 490)
    steps = (0, 80 * 490 - 1, 80 * 490, 100 * 490 - 1, 100 * 490)
    assert [plan.lr_at(s) for s in steps] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    assert [plan.real_lr_at(s) for s in steps] == [plan.lr_at(s) for s in steps]  # one schedule by default
    plan = make_plan(wrn, batches_per_epoch=490, n_train=49000)
    assert (plan.total, plan.eval_period) == (20000, 100) and plan.is_eval(99) and not plan.is_eval(100)
    assert [plan.lr_at(s) for s in (17999, 18000, 18999, 19000)] == pytest.approx([0.1, 0.01, 0.01, 0.001])
    m = build_learner(mw, 10, torch.device("cpu"), 0)
    assert isinstance(m.vnet_optimizer, torch.optim.Adam) and m.vnet_optimizer.defaults["weight_decay"] == 1e-4
    assert m.vnet_optimizer.defaults["lr"] == 1e-3
    assert m.optimizer.defaults["nesterov"] is False and m.optimizer.defaults["momentum"] == 0.9
    assert m.optimizer.defaults["weight_decay"] == 5e-4
    m = build_learner(parse_args(WRN, SMALL_WRN), 10, torch.device("cpu"), 0)
    v = m.vnet_optimizer.defaults
    assert isinstance(m.vnet_optimizer, torch.optim.SGD) and v["nesterov"] is True and v["weight_decay"] == 5e-4
    assert v["momentum"] == 0.9 and v["lr"] == 1e-3 and m.optimizer.defaults["nesterov"] is True


def test_class_imbalance_schedule_runs_the_real_step_one_epoch_ahead():
    """adjust_learning_rate(optimizer_a, epoch + 1) in the class-imbalance code: the real step's lr drops
    at epochs 79 and 89, the virtual step's (meta_lr, from epoch) at 80 and 90."""
    args = parse_args(MW, ["--epochs", "100", "--milestones", "80", "90", "--real_lr_ahead", "1"])
    plan = make_plan(args, batches_per_epoch=10, n_train=1000)
    for step in range(plan.total):
        epoch = step // 10
        original = 0.1 * 0.1 ** int(epoch + 1 >= 80) * 0.1 ** int(epoch + 1 >= 90)
        meta_lr = 0.1 * 0.1 ** int(epoch >= 80) * 0.1 ** int(epoch >= 90)
        assert plan.real_lr_at(step) == pytest.approx(original) and plan.lr_at(step) == pytest.approx(meta_lr)


def test_fractional_epochs_shorten_the_schedule():
    # Integer epochs keep the original's rule (lr x0.1 once epoch >= m) at every iteration.
    plan = make_plan(parse_args(MW, ["--milestones", "2", "3", "--epochs", "4"]), batches_per_epoch=7, n_train=700)
    assert [plan.lr_at(s) for s in range(28)] == pytest.approx(
        [0.1 * 0.1 ** ((s // 7 >= 2) + (s // 7 >= 3)) for s in range(28)]
    )
    args = parse_args(MW, ["--epochs", "0.25", "--milestones", "0.1667", "0.2083", "--eval_every", "0.1"])
    assert (args.epochs, args.milestones, args.eval_every) == (0.25, [0.1667, 0.2083], 0.1)
    assert parse_args(MW, ["--epochs", "3.0"]).epochs == 3 and isinstance(
        parse_args(MW, ["--epochs", "3.0"]).epochs, int
    )
    plan = make_plan(args, batches_per_epoch=590, n_train=59000)
    assert (plan.total, plan.eval_period) == (148, 59)  # round(0.25 * 590), round(0.1 * 590)
    assert [plan.lr_at(s) for s in (97, 98, 122, 123, 147)] == pytest.approx([0.1, 0.01, 0.01, 0.001, 0.001])
    assert [s for s in range(148) if plan.is_eval(s)] == [58, 117, 147]
    with pytest.raises(UserError, match="invalid int"):  # the iteration-based script counts whole iterations
        parse_args(WRN, ["--milestones", "0.5"])
    with pytest.raises(UserError, match="less than one iteration"):
        make_plan(parse_args(MW, ["--epochs", "0.0001"]), batches_per_epoch=590, n_train=59000)


def test_nesterov_flag_parses_booleans():
    assert parse_args(WRN, ["--nesterov", "False"]).nesterov is False  # type=bool made this True
    assert parse_args(MW, ["--nesterov", "true"]).nesterov is True


def test_given_flags_are_those_on_the_command_line():
    assert given_flags(MW, ["--lr", "0.2", "-b", "10", "--no-augment"]) == {
        "lr": 0.2,
        "batch_size": 10,
        "augment": False,
    }
    assert given_flags(MW, []) == {}


def run_name(script, argv):
    args = parse_args(script, argv)
    return default_run_name(vars(args), name_baseline(args), spec(args.dataset))


def test_default_run_folders_never_collide():
    """The original README's two commands, one after the other: two folders named from their configuration;
    every flag that changes the numbers makes another folder, however it is typed, and the same configuration
    keeps its folder."""
    argv = ["--dataset", "cifar10", "--corruption_type", "unif", "--corruption_prob", "0.6"]
    mw, wrn = (run_name(s, argv) for s in (MW, WRN))
    assert mw == "resnet32-cifar10-unif0.6-mwnet-s1" and wrn == "wrn-28-10-cifar10-unif0.6-mwnet-s1"
    sweep = [[], ["--method", "erm"], ["--seed", "2"], ["--dry_run"], ["--lr", "0.05"], ["--lr", "0.050001"]]
    sweep += [["--batch_size", "64"], ["--milestones"], ["--milestones", "80"], ["--no-augment"], ["--layers", "8"]]
    sweep += [["--lr", "0.05", "--batch_size", "64", "--momentum", "0.8", "--epochs", "10", "--milestones", "5"]]
    sweep += [["--lr", "0.05", "--batch_size", "64", "--momentum", "0.8", "--epochs", "10", "--milestones", "6"]]
    names = [run_name(MW, a) for a in sweep]
    assert len(set(names)) == len(sweep), names
    assert (
        names[4] == "resnet32-cifar10-unif0.4-mwnet-lr0.05-s1"
        and names[7] == "resnet32-cifar10-unif0.4-mwnet-msnone-s1"
    )
    assert names[-1].startswith("resnet32-cifar10-unif0.4-mwnet-x") and names[-1].endswith("-s1")  # many: a digest
    assert run_name(MW, ["--lr", "0.05"]) == run_name(MW, ["--learning-rate=0.050", "--lr", "0.05"])
    assert run_name(MW, ["--lr", "0.1", "--device", "cpu", "--print-freq", "5"]) == run_name(
        MW, []
    )  # defaults, free flags
    lt = ["--imb_factor", "100", "--corruption_prob", "0", "--num_meta", "100"]
    assert run_name(MW, lt) == "resnet32-cifar10-imb100-mwnet-meta100-s1"
    assert run_name(MW, ["--protocol", "laptop"]) == "smallcnn-fashionmnist-unif0.4-sub5000-laptop-mwnet-s1"
    assert run_name(MW, ["--dataset", "clothing1m"]) == "resnet50-clothing1m-web-mwnet-s1"


def test_precision_flag_maps_to_the_documented_settings():
    assert PRECISIONS == {"fp32": (False, False), "tf32": (True, False), "bf16": (False, True)}
    try:
        set_numerics("fp32", False)
        strict = numerics()
        set_numerics("tf32", False)
        loose = numerics()
    finally:
        set_numerics("fp32", False)
    assert strict != loose
    assert set(strict.values()) <= {"ieee", False} and set(loose.values()) <= {"tf32", True}


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--corruption_prob", "2"], ["[0, 1]"]),
        (["--corruption_prob", "nan"], ["finite"]),
        (["--lr", "-1"], ["--lr must be positive"]),
        (["--lr", "inf"], ["--lr", "finite"]),
        (["--momentum", "nan"], ["--momentum", "finite"]),
        (["--epochs", "inf"], ["--epochs", "finite"]),
        (["--eval_every", "inf"], ["--eval_every", "finite"]),
        (["--imb_factor", "nan"], ["--imb_factor", "finite"]),
        (["--seed", "-1"], ["--seed must lie in [0, 2**32)"]),
        (["--num_meta", "-10"], ["--num_meta must not be negative"]),
        (["--real_lr_ahead", "-1"], ["--real_lr_ahead"]),
        (["--method", "bogus"], ["invalid choice"]),
        (["--precision", "fp16"], ["invalid choice"]),
        (["--corruption_type", "gauss"], ["invalid choice"]),
        (["--nesterov", "maybe"], ["true or false"]),
        (["--milestones", "100", "80"], ["ascending"]),
        (["--epochs", "ten"], ["number of epochs"]),
        (["--epochs", "-0.5"], ["--epochs must be positive"]),
        (["--resume", "x", "--evaluate", "y"], ["exclude each other"]),
        (["--corruption_type", "hierarchical"], ["cifar100"]),
        (["--num_meta", "105"], ["multiple"]),
        (["--num_meta", "1200"], ["leaves no training images"]),  # every image of the synthetic set
        (["--batch_size", "100000", "--method", "erm"], ["--batch_size 100000 is larger than the training set"]),
        (["--epochs", "0.001"], ["--epochs 0.001", "less than one iteration"]),
        (["--epochs", "0.9"], ["--milestones 80 100 all fall at or after the run's end (epochs 0.9)", "no value"]),
    ],
)
def test_bad_values_are_one_line_and_write_nothing(capsys, cifar10_dir, tmp_path, args, fragments):
    root, _ = cifar10_dir
    result = run_main(capsys, MW, "--out", str(tmp_path / "x"), "--data_path", root, *args)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "x").exists()


def test_wrn_shape_and_tensorboard_flags(capsys, tmp_path):
    assert_one_line_error(run_main(capsys, WRN, "--layers", "27"), "6n + 4")
    assert_one_line_error(run_main(capsys, WRN, "--widen-factor", "0"), "--widen-factor")
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        assert_one_line_error(run_main(capsys, MW, "--tensorboard"), "pip install tensorboard")
    if not torch.cuda.is_available():
        assert_one_line_error(
            run_main(capsys, MW, "--out", str(tmp_path / "y"), "--device", "cuda", cpu=False), "no CUDA device"
        )
    assert not os.listdir(tmp_path)


def test_a_bad_flag_on_the_command_line_is_one_line(tmp_path):
    """The CLI wiring, once: a real process, exit code 2, one line, no usage block."""
    proc = run_cli(MW, "--lr", "nan", "--out", str(tmp_path / "x"))
    assert_one_line_error(proc, "MW-Net.py: error:", "--lr")
    assert not (tmp_path / "x").exists()


def test_help_gives_each_default_once_and_none_for_switches():
    text = " ".join(build_parser(MW).format_help().split())
    assert "--no-augment no crop and flip augmentation --resume" in text  # no "(default: True)" for a switch
    assert "200 test images --evaluate" in text  # --dry_run's help, without "(default: False)"
    assert not re.search(r"\(default: [^)]*\) \(default:", text)  # --name, --out said theirs already
    assert "(default: named from the configuration)" in text and "(default: runs/<name>)" in text
    assert "instead of the mean of v_i l_i (default: False)" in text  # a value flag keeps its default


@pytest.mark.parametrize(
    "args,fragment",
    [(["-ctype", "hierarchical"], "hierarchical noise needs CIFAR-100"), (["--num_meta", "105"], "multiple of")],
)
def test_what_needs_no_data_is_refused_before_the_data_is_looked_for(capsys, tmp_path, args, fragment):
    """With no CIFAR there, the refusal comes first, not the data's absence (or a download attempt)."""
    result = run_main(capsys, MW, "--dataset", "cifar10", "--data_path", str(tmp_path / "none"), *args)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "none").exists()


def test_flags_as_people_type_them(capsys):
    """Hyphens or underscores in any flag of the scripts and the tools; the nearest flag for a mistyped one;
    each command's usage line names the command as typed."""
    from mwnet.__main__ import main as mwnet

    typed = parse_args(
        MW, ["--corruption-prob", "0.6", "--data-path=/d", "--eval-every", "2", "--weight_decay", "1e-3"]
    )
    assert (typed.corruption_prob, typed.data_path, typed.eval_every, typed.weight_decay) == (0.6, "/d", 2, 1e-3)
    assert vars(typed) == vars(
        parse_args(MW, ["--corruption_prob", "0.6", "--data_path", "/d", "--eval_every", "2", "--wd", "1e-3"])
    )
    with pytest.raises(
        UserError, match=r"unrecognized arguments: --eval_evry 3; did you mean --eval_every\? \(see --help\)"
    ):
        parse_args(MW, ["--eval_evry", "3"])
    with pytest.raises(UserError, match=r"unrecognized arguments: --bogus$|unrecognized arguments: --bogus \(see"):
        parse_args(MW, ["--bogus"])
    help_text = build_parser(MW).format_help()
    assert "--corruption_prob" in help_text and "--corruption-prob" not in help_text  # one spelling listed
    with pytest.raises(SystemExit):
        mwnet(["summarize", "--weigths"])
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m mwnet summarize") and "did you mean --weights?" in err
    with pytest.raises(SystemExit):
        mwnet(["runner", "--gpus_per_run", "2", "--help"])
    assert capsys.readouterr().out.startswith("usage: python -m mwnet runner")
