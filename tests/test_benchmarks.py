"""The GPU session's benchmarks run on a CPU and write the JSON the session keeps: every
figure's keys and the provenance (not the speeds: machines are noisy)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ramlab.runconfig import RunConfig, config_path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
PROVENANCE = {"device", "device_name", "torch", "threads", "command", "commit"}


def run_script(name: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_time_to_accuracy_reads_a_partial_curves_config_and_refuses_a_label_twice(tmp_path) -> None:
    lines = [{"step": s, "epoch": s, "val/error": e, "perf/train_seconds": 60.0 * s, "train/rollouts": 10**6 * s}
             for s, e in ((1, 3.0), (2, 1.1), (3, 0.9))]  # fmt: skip
    curve = tmp_path / "p-val-partial.jsonl"  # a run that did not finish, its files beside it
    curve.write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "p-config.yaml").write_text("data: translated60\ntrain: {threads: 1}\n")
    (tmp_path / "p-history.jsonl").write_text(json.dumps({"changed": {"threads": [1, 2]}}) + "\n")
    out = run_script("time_to_accuracy.py", str(curve))
    first, _machine, run, *rest = out.splitlines()
    assert first.startswith("command: python ") and "; commit: " in first
    assert run == f"p: translated60, device ?, threads 1 -> 2, {curve}"
    # Its dataset gives the paper's 1.22% (and twice it) as the default targets: first at epoch 2.
    reached = rest[rest.index("validation error <= 1.22%:") + 1].split()
    assert reached == ["p", "2.0", "min", "2.00", "M", "rollouts", "(epoch", "2)"]
    assert "validation error <= 2.44%:" in rest
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "time_to_accuracy.py"), f"a={curve}", f"a={curve}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and "two runs labelled 'a'" in done.stderr


def test_compare_curves_prints_window_means(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    lines = [
        {"step": 1, "epoch": 0.5, "train/error": 2.0},
        {"step": 2, "epoch": 1, "val/error": 3.0, "val/in_box": 30.0},
        {"step": 3, "epoch": 1.5, "train/error": 1.0, "grad/core": 0.5},
        {"step": 4, "epoch": 2, "val/error": 1.0, "val/in_box": 50.0},
        {"step": 5, "epoch": 3, "val/error": 2.0, "val/in_box": 70.0},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    curve = tmp_path / "other-val.jsonl"  # a committed curve: validation lines only
    curve.write_text("".join(json.dumps(line) + "\n" for line in lines if "val/error" in line))
    out = run_script(
        "compare_curves.py", f"mine={run}", str(curve), "--windows", "1-2", "2-4",
        "--key", "val/error", "--key", "val/in_box", "--train-error", "--train-key", "grad/core",
    )  # fmt: skip
    first, *table = out.splitlines()
    assert (
        first.startswith("command: python ") and "compare_curves.py mine=" in first and "; commit: " in first
    )
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in table[1:]}
    # (3 + 1) / 2 and, over 2-4, (1 + 2) / 2 from the 2 epochs the run has; best 1.00 at epoch 2 of 3.
    assert rows[("mine", "val/error")] == ["2.00", "1.50", "(2", "ep.)", "1.00", "@", "2", "3"]
    assert rows[("mine", "val/in_box")][:1] == ["40.00"]
    # "train/error (sampled)": epoch 1's step 2.0, epoch 2's 1.0; over 2-4 only epoch 2.
    assert rows[("mine", "train/error")][1:5] == ["1.50", "1.00", "(1", "ep.)"]
    assert rows[("other", "train/error")][1] == "-"  # no training lines in a committed curve
    # grad/core is on epoch 2's step only: no value over 1-2's epoch 1, so 1-2 and 2-4 both read it alone.
    assert rows[("mine", "grad/core")][:5] == ["(training)", "0.50", "(1", "ep.)", "0.50"]
    # The 3 epochs either side of the best (epoch 2): epochs 1-3 of the run's 3, and the bare path's label.
    out = run_script("compare_curves.py", str(run), "--around-best", "3")
    assert out.splitlines()[2].split() == ["run", "val/error", "2.00", "(3", "ep.)", "1.00", "@", "2", "3"]
    # Val errors 3, 1, 2 at epochs 1-3: the best by epoch 1, 2 and 5 (past its end), the first
    # epoch at or under 2.5 and 0.5.
    out = run_script("compare_curves.py", str(run), "--budgets", "1", "2", "5", "--reach", "2.5", "0.5")
    _, header, row = out.splitlines()
    assert " ".join(header.split()[2:17]) == "best by 1 best by 2 best by 5 first <= 2.5 first <= 0.5"
    assert row.split()[2:11] == ["3.00", "1.00", "1.00", "(to", "3)", "2", "never", "1.00", "@"]
    # Patience 1 stops after epoch 3 (2 is the best); patience 2 within 2 epochs stops at 2;
    # patience 5 has not stopped when the curve ends at 3.
    out = run_script("compare_curves.py", str(run), "--early-stop", "1", "2/2", "5")
    _, header, row = out.splitlines()
    assert " ".join(header.split()[2:11]) == "early stop 1 early stop 2/2 early stop 5"
    assert " ".join(row.split()[2:]) == "1.00 @ 2, stop 3 1.00 @ 2, stop 2 1.00 @ 2, to 3 1.00 @ 2 3"
    bad = subprocess.run(
        [sys.executable, str(BENCHMARKS / "compare_curves.py"), str(run), "--windows", "5-1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "ends before it starts" in bad.stderr
    bad = subprocess.run(
        [sys.executable, str(BENCHMARKS / "compare_curves.py"), str(run), "--early-stop", "20/x"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "PATIENCE/EPOCHS" in bad.stderr
    # A run that has not started yet (its directory without metrics.jsonl) or a mistyped path:
    # a usage error that names it, not a traceback.
    (tmp_path / "unstarted").mkdir()
    for missing, says in (
        (tmp_path / "unstarted", "has no metrics.jsonl"),
        (tmp_path / "typo", "no such run"),
    ):
        bad = subprocess.run(
            [sys.executable, str(BENCHMARKS / "compare_curves.py"), str(missing), "--windows", "1-2"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert bad.returncode == 2 and str(missing) in bad.stderr and says in bad.stderr
        assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_throughput_and_concurrency_write_their_json(tmp_path) -> None:
    path = tmp_path / "throughput.json"
    run_script("throughput.py", "--device", "cpu", "--batch", "8,16", "--seconds", "0.2", "--skip-naive", "--threads", "1", "--json", str(path))  # fmt: skip
    record = json.loads(path.read_text())
    assert record.keys() >= PROVENANCE and record["device"] == "cpu"
    assert "throughput.py" in record["command"] and record["batches"] == [8, 16]
    assert record["model_config"]["core"] == "lstm"  # the translated60 recipe's RAM
    keys = {(f["model"], f["mode"], f["batch"], f["path"]) for f in record["figures"]}
    assert keys == {
        (model, mode, batch, path)
        for batch in (8, 16)
        for mode in ("train", "inference")
        for model, path in (("ram", "eager"), ("ram", "matmul-bound"), ("resnet", "eager"))
    }
    for figure in record["figures"]:
        low, high = figure["window_range"]
        assert len(figure["rates"]) == 5 and 0 < low <= figure["samples_per_s"] <= high
        assert figure["peak_memory_mib"] is None  # CUDA only
    for figure in record["figures"]:  # the recipe's 2 rollouts an image, in training only
        copies = 2 if (figure["model"], figure["mode"]) == ("ram", "train") else 1
        assert figure["rollouts_per_image"] == copies
        assert figure["images_per_s"] == pytest.approx(figure["samples_per_s"] / copies)
    eager = [f for f in record["figures"] if (f["model"], f["path"]) == ("ram", "eager")]
    bound_of = {(f["mode"], f["batch"]): f["rates"] for f in record["figures"] if f["path"] == "matmul-bound"}
    for f in eager:  # the share: the median of the rounds' own ratios, their range beside it
        ratios = f["ratios"]
        rounds = sorted(e / b for e, b in zip(f["rates"], bound_of[f["mode"], f["batch"]], strict=True))
        assert ratios["of_matmul_bound"] == pytest.approx(rounds[2]) and rounds[2] > 0
        assert (ratios["of_matmul_bound_low"], ratios["of_matmul_bound_high"]) == pytest.approx(
            (rounds[0], rounds[4])
        )

    # A later run compares itself with that one, figure by figure (closest batch present).
    again = tmp_path / "again.json"
    run_script("throughput.py", "--device", "cpu", "--batch", "12", "--seconds", "0.2", "--skip-naive", "--threads", "1", "--cpu-reference", str(path), "--json", str(again))  # fmt: skip
    compared = json.loads(again.read_text())["figures"]
    assert len(compared) == 6 and all(f["ratios"]["cpu_batch"] == 16 for f in compared)
    assert all(f["ratios"]["of_cpu"] > 0 for f in compared)
    # With a reference of another RAM it times the reference's: a ratio of two models says nothing.
    other = tmp_path / "other.json"
    out = run_script("throughput.py", "--device", "cpu", "--batch", "12", "--core", "rnn", "--seconds", "0.2", "--skip-naive", "--threads", "1", "--cpu-reference", str(path), "--json", str(other))  # fmt: skip
    assert "timed another RAM than --config recipe --core rnn gives" in out
    assert json.loads(other.read_text())["model_config"] == record["model_config"]

    path = tmp_path / "concurrency.json"
    run_script("gpu_concurrency.py", "--device", "cpu", "--counts", "1,2", "--seconds", "0.5", "--batch", "8", "--json", str(path))  # fmt: skip
    record = json.loads(path.read_text())
    assert record.keys() >= PROVENANCE and record["batch"] == 8
    assert [row["processes"] for row in record["rows"]] == [1, 2]
    for row in record["rows"]:
        assert row["error"] is None
        assert len(row["per_process_samples_per_s"]) == row["processes"]
        assert row["aggregate_samples_per_s"] == pytest.approx(sum(row["per_process_samples_per_s"]))
        assert all(steps > 0 for steps in row["steps"])
    assert record["rows"][0]["ratio_to_one"] == 1.0


def test_profile_step_sorts_a_steps_time_into_categories(tmp_path) -> None:
    path = tmp_path / "profile.json"
    out = run_script("profile_step.py", "--device", "cpu", "--eager", "--batch", "8", "--steps", "2", "--threads", "1", "--json", str(path))  # fmt: skip
    record = json.loads(path.read_text())
    assert record.keys() >= PROVENANCE and record["path"] == "eager" and record["batch"] == 8
    for mode in ("train", "inference"):
        result = record["modes"][mode]
        categories = result["by_category_s"]
        assert list(categories) == ["matrix products", "glimpse gathers", "other fused kernels", "other ops", "compiled-region wrappers", "outside any op"]  # fmt: skip
        # The eager RAM's products and its retina's gathers are found, and the categories
        # add up to no more than the profiled step (host time on one thread).
        assert result["ops"]["aten::addmm"]["calls"] > 0 and categories["matrix products"] > 0
        # six glimpses' gathers, and in training one more where the reward reads log p(y | h_t)
        reads_log_p = (
            mode == "train" and "infogain" in RunConfig.load(config_path("translated60")).model_config.reward
        )
        assert result["ops"]["aten::gather"]["calls"] == 6 + reads_log_p and categories["glimpse gathers"] > 0
        assert result["ops"]["profile_step.py: one step"]["calls"] == 1
        assert 0 < sum(categories.values()) <= result["profiled_wall_s"] * 1.05
    assert "a step (" in out and "samples/s" in out
    done = subprocess.run([sys.executable, str(BENCHMARKS / "profile_step.py"), "--mode", "training"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode != 0 and "unknown ['training']; choose from train, inference" in done.stderr
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from profile_step import category
    finally:
        sys.path.remove(str(BENCHMARKS))
    # The compiled CPU graph calls its products through the C++ wrapper's shims.
    for name in ("aten::addmm", "aoti_torch_cpu_addmm_out", "aoti_torch_cpu_mm_out", "aten::mm"):
        assert category(name) == "matrix products", name
    assert category("aoti_torch_cpu_gather_out") == "glimpse gathers"
    # Hopper's cuBLAS names many of its products without "gemm"
    assert category("nvjet_sm90_tst_128x64_64x4_1x2_h_bz_coopA_NNT") == "matrix products"
    assert category("aten::add") == category("aoti_torch_cpu_cat") == "other ops"


def test_retina_ab_pairs_two_copies_of_one_ram_that_differ_only_in_the_retina() -> None:
    # The retina of a commit is read with `git show` (HEAD here: a checkout may be shallow), and
    # the pair has the same weights, so the A/B times retinas and nothing else.
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCHMARKS, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import retina_ab
    finally:
        sys.path.remove(str(BENCHMARKS))
    import torch

    from ramlab.models.ram import RAMConfig

    then = retina_ab.retina_class_of("HEAD")
    assert then.__module__ == "retina_then"
    old, new = retina_ab.pair(RAMConfig(glimpses=3, glimpse_size=4, scales=2), (20, 20), then)
    assert type(old.retina) is then and type(new.retina) is not then
    assert all(torch.equal(a, b) for a, b in zip(old.parameters(), new.parameters(), strict=True))
    images = torch.rand(4, 1, 20, 20, generator=torch.Generator().manual_seed(0))
    a, b = (m(images, sample=True, generator=torch.Generator().manual_seed(1)) for m in (old, new))
    assert torch.equal(a.logits, b.logits)


@pytest.mark.slow
def test_fastpath_ab_finds_both_wrappers_give_the_same_step_and_sees_a_changed_weight() -> None:
    # The C++ wrapper calls the kernels the Python one calls: the same loss, gradients, logits
    # and locations bit for bit. The check is no formality: a nudged weight shows.
    from ramlab.fastpath import cpu_compiler

    if cpu_compiler() is None:
        pytest.skip("no C++ compiler for inductor on PATH")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import fastpath_ab
    finally:
        sys.path.remove(str(BENCHMARKS))
    import torch

    from ramlab.models.ram import RAMConfig

    assert fastpath_ab.BEFORE == {"cpp_wrapper": False}
    old, new = fastpath_ab.twins(RAMConfig(glimpses=3, glimpse_size=4, scales=2, core="lstm"), (20, 20))
    data = torch.Generator().manual_seed(0)
    images, labels = torch.rand(4, 1, 20, 20, generator=data), torch.randint(0, 10, (4,), generator=data)
    bboxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).repeat(4, 1)
    then = fastpath_ab.outputs(old, images, labels, bboxes, fastpath_ab.BEFORE)
    now = fastpath_ab.outputs(new, images, labels, bboxes, None)
    assert fastpath_ab.largest_differences(then, now) == dict.fromkeys(then, 0.0)
    with torch.no_grad():
        new.classifier.fc.weight[0, 0] += 0.5
    nudged = fastpath_ab.outputs(new, images, labels, bboxes, None)
    differences = fastpath_ab.largest_differences(then, nudged)
    assert differences["loss"] > 0 and differences["logits"] > 0


def test_a_ratio_per_image_counts_a_rams_rollouts_once() -> None:
    # The translated60 recipe trains 2 rollouts an image: 128 samples are 64 images, while a
    # ResNet's 128 are 128; the RAM/ResNet ratio compared rollouts/s with images/s.
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from timing import Figure
    finally:
        sys.path.remove(str(BENCHMARKS))
    ram = Figure("ram", "train", 128, "eager", rates=[2000.0, 2200.0, 1800.0], rollouts_per_image=2)
    resnet = Figure("resnet", "train", 128, "eager", rates=[500.0, 500.0, 600.0])
    assert ram.images_per_s == 1000.0 and ram.to_dict()["images_per_s"] == 1000.0
    # Rounds: 2000/2/500 = 2.0, 2200/2/500 = 2.2, 1800/2/600 = 1.5; their median 2.0.
    assert ram.share_of(resnet, "ram_over_resnet", per_image=True) == pytest.approx(2.0)
    assert (ram.ratios["ram_over_resnet_low"], ram.ratios["ram_over_resnet_high"]) == pytest.approx(
        (1.5, 2.2)
    )
    assert ram.share_of(resnet, "per_sample") == pytest.approx(4.0)  # samples/s, as before
    assert "= 1,000 images/s at 2 rollouts an image" in ram.line("ramlab")


def test_a_benchmarks_first_line_names_its_command_and_commit(monkeypatch) -> None:
    from ramlab import provenance

    monkeypatch.setattr(sys, "argv", ["benchmarks/retina_tables.py", "--threads", "2"])
    monkeypatch.setattr(provenance, "git_commit", lambda: None)
    monkeypatch.setenv("RAMLAB_COMMIT", "abc1234")
    line = provenance.command_line()
    assert line == "command: python benchmarks/retina_tables.py --threads 2; commit: abc1234"
    monkeypatch.delenv("RAMLAB_COMMIT")
    assert provenance.command_line().endswith("; commit: unknown")


def test_compare_curves_refuses_a_key_its_validation_lines_lack(tmp_path) -> None:
    # A misspelt --key printed a row of '-'; a list-valued one (val/per_step_error) a traceback.
    # (A key some runs never logged, a CNN's val/in_box, still reads '-' for them.)
    curve = tmp_path / "r-val.jsonl"
    curve.write_text(
        json.dumps({"step": 1, "epoch": 1, "val/error": 3.0, "val/per_step_error": [4.0, 3.0]}) + "\n"
    )
    for key in ("val/in_bx", "val/per_step_error"):
        done = subprocess.run(
            [sys.executable, str(BENCHMARKS / "compare_curves.py"), str(curve), "--windows", "1-1", "--key", key],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert (
            f"--key {key} is not a number on the runs' validation lines; they have: epoch, step, val/error"
            in done.stderr
        )
