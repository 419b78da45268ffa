"""The GPU self-check, one command: does this machine run the CUDA path correctly, and how fast?

    bash scripts/gpu_check.sh                            # the interpreter: $PYTHON, default python3
    PYTHON=.venv/bin/python OUT=runs/gpu-check bash scripts/gpu_check.sh

1. tests/test_cuda.py: dry runs of both scripts in each --precision; fp32 really strict float32; one step of
   each method on CUDA equal to the CPU's in float64 (V fed the loss detached or not); float32 steps, in
   channels_last with cuDNN's persistent BatchNorm too, within float32's rounding of the float64 step; tf32
   and bf16 steps within their rounding of fp32's; a WRN-28-10 step; no host synchronisation in an iteration;
   equal batches; --deterministic runs that repeat, and a resume that continues them bit for bit; --evaluate.
2. benchmarks/bench_step.py: ms per iteration of each method, ResNet-32 and WRN-28-10, in each precision.
3. A summary of what passed, failed or was not reached, and the benchmark's ratios; it always comes, even after
   a failure or a timeout. Exit 0 only if every check passed and the benchmark ran.
Files in $OUT: test_cuda.log, test_cuda.xml, bench_step.log, bench_step.json, summary.txt. Budget: 8 minutes.
"""

import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_SECONDS, BENCH_SECONDS = 300, 150


def run(cmd, log, seconds):
    """Run `cmd` (in the checkout), its output to the screen and to `log`; the exit code, or None on a timeout."""
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def pump():
            for line in proc.stdout:
                sys.stdout.write(line)
                f.write(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        reader.join(timeout=10)
        if code is None:
            f.write(f"gpu_check: stopped after {seconds} s\n")
        return code


def test_outcomes(xml_path):
    """{test name: passed, failed or skipped} from pytest's JUnit XML."""
    if not os.path.exists(xml_path):
        return {}
    out = {}
    for case in ET.parse(xml_path).iter("testcase"):
        kinds = {child.tag for child in case}
        out[case.get("name")] = (
            "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        )
    return out


def main():
    try:
        import torch
    except ImportError:
        sys.stderr.write(
            f"gpu_check: torch is not installed for {sys.executable}; install requirements.txt or set PYTHON\n"
        )
        return 2
    if not torch.cuda.is_available():
        sys.stderr.write("gpu_check: no CUDA device is visible; this check needs a GPU (run it on a GPU machine)\n")
        return 2
    out = os.path.abspath(os.environ.get("OUT", os.path.join(ROOT, "runs", "gpu-check")))
    os.makedirs(out, exist_ok=True)
    start = time.monotonic()
    xml = os.path.join(out, "test_cuda.xml")
    pytest = [sys.executable, "-m", "pytest", "tests/test_cuda.py", "-v", "-p", "no:cacheprovider", f"--junitxml={xml}"]
    tests_code = run(pytest, os.path.join(out, "test_cuda.log"), TEST_SECONDS)
    bench = [sys.executable, "benchmarks/bench_step.py", "--warmup", "3", "--iters", "10"]
    bench += ["--json", os.path.join(out, "bench_step.json")]
    bench_code = run(bench, os.path.join(out, "bench_step.log"), BENCH_SECONDS)
    outcomes = test_outcomes(xml)
    counts = {k: sum(v == k for v in outcomes.values()) for k in ("passed", "failed", "skipped")}
    lines = [
        f"gpu_check on {torch.cuda.get_device_name()} (torch {torch.__version__}, {sys.executable}), {time.monotonic() - start:.0f} s",
        f"tests/test_cuda.py: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
        + ("" if tests_code is not None else f" (stopped after {TEST_SECONDS} s: the rest was not reached)"),
        *[f"  FAILED {name}" for name, v in outcomes.items() if v == "failed"],
    ]
    with open(os.path.join(out, "bench_step.log")) as f:
        ratios = [line.rstrip() for line in f if ": MW-Net(jvp)/plain" in line]
    state = (
        "ran" if bench_code == 0 else f"did not finish (exit {bench_code})" if bench_code is not None else "timed out"
    )
    rows = os.path.join(out, "bench_step.json")
    lines += [f"benchmarks/bench_step.py {state}" + (f"; rows in {rows}" if os.path.exists(rows) else ""), *ratios]
    ok = tests_code == 0 and counts["failed"] == 0 and counts["passed"] > 0 and bench_code == 0
    lines.append("gpu_check: " + ("every check passed" if ok else "NOT every check passed; see the logs in " + out))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write(text)
    print("\n" + text, end="")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
