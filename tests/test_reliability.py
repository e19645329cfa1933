"""Faults on purpose: two writers on one directory, a full disk, a read-only folder, damaged
checkpoints, stale temp files, absurd options (NaN and infinities: test_non_finite.py). Each
ends in one clear message and loses nothing."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tiny
import torch
from test_trainer import ObjectiveHook, assert_same_weights, tiny_config, weights

from ramlab import files
from ramlab import trainer as trainer_module
from ramlab.checkpoint import load_checkpoint
from ramlab.cli import main
from ramlab.config import load_yaml
from ramlab.device import set_threads
from ramlab.errors import Interrupted, RamlabError
from ramlab.lock import DirectoryLock
from ramlab.runconfig import RunConfig, TrainConfig
from ramlab.study import Study, load_preset
from ramlab.trainer import Trainer

TINY_CLI = [
    "--train-limit", "24", "--eval-limit", "8", "--batch-size", "8", "--epochs", "1", "--threads", "1",
    "--progress", "false", "--device", "cpu", "--log-every", "1",
    *[f"--{k.replace('_', '-')}={v}" for k, v in tiny.TINY_RAM.items()],
]  # fmt: skip


def hold_lock(path, command: str) -> subprocess.Popen:
    """Another process that takes `path`'s lock and keeps it until killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from ramlab.lock import DirectoryLock
        with DirectoryLock({str(path)!r}, {command!r}):
            print("locked", flush=True)
            time.sleep(120)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


# ---- one writer per directory -------------------------------------------------------------
def test_a_second_writer_of_a_run_is_refused_and_a_killed_one_leaves_no_lock(
    fake_mnist, tmp_path, capsys
) -> None:
    out = tmp_path / "run"
    holder = hold_lock(out, "ramlab train ram --seed 0 --out run")
    try:
        for resume in ([], ["--resume"]):
            assert main(["train", "ram", *TINY_CLI, "--seed", "1", "--out", str(out), *resume]) == 2
            message = capsys.readouterr().err
            assert f"{out}: another process is writing this run (process {holder.pid} on " in message
            assert "ramlab train ram --seed 0 --out run" in message and "--resume" in message
            assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written or mixed
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The OS released the killed process's lock: the run proceeds.
    assert main(["train", "ram", *TINY_CLI, "--seed", "1", "--out", str(out)]) == 0
    assert (out / "result.json").exists()


def test_a_second_study_on_one_folder_is_refused(fake_mnist, tmp_path) -> None:
    out = tmp_path / "study"
    holder = hold_lock(out, "ramlab study tiny --out study")
    try:
        with pytest.raises(
            RamlabError, match=f"another process is writing this study \\(process {holder.pid}"
        ) as refused:
            Study(load_preset("tiny"), out, command="ramlab study tiny").run()
        # `ramlab study` has no --resume: the same command goes on
        assert "(then run the same command again to go on)" in str(refused.value)
        assert "--resume" not in str(refused.value)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_a_study_job_on_a_run_another_process_holds_says_to_run_the_study_again(fake_mnist, tmp_path) -> None:
    # It advised `--resume` and another --out, which `ramlab study` has not and which would
    # start the study over.
    from test_trainer import tiny_config

    from ramlab.trainer import Trainer

    out = tmp_path / "run"
    holder = hold_lock(out, "ramlab study paper  # job: train ram-translated60-seed0")
    try:
        with pytest.raises(RamlabError, match="another process is writing this run") as refused:
            Trainer(tiny_config(), out, command="ramlab study paper  # job: ...", study_job=True).fit()
        assert str(refused.value).endswith("Wait for it to finish (then run the study again) or stop it")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_a_line_is_appended_under_the_files_lock(tmp_path) -> None:
    # jobs.jsonl takes lines from jobs on several nodes: O_APPEND alone does not keep them
    # whole between NFS clients, a lock on the file does (the writer waits for it).
    import threading

    from ramlab.lock import append_line

    path = tmp_path / "jobs.jsonl"
    path.write_text('{"job": 1}\n')
    code = textwrap.dedent(f"""
        import fcntl, os, time
        fd = os.open({str(path)!r}, os.O_WRONLY | os.O_APPEND)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(120)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        writer = threading.Thread(target=append_line, args=(path, '{"job": 2}'))
        writer.start()
        writer.join(0.5)
        assert writer.is_alive() and path.read_text() == '{"job": 1}\n'  # waits for the lock
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    writer.join(10)
    assert path.read_text() == '{"job": 1}\n{"job": 2}\n'


def test_one_process_holds_a_directory_once(tmp_path) -> None:
    with (
        DirectoryLock(tmp_path / "d", "first"),
        pytest.raises(RamlabError, match="another process is writing this run"),
        DirectoryLock(tmp_path / "d", "second"),
    ):
        pass
    with DirectoryLock(tmp_path / "d", "third"):  # released on exit
        pass


# ---- the environment ------------------------------------------------------------------------
def test_a_full_disk_is_one_message_and_resuming_loses_nothing(
    fake_mnist, tmp_path, monkeypatch, capsys
) -> None:
    out = tmp_path / "run"
    Trainer(tiny_config(), tmp_path / "whole").fit()  # (also builds the scene caches)
    real_fsync, checkpoints = os.fsync, []

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):  # a folder's, after a rename: writes nothing
            return real_fsync(fd)
        if ".last.pt." in os.readlink(f"/proc/self/fd/{fd}"):  # a checkpoint's temp file
            checkpoints.append(fd)
            if len(checkpoints) > 1:  # epoch 1's last.pt fits; then the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    with monkeypatch.context() as patch:
        patch.setattr(files.os, "fsync", fsync)
        with pytest.raises(RamlabError) as info:
            Trainer(tiny_config(), out).fit()
    message = str(info.value)
    assert (
        message.startswith(f"cannot write {out}") and "No space left on device; the disk is full" in message
    )
    assert "rerun (with --resume to continue a run)" in message
    assert not list(out.glob(".*.tmp"))  # nothing half-written
    # The resume starts from epoch 1's checkpoint (not from scratch, which would prove nothing).
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    Trainer(tiny_config(), out).fit(resume=True)
    assert weights(out / "last.pt").keys() == weights(tmp_path / "whole" / "last.pt").keys()
    for name, tensor in weights(tmp_path / "whole" / "last.pt").items():
        assert torch.equal(weights(out / "last.pt")[name], tensor), name


def test_a_read_only_folder_is_one_message(fake_mnist, tmp_path, monkeypatch, capsys) -> None:
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "ro"))

    monkeypatch.setattr("pathlib.Path.mkdir", refuse)
    assert main(["train", "ram", *TINY_CLI, "--out", str(tmp_path / "ro" / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Permission denied" in err[0] and "choose a writable --out" in err[0]


def test_a_file_given_as_the_run_folder_is_one_message(fake_mnist, tmp_path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["train", "ram", *TINY_CLI, "--out", str(tmp_path / "notes.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a file stands where a folder is needed: choose another --out" in err[0]
    assert (tmp_path / "notes.txt").read_text() == "mine"


# ---- checkpoints and temp files -------------------------------------------------------------
class Code:
    """A Python object: what a ramlab checkpoint never holds."""


def test_damaged_checkpoints_say_what_recovers_the_run(fake_mnist, tmp_path) -> None:
    out = tmp_path / "run"
    Trainer(tiny_config(epochs=1), out).fit()
    best = out / "best.pt"
    best.write_bytes(best.read_bytes()[:300])
    with pytest.raises(
        RamlabError,
        match=r"best\.pt: cannot read the checkpoint \(damaged.*\); the best weights it held are lost",
    ) as info:
        load_checkpoint(best)
    assert "new --out" in str(info.value) and "delete it" not in str(info.value)

    torch.save({"format": 2, "model": Code()}, out / "code.pt")
    with pytest.raises(RamlabError, match="not a ramlab checkpoint: it holds Python objects") as info:
        load_checkpoint(out / "code.pt")
    assert "weights_only=False" not in str(info.value)


def test_an_atomic_write_gives_the_file_the_mode_a_plain_open_would(tmp_path) -> None:
    umask = os.umask(0o027)
    try:
        written = files.write_json(tmp_path / "result.json", {"a": 1})
        (tmp_path / "plain").write_text("x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o640


def test_a_rename_reaches_the_disk_before_the_next_write(tmp_path, monkeypatch) -> None:
    # best.next.pt -> last.pt -> best.pt is ordered for a killed process; after a power loss
    # only renames whose folder was synced are sure to have happened, and in that order.
    from ramlab.checkpoint import commit_best, stage_best

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("rename") or real_replace(a, b))
    files.write_json(tmp_path / "result.json", {"a": 1})
    assert events == ["fsync file", "rename", "fsync folder"]
    events.clear()
    stage_best(tmp_path, {"epoch": 1})
    commit_best(tmp_path)
    assert events == ["fsync file", "rename", "fsync folder", "rename", "fsync folder"]
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 1


def test_temp_files_of_a_killed_write_are_cleaned_on_resume(fake_mnist, tmp_path) -> None:
    out = tmp_path / "run"
    Trainer(tiny_config(epochs=1, schedule="exponential"), out).fit()
    (out / ".last.pt.k2j3.tmp").write_bytes(b"half a checkpoint")
    Trainer(tiny_config(epochs=2, schedule="exponential"), out).fit(resume=True)
    assert not list(out.glob(".*.tmp"))


class Killed(BaseException):
    """The process dying at this point (not an exception the trainer handles)."""


def kill_at(monkeypatch, name: str, path_name: str | None = None) -> None:
    """Make the trainer's first call of `name` (on a file called `path_name`, if given) die."""
    real = getattr(trainer_module, name)

    def die(path, *args, **kwargs):
        if path_name is None or Path(path).name == path_name:
            raise Killed
        return real(path, *args, **kwargs)

    monkeypatch.setattr(trainer_module, name, die)


@pytest.mark.parametrize(
    ("name", "path_name"),
    [
        ("save_checkpoint", "last.pt"),  # killed before last.pt: the staged epoch is trained again
        ("commit_best", None),  # killed after last.pt recorded it: the staged file becomes best.pt
    ],
)
def test_a_best_epoch_killed_between_its_two_writes_resumes_to_the_same_best_pt(
    fake_mnist, tmp_path, monkeypatch, name, path_name
) -> None:
    out, whole = tmp_path / "run", tmp_path / "whole"
    Trainer(tiny_config(epochs=1), whole).fit()
    with monkeypatch.context() as patch:
        kill_at(patch, name, path_name)  # epoch 1, always a new best, is staged first
        with pytest.raises(Killed):
            Trainer(tiny_config(epochs=1), out).fit()
    assert (out / "best.next.pt").exists() and not (out / "best.pt").exists()
    assert (out / "last.pt").exists() == (path_name is None)
    result = Trainer(tiny_config(epochs=1), out).fit(resume=True)
    assert not (out / "best.next.pt").exists()
    assert_same_weights(weights(out / "best.pt"), weights(whole / "best.pt"))
    assert result["test_error"] == json.loads((whole / "result.json").read_text())["test_error"]


# ---- options --------------------------------------------------------------------------------
def test_threads_are_capped_at_the_cpus(capsys) -> None:
    from ramlab.cpus import available_cpus

    cpus = available_cpus()  # the affinity, capped by a cgroup quota
    assert set_threads(100_000) == cpus == torch.get_num_threads()
    assert f"--threads 100000 is more than the {cpus} CPUs available; using {cpus}" in capsys.readouterr().err


def test_a_key_given_twice_in_yaml_is_refused_with_its_lines(tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("model: ram\ntrain:\n  lr: 0.01\n  epochs: 3\n  lr: 0.1\n")
    with pytest.raises(RamlabError, match=r"config\.yaml: .*key 'lr' is given twice \(lines 3 and 5\)"):
        load_yaml(path)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('train: {test: "false"}', r"train: test: expected true or false; got 'false'"),
        ("train: {epochs: 1.5}", r"train: epochs: expected a whole number; got 1\.5"),
        ("train: {epochs: true}", r"train: epochs: expected a whole number; got True"),
        ("train: {seed: null}", r"train: seed: expected a whole number; got None"),
        ("train: {train_limit: 16.7}", r"train: train_limit: expected a whole number or null; got 16\.7"),
        ("train: [1, 2]", r"train: expected a mapping of keys to values; got \[1, 2\]"),
        ("model_config: {hidden: 64.5}", r"model_config: hidden: expected a whole number; got 64\.5"),
    ],
)
def test_a_config_value_of_the_wrong_type_names_its_key(tmp_path, section, message) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"model: fc\ndata: mnist\n{section}\n")
    with pytest.raises(RamlabError, match=rf"config\.yaml: {message}"):
        RunConfig.load(path)


def test_a_config_that_is_no_yaml_text_or_a_negative_option_names_itself(tmp_path) -> None:
    binary = tmp_path / "best.pt"
    binary.write_bytes(b"\x80\x02\xff\xfe")
    with pytest.raises(RamlabError, match=r"best\.pt: not a text \(YAML\) file"):
        load_yaml(binary)
    with pytest.raises(RamlabError, match=r": a folder, not a YAML file"):
        load_yaml(tmp_path)
    with pytest.raises(RamlabError, match=r"^early_stop must be >= 0, got -1$"):
        TrainConfig(early_stop=-1)


def test_sampling_a_model_that_draws_no_locations_is_refused(fake_mnist, tmp_path, capsys) -> None:
    with pytest.raises(
        RamlabError, match="eval_sample and eval_rollouts are for the RAM: the fc model draws no"
    ):
        RunConfig.from_dict({"model": "fc", "data": "mnist", "train": {"eval_rollouts": 3}})
    config = RunConfig.from_dict(
        {"model": "fc", "data": "mnist", "train": dataclasses.asdict(tiny_config(epochs=1).train)}
    )
    Trainer(config, tmp_path / "fc").fit()
    assert main(["eval", str(tmp_path / "fc"), "--rollouts", "4", "--device", "cpu"]) == 2
    assert "the FC model draws no glimpse locations" in capsys.readouterr().err


def test_a_number_yaml_reads_as_text_is_still_a_number(tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("model: fc\ndata: mnist\ntrain: {lr: 1e-3, train_limit: null}\n")  # YAML 1.1: "1e-3"
    train = RunConfig.load(path).train
    assert train.lr == 0.001 and train.train_limit is None


def test_settings_the_model_refuses_leave_no_run_directory(fake_mnist, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "ram", *TINY_CLI, "--glimpse-size", "100", "--out", str(out)]) == 2
    assert "glimpse" in capsys.readouterr().err
    assert not out.exists()


def test_ctrl_c_gives_the_exact_command_that_resumes(fake_mnist, tmp_path, monkeypatch) -> None:
    out = tmp_path / "my run"
    ObjectiveHook(monkeypatch, at=5, action="interrupt")
    command = f"ramlab train ram --config translated60 --out '{out}'"
    with pytest.raises(Interrupted) as info:
        Trainer(tiny_config(), out, command=command).fit()
    # A bare resume of the folder, quoted for the shell: it keeps the run's saved settings, where
    # repeating --config would re-read a recipe edited since.
    assert str(info.value) == (
        f"interrupted at epoch 2; the last checkpoint ({out / 'last.pt'}) is kept. "
        f"Resume with: ramlab train ram --out '{out}' --resume"
    )


def test_a_file_system_without_locks_is_named_not_blamed_on_a_holder(tmp_path, monkeypatch) -> None:
    # Every flock error read as "another process is writing", naming the last (long gone)
    # holder recorded in .lock: on NFSv3 without lockd every run was refused so.
    from ramlab import lock as lock_module

    with DirectoryLock(tmp_path / "d", "an earlier run"):
        pass

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(lock_module.fcntl, "flock", no_locks)
    with (
        pytest.raises(RamlabError, match="does not support file locks") as info,
        DirectoryLock(tmp_path / "d", "this run"),
    ):
        pass
    assert "an earlier run" not in str(info.value) and "another process" not in str(info.value)


def test_a_failed_cache_write_says_to_move_the_cache_not_the_run(tmp_path) -> None:
    from ramlab.data.cache import save_arrays

    blocker = tmp_path / "home"
    blocker.write_text("a file where the cache's folder should be")
    with pytest.raises(RamlabError, match="choose another RAMLAB_HOME") as info:
        save_arrays(blocker / "scenes" / "x.npz", {"a": np.zeros(3)})
    assert "--out" not in str(info.value)


def test_the_advice_for_a_damaged_checkpoint_leads_somewhere(tmp_path) -> None:
    # A finished run's damaged last.pt: deleting it alone met "the run has finished and has no
    # last.pt"; a damaged best.next.pt was told to restore it from a copy.
    from ramlab.checkpoint import recovery_advice

    run = tmp_path / "run"
    run.mkdir()
    assert "move" not in recovery_advice(run / "last.pt")
    (run / "result.json").write_text("{}")
    assert f"Delete {run / 'last.pt'} and move {run / 'result.json'} aside" in recovery_advice(
        run / "last.pt"
    )
    assert recovery_advice(run / "best.next.pt").startswith(
        f"it holds the best weights staged before best.pt takes them: delete {run / 'best.next.pt'} and resume"
    )
