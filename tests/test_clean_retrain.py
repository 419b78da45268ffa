"""Clean and retrain: --exclude RUN --exclude_top K trains again without a run's K most suspect samples."""

import json
import os

import pytest
from conftest import MW, run_main, write_fashion

from mwnet.data.catalog import spec
from mwnet.engine.options import parse_args
from mwnet.runs.run_files import default_run_name, read_samples

SMALL = ["--protocol", "laptop", "--train_subset", "100", "--num_meta", "20", "--batch_size", "20"]
SMALL += ["--epochs", "2", "--milestones", "1", "--corruption_type", "flip2", "--corruption_prob", "0.4"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    import contextlib
    import io

    from mwnet.engine import launch

    root = tmp_path_factory.mktemp("fm")
    write_fashion(str(root), per_class=30)
    out = tmp_path_factory.mktemp("first") / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        assert launch.main(MW, [*SMALL, "--data_path", str(root), "--out", str(out), "--device", "cpu"]) == 0
    return str(root), str(out)


def test_a_retrained_run_leaves_out_exactly_the_top_k_suspects(first_run, tmp_path, capsys):
    root, first = first_run
    out = str(tmp_path / "again")
    result = run_main(capsys, MW, *SMALL, "--data_path", root, "--exclude", first, "--exclude_top", "15", "--out", out)
    assert result.returncode == 0, result.stderr
    before, after = read_samples(first), read_samples(out)
    top = set(before["index"][:15])
    assert set(after["index"]) == set(before["index"]) - top and len(after["index"]) == 85
    given = dict(zip(before["index"], before["given_label"], strict=True))
    assert all(given[i] == label for i, label in zip(after["index"], after["given_label"], strict=True))
    config = json.load(open(os.path.join(out, "config.json")))
    assert (config["exclude"], config["exclude_top"]) == (first, 15)
    args = parse_args(MW, [*SMALL, "--exclude", first, "--exclude_top", "15"])
    name = default_run_name(vars(args), vars(parse_args(MW, ["--protocol", "laptop"])), spec(args.dataset))
    assert "-excl15-" in name and name != default_run_name(vars(parse_args(MW, SMALL)), {}, spec("fashionmnist"))


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--exclude_top", "5"], "--exclude RUN_OR_FILE and --exclude_top K (> 0) go together"),
        (["--exclude", "RUN"], "--exclude RUN_OR_FILE and --exclude_top K (> 0) go together"),
        (["--exclude", "RUN", "--exclude_top", "101"], "lists 100 samples; pass a smaller --exclude_top"),
        (
            ["--exclude", "RUN", "--exclude_top", "5", "--seed", "2"],
            "the file was made from other data or another split",
        ),
        (["--exclude", "nowhere", "--exclude_top", "5"], "does not exist"),
    ],
)
def test_a_samples_file_that_does_not_fit_is_one_line_and_writes_nothing(first_run, tmp_path, capsys, flags, fragment):
    root, first = first_run
    flags = [first if f == "RUN" else str(tmp_path / f) if f == "nowhere" else f for f in flags]
    out = tmp_path / "again"
    result = run_main(capsys, MW, *SMALL, "--data_path", root, *flags, "--out", str(out))
    assert result.returncode == 2 and fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(f.name.endswith((".json", ".jsonl", ".csv")) for f in out.iterdir())
