"""The command line refuses what would lose files or quietly mean something else: a --json
that would overwrite a run's own files, and empty paths (found by an audit of bad input)."""

from __future__ import annotations

import json

import pytest
from test_cli_train import TINY
from test_study import write_preset

from ramlab.cli import main
from ramlab.errors import RamlabError
from ramlab.study import load_preset


@pytest.fixture
def run(fake_mnist, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "ram", "--data", "translated60", *TINY, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name", ["result.json", "config.yaml"])
def test_eval_json_never_overwrites_a_runs_own_files(run, capsys, name):
    before = (run / name).read_bytes()
    capsys.readouterr()
    assert main(["eval", str(run), "--device", "cpu", "--threads", "1", "--json", str(run / name)]) == 2
    assert "that file holds something other than an evaluation" in capsys.readouterr().err
    assert (run / name).read_bytes() == before
    # its own earlier output it may replace
    again = run.parent / "eval.json"
    for _ in range(2):
        assert main(["eval", str(run), "--device", "cpu", "--threads", "1", "--json", str(again)]) == 0
    assert json.loads(again.read_text())["run"] == str(run)


def test_cost_json_never_overwrites_another_file(run, capsys):
    before = (run / "result.json").read_bytes()
    argv = ["cost", "--models", "fc", "--sizes", "28", "--repeats", "1", "--batch", "2", "--device", "cpu"]
    assert main([*argv, "--json", str(run / "result.json")]) == 2
    assert "that file holds something other than a cost table" in capsys.readouterr().err
    assert (run / "result.json").read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["train", "ram", "--config", ""], "--config"),
        (["train", "ram", "--init-from", ""], "--init-from"),
        (["train", "ram", "--out", " "], "--out"),
        (["eval", "", "--json", "x.json"], "RUN_DIR"),
        (["eval", "somewhere", "--json", ""], "--json"),
        (["report", ""], "DIR"),
        (["cost", "--config", ""], "--config"),
    ],
)
def test_an_empty_path_is_refused(argv, name, capsys):
    # "" from an unset shell variable meant "not given" or the current folder.
    assert main(argv) == 2
    assert f"ramlab: error: {name} is empty: give a file or folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, prog",
    [
        (["train", "ram", "--data", "nosuch"], "ramlab train ram"),
        (["nosuch"], "ramlab"),
        (["eval"], "ramlab eval"),
    ],
)
def test_a_usage_error_is_its_line_and_where_help_is_not_the_whole_usage(argv, prog, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err.splitlines()
    assert stop.value.code == 2 and len(err) == 2, err
    assert err[0].startswith(f"{prog}: error: ") and err[1] == f"(`{prog} --help` lists its arguments)"
    if "nosuch" in argv:
        assert "invalid choice: 'nosuch' (choose from " in err[0]  # the valid names listed


def test_a_run_whose_weights_do_not_fit_its_config_is_a_clear_error(run, capsys):
    # config.yaml edited by hand (or another run's best.pt): not torch's size-mismatch traceback
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("hidden: 12", "hidden: 16"))
    capsys.readouterr()
    assert main(["eval", str(run), "--device", "cpu", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "best.pt: its weights do not fit this model" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("flag", "value"), [("--seed", str(2**63)), ("--seed", "-1"), ("--data-seed", str(2**32))]
)
def test_a_seed_out_of_range_is_refused(tmp_path, capsys, flag, value):
    # 2^63 gave seed 0's numbers; 2^64 and more a traceback
    assert main(["train", "ram", flag, value, "--out", str(tmp_path / "r")]) == 2
    assert (
        f"{flag.removeprefix('--').replace('-', '_')} must be in 0..4294967295, got {value}"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "r").exists()


def test_running_out_of_memory_says_what_to_lower(monkeypatch, capsys):
    from ramlab.cli import cost as cost_cli

    def huge(*args, **kwargs):
        raise RuntimeError(
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 512000000000 bytes."
        )

    monkeypatch.setattr(cost_cli, "measure_costs", huge)
    assert main(["cost", "--models", "fc", "--sizes", "1000000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ramlab: error: out of memory (DefaultCPUAllocator: can't allocate memory")
    assert "--sizes" in err


def test_an_interrupt_without_a_message_says_what_was_kept(monkeypatch, capsys):
    from ramlab.cli import cost as cost_cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C outside the trainer's own handler: it printed "ramlab: "

    monkeypatch.setattr(cost_cli, "measure_costs", interrupted)
    assert main(["cost", "--models", "fc", "--sizes", "28"]) == 130
    assert capsys.readouterr().err.startswith("ramlab: interrupted (finished work is kept;")


def test_a_recipe_reads_and_writes_as_utf8_whatever_the_locale(tmp_path):
    # The recipes hold × and ±: under LC_ALL=C they read as "not a text (YAML) file".
    import os
    import subprocess
    import sys

    code = (
        "import sys; from ramlab.config import load_yaml, save_yaml; from ramlab.runconfig import config_path; "
        "assert sys.getfilesystemencoding() and __import__('locale').getpreferredencoding(False).lower() != 'utf-8'; "
        "saved = save_yaml(sys.argv[1], {**load_yaml(config_path('cluttered100')), 'note': '12\\u00d712 \\u00b1'}, header='\\u00d7'); "
        "assert saved.read_bytes().decode('utf-8').startswith('# \\u00d7\\n'); print(load_yaml(saved)['model'])"
    )
    env = {
        **os.environ,
        "LC_ALL": "C",
        "LANG": "C",
        "PYTHONUTF8": "0",
        "PYTHONCOERCECLOCALE": "0",
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "c.yaml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ram", done.stderr[-2000:]


def test_folders_of_the_other_kind_are_refused(run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["study", "tiny", "--out", str(run), "--list"]) == 2
    assert "is a training run's folder (its config.yaml)" in capsys.readouterr().err
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.yaml").write_text("# ramlab study of preset: tiny\n")
    assert main(["train", "ram", "--data", "translated60", *TINY, "--out", str(study), "--resume"]) == 2
    assert "is a study's folder (its study.yaml" in capsys.readouterr().err
    assert sorted(p.name for p in study.iterdir()) == ["study.yaml"]
    assert main(["study", "tiny", "--out", str(tmp_path / "s"), "--seeds", "1000000", "--list"]) == 2
    assert "--seeds must be 1..100" in capsys.readouterr().err


def test_a_shift_given_twice_is_named(run, capsys):
    # it read "--levels needs exactly one --shift", with exactly one shift named
    capsys.readouterr()
    argv = ["robustness", str(run), "--shift", "noise", "--shift", "noise", "--levels", "0"]
    assert main([*argv, "--device", "cpu", "--threads", "1", "--split", "val"]) == 2
    assert "--shift noise given more than once: give each shift once" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train: {lr: -1e-3}", "c.yaml: train: lr must be > 0, got -0.001"),  # named by file and section
        ("train: {epochs: 2, 2: 3}", "c.yaml: train: unknown key(s) 2; valid: "),  # a traceback before
        ("on: 1\nmodel: ram", "c.yaml: unknown key(s) True; valid: data, model, model_config, train"),
        ("data: [mnist]", "c.yaml: data must be one of "),  # unhashable: a TypeError's traceback
        ("train: {[a]: 1}", "c.yaml: not valid YAML (a key must be a name or a number"),
    ],
)
def test_a_config_files_bad_value_names_the_file(tmp_path, capsys, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(f"model: ram\n{text}\n" if not text.startswith("on") else text + "\n")
    assert main(["train", "ram", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"ramlab: error: {tmp_path / message}" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["timeout_min=[1"], "--option 'timeout_min=[1': VALUE is not valid YAML"),
        (
            ["sbatch=1", "sbatch.partition=gpu"],
            "--option sbatch.partition is given twice, or sbatch both as a value",
        ),
        (["sbatch.partition=gpu", "sbatch=1"], "--option sbatch is given twice, or sbatch both as a value"),
        (["retries=1", "retries=2"], "--option retries is given twice"),
        (["sbatch.partition=a", "sbatch.partition=b"], "--option sbatch.partition is given twice"),
        (["sbatch.=x"], "--option 'sbatch.=x': write sbatch.KEY=VALUE"),
    ],
)
def test_bad_executor_options_are_named_before_anything_runs(tmp_path, capsys, options, message):
    argv = ["study", "tiny", "--out", str(tmp_path / "s"), "--executor", "local", "--jobs", "1"]
    assert main([*argv, *(a for o in options for a in ("--option", o))]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_executor_option_values_are_read_as_the_config_files_are():
    from ramlab.cli.study import parse_options

    options = parse_options(["timeout_min=1e3", "retries=2", "sbatch.partition=gpu", "sbatch.qos=1e5x"])
    assert options == {"timeout_min": 1000.0, "retries": 2, "sbatch": {"partition": "gpu", "qos": "1e5x"}}
    # #SBATCH values as written: YAML 1.1 read 2:00:00 as 7200, 0123 as 83 and on as True
    options = parse_options(["sbatch.mem-per-cpu=2:00:00", "sbatch.account=0123", "sbatch.qos=on"])
    assert options == {"sbatch": {"mem-per-cpu": "2:00:00", "account": "0123", "qos": "on"}}
    # a bare flag (#SBATCH --exclusive): no value, or true, which submitit writes bare
    assert parse_options(["sbatch.exclusive=", "sbatch.hold=true"]) == {
        "sbatch": {"exclusive": True, "hold": True}
    }


@pytest.mark.parametrize("name", ["result.json", "config.yaml"])
def test_robustness_json_never_overwrites_nor_says_to_delete_a_runs_own_files(run, capsys, name):
    before = (run / name).read_bytes()
    capsys.readouterr()
    argv = ["robustness", str(run), "--shift", "noise", "--levels", "0", "--limit", "4", "--device", "cpu"]
    assert main([*argv, "--json", str(run / name)]) == 2
    err = capsys.readouterr().err
    assert "that file holds something other than a robustness sweep" in err and "delete" not in err
    assert (run / name).read_bytes() == before


def test_a_damaged_sweep_file_is_named_as_one_with_its_fix(run, capsys):
    damaged = run / "robustness.json"
    damaged.write_text('{"format": 7, "shi')  # cut short
    argv = ["robustness", str(run), "--shift", "noise", "--levels", "0", "--limit", "4", "--device", "cpu"]
    assert main([*argv, "--json", str(damaged)]) == 2
    err = capsys.readouterr().err
    assert "that file is not readable JSON (damaged?)" in err
    assert "if it is a robustness sweep, damaged, delete it and run again" in err
    damaged.unlink()  # as it says
    assert main([*argv, "--json", str(damaged)]) == 0


@pytest.mark.parametrize(
    ("argv", "choices"),
    [(["train"], "MODEL (convnet, fc, ram, resnet)"), (["data"], "ACTION (fetch, build, show)")],
)
def test_a_missing_model_or_action_lists_the_choices(argv, choices, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert (
        stop.value.code == 2 and f"the following arguments are required: {choices}" in capsys.readouterr().err
    )


def test_an_option_the_run_would_never_read_is_refused(tmp_path, capsys):
    # --momentum under Adam, --lr-decay under the cosine schedule: accepted, then never read.
    out = str(tmp_path / "r")
    assert main(["train", "ram", "--momentum", "0.5", "--lr-decay", "0.9", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "--lr-decay is the exponential schedule's; --momentum is SGD's (--optimizer sgd)" in err
    assert "(this run: --optimizer adam, --schedule cosine)" in err
    assert not (tmp_path / "r").exists()
    # --resume where no run is yet starts a fresh one: refused too (a resume of a run notes it)
    assert main(["train", "ram", "--momentum", "0.5", "--out", out, "--resume"]) == 2
    assert "--momentum is SGD's" in capsys.readouterr().err
    from ramlab.cli import build_parser
    from ramlab.cli.train import run_config_from_args

    args = build_parser().parse_args(["train", "ram", "--optimizer", "sgd", "--momentum", "0.5"])
    assert run_config_from_args(args).train.momentum == 0.5  # read by SGD


def test_a_config_files_settings_are_checked_with_the_options_given_beside_it(tmp_path):
    # The file alone (augment_scale without fresh_scenes) was refused before --fresh-scenes
    # true, given beside it, was applied.
    from ramlab.cli import build_parser
    from ramlab.cli.train import run_config_from_args

    path = tmp_path / "mine.yaml"
    path.write_text("model: ram\ndata: translated60\ntrain:\n  augment_scale: 0.8\n")
    args = build_parser().parse_args(["train", "ram", "--config", str(path), "--fresh-scenes", "true"])
    config = run_config_from_args(args)
    assert config.train.augment_scale == 0.8 and config.train.fresh_scenes is True
    alone = build_parser().parse_args(["train", "ram", "--config", str(path)])
    with pytest.raises(RamlabError, match="need fresh_scenes true"):
        run_config_from_args(alone)


def test_tensorboard_without_its_package_is_refused_before_the_run_starts(tmp_path, capsys, monkeypatch):
    # It failed after config.yaml was written and the scenes built; a preset listed jobs that
    # would each fail on it.
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a)
    )
    out = tmp_path / "run"
    assert main(["train", "fc", "--data", "mnist", "--out", str(out), "--tensorboard", "true"]) == 2
    assert "--tensorboard needs the tensorboard package" in capsys.readouterr().err
    assert not out.exists()
    path = write_preset(tmp_path / "p.yaml", train={"tensorboard": True})
    load_preset(path)  # reading it needs no tensorboard (a job of another kind, a --list)
    assert main(["study", str(path), "--out", str(tmp_path / "s"), "--list"]) == 0
    capsys.readouterr()
    assert main(["study", str(path), "--out", str(tmp_path / "s")]) == 2  # it would train
    assert "--tensorboard needs the tensorboard package" in capsys.readouterr().err
    assert not (tmp_path / "s" / "runs").exists()


def test_a_folder_given_as_a_file_says_so(run, tmp_path, capsys):
    # A run's folder is its config.yaml for --config; a folder for --json is named as one.
    from ramlab.runconfig import config_path

    assert config_path(run) == run / "config.yaml"
    (tmp_path / "empty").mkdir()
    with pytest.raises(RamlabError, match=r"empty is a folder without a config\.yaml"):
        config_path(tmp_path / "empty")
    capsys.readouterr()
    argv = ["cost", "--models", "fc", "--sizes", "28", "--repeats", "1", "--batch", "2", "--device", "cpu"]
    assert main([*argv, "--json", str(tmp_path / "empty")]) == 2
    assert f"--json {tmp_path / 'empty'} is a folder: give a file path" in capsys.readouterr().err
    # robustness too, before sweeping (it used to fail at its first write, a shift later)
    assert main(["robustness", str(run), "--shift", "noise", "--json", str(tmp_path / "empty")]) == 2
    assert f"--json {tmp_path / 'empty'} is a folder: give a file path" in capsys.readouterr().err


def test_an_empty_config_file_is_refused_not_read_as_the_defaults(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    assert main(["train", "ram", "--config", str(empty), "--out", str(tmp_path / "run")]) == 2
    assert "empty.yaml: the config file holds no settings" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_eval_names_a_missing_folder_and_refuses_a_limit_below_one_before_any_data(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "nope: no such folder" in capsys.readouterr().err
    # No MNIST here (no fake_mnist): a limit checked after loading would fail on the data.
    assert main(["eval", str(tmp_path / "nope"), "--limit", "0"]) == 2
    assert "--limit must be >= 1" in capsys.readouterr().err


def test_cost_takes_names_and_sizes_by_commas_or_spaces(capsys):
    argv = ["--repeats", "1", "--batch", "2", "--device", "cpu", "--threads", "1"]
    assert main(["cost", "--models", "fc", "convnet", "--sizes", "28", "32,36", *argv]) == 0
    table = capsys.readouterr().out
    for model in ("fc", "convnet"):
        for size in (28, 32, 36):
            assert any(line.split()[:2] == [model, str(size)] for line in table.splitlines()), (model, size)
    assert main(["cost", "--models", "fc", "--sizes", "28", "28", *argv]) == 2
    assert "--sizes: 28 is given twice" in capsys.readouterr().err
