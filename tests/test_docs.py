"""The docs and the code agree: every command in README.md and docs/*.md names a file that exists and only flags its
script takes, and every table script's number of runs and seeds stated there is what the script plans."""

import contextlib
import glob
import io
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

DOCS = ["README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))]
TRAINING = ("MW-Net.py", "train_WRN-28-10_Meta_PGC.py")
TOOLS = {"runner": "scripts/runner.py", "summarize": "scripts/summarize.py", "plot": "scripts/plot.py"}
TOOLS.update({"split": "load_corrupted_data.py", "laptop": "mwnet/tools/laptop.py"})
_HELP = {}


def help_text(path):
    """What `python PATH --help` prints, run in this process (its module-level code and argparse only)."""
    if path not in _HELP:
        out, argv = io.StringIO(), sys.argv
        sys.argv = [path, "--help"]
        try:
            with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
                runpy.run_path(os.path.join(ROOT, path), run_name="__main__")
        finally:
            sys.argv = argv
        _HELP[path] = out.getvalue()
    return _HELP[path]


def spelling(flag):
    return flag.split("=")[0].replace("_", "-")


def commands(text):
    """The command lines of a Markdown text: each line of its fenced blocks (continuations joined) and each
    inline code span, split at && ; and |."""
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
    lines = [line for b in blocks for line in b.replace("\\\n", " ").splitlines()]
    lines += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return [part for line in lines for part in re.split(r"&&|;|\|", line)]


def script_of(words):
    """(the script a command runs, relative to the checkout; the words after it), or (None, [])."""
    for i, word in enumerate(words):
        name = os.path.basename(word)
        if name in TRAINING:
            return name, words[i + 1 :]
        if word == "mwnet" and i and words[i - 1] == "-m" and i + 1 < len(words):
            command = words[i + 1]
            if command in TRAINING or command in TOOLS:
                return (command if command in TRAINING else TOOLS[command]), words[i + 2 :]
            return None, []
        if re.fullmatch(r"(\./)?(scripts|benchmarks|examples)/[\w.-]+\.(py|sh)|load_corrupted_data\.py", word):
            return word.removeprefix("./"), words[i + 1 :]
    return None, []


def problems(paths):
    """Every command of the docs at `paths` that names a missing file or a flag its script does not take."""
    found = []
    for doc in paths:
        with open(doc) as f:
            text = f.read()
        for line in commands(text):
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            script, rest = script_of(words)
            if script is None:
                continue
            if not os.path.exists(os.path.join(ROOT, script)):
                found.append(f"{doc}: {line.strip()}: no {script}")
                continue
            if not script.endswith(".py") or script.startswith("examples/"):  # the examples take no flags
                continue
            known = {spelling(f) for f in re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", help_text(script))}
            found += [
                f"{doc}: {line.strip()}: {script} takes no {w}"
                for w in rest
                if w.startswith("-") and spelling(w) not in known and not re.fullmatch(r"-[\d.e-]+", w)
            ]
    return found


def test_every_command_in_the_docs_runs_an_existing_script_with_its_own_flags():
    assert problems([os.path.join(ROOT, d) for d in DOCS]) == []


def test_the_check_finds_an_unknown_flag_in_a_copy_of_the_readme(tmp_path):
    copy = tmp_path / "README.md"
    shutil.copy(os.path.join(ROOT, "README.md"), copy)
    with open(copy, "a") as f:
        f.write("\n```bash\npython MW-Net.py --dataset fashionmnist --eval_evry 2\npython scripts/table_none.sh\n```\n")
    assert problems([copy]) == [
        f"{copy}: python MW-Net.py --dataset fashionmnist --eval_evry 2: MW-Net.py takes no --eval_evry",
        f"{copy}: python scripts/table_none.sh: no scripts/table_none.sh",
    ]


def planned(script):
    """(runs, seeds) a table script plans with its defaults: its PRINT=1 listing."""
    env = dict(os.environ, PRINT="1", RUNS="runs", DATA="data")
    for key in ("SEEDS", "DATASETS", "DRY_RUN", "EXTRA"):
        env.pop(key, None)
    out = subprocess.run(["bash", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    return len(lines), len({m for line in lines for m in re.findall(r"--seed (\d+)", line)})


def test_the_runs_and_seeds_stated_for_each_table_script_are_what_it_plans():
    stated = []
    for doc in DOCS:
        header = None
        for line in open(os.path.join(ROOT, doc)):
            cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
            if cells and "runs" in cells:
                header = cells
            for script in re.findall(r"scripts/table_\w+\.sh", line):
                for seeds in re.findall(r"(\d+) seeds", line):
                    stated.append((doc, script, "seeds", int(seeds)))
                if cells and header and len(cells) == len(header) and cells[header.index("runs")].isdigit():
                    stated.append((doc, script, "runs", int(cells[header.index("runs")])))
            if not line.startswith("|"):
                header = None
    assert len([s for s in stated if s[2] == "runs"]) >= 6  # README's cost table
    for doc, script, what, number in stated:
        runs, seeds = planned(script)
        assert number == (runs if what == "runs" else seeds), (
            f"{doc}: {script}: {number} {what}, plans {runs} runs of {seeds} seeds"
        )


def test_the_label_error_tables_are_what_the_benchmark_summarizes_from_the_committed_files():
    """docs/results-fashion-mnist.md, "Finding the wrong labels": bench_label_errors --summarize over
    results/bench_label_errors, verbatim (the settings' table, each setting's, the clean-and-retrain tables)."""
    from benchmarks.bench_label_errors import summarize

    printed = summarize(os.path.join(ROOT, "results", "bench_label_errors")).strip()
    assert "Over the settings" in printed and "clean and retrain" in printed and "shortened check" not in printed
    with open(os.path.join(ROOT, "docs", "results-fashion-mnist.md")) as f:
        assert printed in f.read()


def anchor(heading):
    """A Markdown heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def links(path):
    """(line number, target) of every link and image in a Markdown file, code blocks left out."""
    found, fenced = [], False
    for number, line in enumerate(open(path), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced:
            found += [(number, t) for t in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line))]
    return found


def broken_links(paths):
    out = []
    for path in paths:
        for number, target in links(path):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto: are not ours to check here
                continue
            file, _, fragment = target.partition("#")
            where = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            if not os.path.exists(where):
                out.append(f"{path}:{number}: {target}: no such file")
            elif fragment and where.endswith(".md"):
                headings = [anchor(h) for h in re.findall(r"(?m)^#+ (.*)$", open(where).read())]
                if fragment not in headings:
                    out.append(f"{path}:{number}: {target}: no heading #{fragment}")
    return out


def test_every_relative_link_in_the_readme_and_the_docs_resolves():
    assert broken_links([os.path.join(ROOT, d) for d in DOCS]) == []


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    doc = tmp_path / "doc.md"
    (tmp_path / "other.md").write_text("# The paper's claims: here\n")
    doc.write_text(
        "[a](other.md#the-papers-claims-here) [b](missing.md) [c](other.md#nowhere) [d](https://example.org)\n"
        "```\n[e](not-checked.md)\n```\n"
    )
    assert broken_links([str(doc)]) == [
        f"{doc}:1: missing.md: no such file",
        f"{doc}:1: other.md#nowhere: no heading #nowhere",
    ]
