"""Smoke tests of `ramlab train ram` and `ramlab eval` end to end, on tiny synthetic MNIST."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest
import tiny
import yaml

from ramlab.cli import build_parser, main
from ramlab.cli.train import default_run_dir, run_config_from_args
from ramlab.config import load_yaml
from ramlab.models.ram import RAMConfig
from ramlab.run import evaluate_run

TINY = [
    "--train-limit", "16",
    "--eval-limit", "8",
    "--epochs", "1",
    "--batch-size", "8",
    "--glimpses", "2",
    "--glimpse-size", "8",
    "--scales", "2",
    "--glimpse-hidden", "8",
    "--location-hidden", "4",
    "--hidden", "12",
    "--device", "cpu",
    "--threads", "1",
    "--progress", "false",
]  # fmt: skip


def test_train_then_eval(fake_mnist, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(
        ["train", "ram", "--data", "translated60", "--reward", "sparse+0.5*bbox", *TINY, "--out", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "test error" in printed
    assert "% (policy mean, one rollout, 8 test scenes), val error" in printed  # how it was read

    result = json.loads((out / "result.json").read_text())
    # A resume of the finished run prints its kept result, whatever keys an older one lacks.
    (out / "result.json").write_text(json.dumps({k: v for k, v in result.items() if k != "params"}))
    args = ["train", "ram", "--data", "translated60", "--reward", "sparse+0.5*bbox", *TINY, "--out", str(out)]
    assert main([*args, "--resume"]) == 0
    again = capsys.readouterr().out
    assert (
        again.startswith(f"{out}: test error {result['test_error']:.2f}% (policy mean, one rollout, 8 test")
        and "parameters" not in again
    )
    (out / "result.json").write_text(json.dumps(result))
    assert result["data"] == "translated60"
    assert result["epochs"] == 1
    assert len(result["per_glimpse_test_error"]) == 2
    saved = load_yaml(out / "config.yaml")
    assert saved["model_config"]["reward"] == "sparse+0.5*bbox"
    assert saved["train"]["train_limit"] == 16
    assert {"config.yaml", "metrics.jsonl", "last.pt", "best.pt", "result.json"} <= {
        p.name for p in out.iterdir()
    }

    # ramlab eval: the run's own dataset (test split, all 20 fake test scenes) ...
    import torch

    torch.set_num_threads(2)
    assert main(["eval", str(out), "--device", "cpu", "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1  # --threads reached torch
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["data"] == "translated60"
    assert evaluation["split"] == "test"
    assert evaluation["count"] == 20
    assert len(evaluation["per_step_error"]) == 2
    assert evaluation["error"] == evaluation["per_step_error"][-1]

    # ... a dataset on the same 60×60 canvas, with a JSON copy ...
    copy = tmp_path / "new" / "eval.json"  # a folder not made yet: made, not a lost evaluation
    code = main(["eval", str(out), "--data", "cluttered60", "--split", "val", "--json", str(copy)])
    assert code == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert (evaluation["data"], evaluation["split"], evaluation["count"]) == ("cluttered60", "val", 8)
    assert json.loads(copy.read_text()) == evaluation

    for limit in ("0", "-5"):  # not "all but 5": a clear error
        assert main(["eval", str(out), "--limit", limit, "--device", "cpu"]) == 2
        assert f"--limit must be >= 1 (leave it out for all scenes), got {limit}" in capsys.readouterr().err

    with pytest.raises(SystemExit):  # argparse: a negative thread count is refused
        main(["eval", str(out), "--threads", "-1"])
    assert "--threads: must be >= 0" in capsys.readouterr().err

    # ... but not MNIST's 28×28 images.
    assert main(["eval", str(out), "--data", "mnist"]) == 2
    err = capsys.readouterr().err
    assert "ramlab: error:" in err
    assert "(60, 60)" in err and "(28, 28)" in err and "same canvas size" in err

    # Training into the same directory again is refused unless resuming.
    assert main(["train", "ram", *TINY, "--out", str(out)]) == 2
    assert "pass --resume" in capsys.readouterr().err


def test_yaml_config_with_cli_overrides(fake_mnist, tmp_path, capsys) -> None:
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "model": "ram",
                "data": "cluttered60",
                "train": {
                    "epochs": 1,
                    "batch_size": 8,
                    "train_limit": 16,
                    "eval_limit": 8,
                    "lr": 0.02,
                    "seed": 5,
                    "device": "cpu",
                    "threads": 1,
                    "progress": False,
                },
                "model_config": {
                    **tiny.TINY_RAM,
                    "glimpses": 3,
                    "core": "lstm",
                    "reward": "infogain",
                },
            }
        )
    )
    out = tmp_path / "run"
    overrides = ["--glimpses", "2", "--lr", "0.005"]
    assert main(["train", "ram", "--config", str(config_file), *overrides, "--out", str(out)]) == 0
    capsys.readouterr()
    saved = load_yaml(out / "config.yaml")
    # The options override the file; everything else comes from the file.
    assert saved["model_config"]["glimpses"] == 2
    assert saved["train"]["lr"] == 0.005
    assert saved["data"] == "cluttered60"
    assert saved["train"]["seed"] == 5
    assert saved["model_config"]["core"] == "lstm"
    assert saved["model_config"]["reward"] == "infogain"
    assert saved["model_config"]["std"] == RAMConfig().std  # absent from both: the default
    result = json.loads((out / "result.json").read_text())
    assert len(result["per_glimpse_test_error"]) == 2


@pytest.mark.parametrize(
    ("content", "key", "valid"),
    [
        ({"model": "ram", "model_config": {"glimpse": 4}}, "glimpse", "glimpse_size"),
        ({"model": "ram", "train": {"epoch": 1}}, "epoch", "epochs"),
        ({"model": "ram", "trian": {}}, "trian", "model_config, train"),
    ],
)
def test_yaml_wrong_key_names_file_key_and_valid_keys(
    tmp_path, capsys, content: dict, key: str, valid: str
) -> None:
    config_file = tmp_path / "wrong.yaml"
    config_file.write_text(yaml.safe_dump(content))
    assert main(["train", "ram", "--config", str(config_file), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert str(config_file) in err
    assert f"unknown key(s) {key};" in err
    assert "valid:" in err and valid in err
    assert not (tmp_path / "run").exists()


def test_yaml_bad_value_is_a_clear_error(tmp_path, capsys) -> None:
    config_file = tmp_path / "bad.yaml"
    config_file.write_text(yaml.safe_dump({"model": "ram", "model_config": {"std": -1.0}}))
    assert main(["train", "ram", "--config", str(config_file), "--out", str(tmp_path / "run")]) == 2
    assert "std must be in (0, e]" in capsys.readouterr().err


def test_train_ram_help_lists_every_model_field(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "ram", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    squeezed = "".join(text.split())  # help text is wrapped over lines
    for field in dataclasses.fields(RAMConfig):
        assert "--" + field.name.replace("_", "-") in text, field.name
        assert "".join(field.metadata["help"].split()) in squeezed, field.name
    for option in ("--config", "--data", "--out", "--resume", "--epochs", "--train-limit"):
        assert option in text


def test_a_tuning_runs_test_split_stays_unread_until_it_is_final(
    fake_mnist, tmp_path, capsys, monkeypatch
) -> None:
    out = tmp_path / "tuning"
    train = ["train", "ram", *TINY, "--out", str(out)]
    monkeypatch.setattr(sys, "argv", ["ramlab", *train, "--test", "false"])  # the command the run records
    assert main(sys.argv[1:]) == 0
    assert json.loads((out / "result.json").read_text())["test_error"] is None
    capsys.readouterr()

    # eval, robustness and glimpses refuse its test split, and say how to read it once ...
    refused = [
        ["eval", str(out)],
        ["robustness", str(out), "--shift", "noise", "--levels", "0"],
        ["glimpses", str(out), "--out", str(tmp_path / "test.png")],
    ]
    for args in refused:
        assert main([*args, "--device", "cpu"]) == 2, args
        err = capsys.readouterr().err
        assert "trained with test: false" in err and "--split val" in err, args
        assert "--resume --test true" in err and "--out " + str(out) in err, args
    assert not (tmp_path / "test.png").exists()

    # ... and read validation.
    assert main(["eval", str(out), "--split", "val", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "val"
    drawn = tmp_path / "val.png"
    assert main(["glimpses", str(out), "--split", "val", "--out", str(drawn), "--device", "cpu"]) == 0
    assert drawn.is_file()
    capsys.readouterr()

    # A resume that leaves --test out keeps the run's own false (it went back to the default,
    # true, and read the test split), as it keeps every setting the command does not give.
    assert main(["train", "ram", "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "result.json").read_text())["test_error"] is None
    assert "changes" not in capsys.readouterr().err
    (out / "config.yaml").unlink()  # lost: the settings last.pt holds, not the defaults
    assert main(["train", "ram", "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "result.json").read_text())["test_error"] is None
    assert "changes" not in capsys.readouterr().err and (out / "config.yaml").is_file()

    # Made final by the resume the message names, which tests it once; eval then reads the
    # same test scenes.
    assert main([*train, "--resume", "--test", "true"]) == 0
    final = json.loads((out / "result.json").read_text())
    assert final["test_error"] is not None
    err = capsys.readouterr().err
    assert "holds no run to resume" not in err and "note: this resume changes test False -> True" in err
    missing = tmp_path / "typo"  # a --resume into a folder with no run says it starts one
    assert main([*(a if a != str(out) else str(missing) for a in train), "--resume", "--epochs", "1"]) == 0
    assert f"note: {missing} holds no run to resume; starting one there" in capsys.readouterr().err
    (missing / "config.yaml").unlink()  # a finished run's files left without their config.yaml
    (missing / "last.pt").unlink()
    assert main([*(a if a != str(out) else str(missing) for a in train), "--resume", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "holds no run to resume" not in err and "but no config.yaml: restore config.yaml" in err
    assert main(["eval", str(out), "--limit", "8", "--device", "cpu"]) == 0  # the trainer's --eval-limit
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["error"] == pytest.approx(final["test_error"])
    assert evaluation["loss"] == pytest.approx(final["test_loss"], rel=1e-5)


def test_an_unfinished_runs_test_split_stays_unread(fake_mnist, tmp_path, capsys) -> None:
    # a run with test: true still training, interrupted, or trained on (its result set aside)
    # has a best.pt that is not final: eval read its test split all the same
    out = tmp_path / "run"
    assert main(["train", "ram", *TINY, "--out", str(out)]) == 0
    (out / "result.json").replace(out / "result.previous.json")
    capsys.readouterr()
    for args in (["eval", str(out)], ["robustness", str(out), "--shift", "noise", "--levels", "0"]):
        assert main([*args, "--device", "cpu"]) == 2, args
        err = capsys.readouterr().err
        assert "has not finished (no readable result.json)" in err and "--split val" in err, args
        assert f"--out {out} --resume" in err, args
    assert main(["eval", str(out), "--split", "val", "--device", "cpu"]) == 0
    # A result.json with no test error (a tuning run's, its config.yaml now test: true, or a
    # test that did not finish) is no licence to read the test split.
    untested = {**json.loads((out / "result.previous.json").read_text()), "test_error": None}
    (out / "result.json").write_text(json.dumps(untested))
    assert main(["eval", str(out), "--device", "cpu"]) == 2
    assert "its result.json holds no test error" in capsys.readouterr().err
    # A damaged result.json is named as such, with the resume that rewrites it.
    (out / "result.json").write_text('{"test_error": 1.')
    assert main(["eval", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"{out}: result.json is damaged" in err and "tests best.pt again and rewrites it" in err
    last = (out / "last.pt").read_bytes()
    (out / "last.pt").unlink()  # then only a copy can bring it back: a resume would refuse
    assert main(["eval", str(out), "--device", "cpu"]) == 2
    assert "restore result.json from a copy (last.pt, which a resume" in capsys.readouterr().err
    (out / "last.pt").write_bytes(last)
    # A lost config.yaml beside the run's checkpoints: resume it, not "train one".
    (out / "config.yaml").unlink()
    assert main(["eval", str(out), "--split", "val", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert (
        "holds a run (best.pt, last.pt, result.json) but no config.yaml: restore config.yaml from a copy"
        in err
    )
    assert (
        f"or rebuild it from last.pt with a resume (ramlab train ram --out {out} --resume, which also" in err
    )
    (out / "last.pt").unlink()
    assert main(["eval", str(out), "--split", "val", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "but no config.yaml: restore config.yaml from a copy" in err and "resume" not in err


def test_eval_repeats_the_trainers_sampled_figures_at_any_batch_size(fake_mnist, tmp_path, capsys) -> None:
    # The trainer evaluates in batches of 3 here, ramlab eval in 8 (--batch-size) and in the
    # run's 3: every draw is made for the whole split at once, so all three agree.
    out = tmp_path / "run"
    assert (
        main(["train", "ram", *TINY, "--eval-sample", "true", "--eval-batch-size", "3", "--out", str(out)])
        == 0
    )
    final = json.loads((out / "result.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(out), "--sample", "--limit", "8", "--device", "cpu"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["count"] == final["test_count"] == 8
    assert evaluation["loss"] == pytest.approx(final["test_loss"], rel=1e-6)
    whole = evaluate_run(out, sample=True, limit=8, device="cpu", batch_size=8)
    assert whole["loss"] == pytest.approx(final["test_loss"], rel=1e-6)
    assert whole["in_box"] == pytest.approx(evaluation["in_box"])
    assert whole["glimpse_distance"] == pytest.approx(evaluation["glimpse_distance"], rel=1e-6)
    # Monte Carlo: image i's M rollouts are the same draws in batches of 3 and of 8.
    three, eight = (evaluate_run(out, rollouts=4, limit=8, device="cpu", batch_size=size) for size in (3, 8))
    assert three["loss"] == pytest.approx(eight["loss"], rel=1e-6) and three["error"] == eight["error"]


def test_a_random_policy_run_end_to_end_says_how_it_looked(fake_mnist, tmp_path, capsys, monkeypatch) -> None:
    """`--policy random`: the paper's random-glimpse control trains, tests, and names its
    protocol; no part is reported starved (it has no policy to starve)."""
    out = tmp_path / "run"
    assert main(["train", "ram", *TINY, "--policy", "random", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["test_protocol"] == "random glimpse locations, one rollout"
    assert "no gradient reached" not in capsys.readouterr().err
    logged = set().union(*map(json.loads, (out / "metrics.jsonl").read_text().splitlines()))
    assert "policy/location_spread" in logged and not logged & {"policy/reward", "loss/reinforce"}
    assert main(["eval", str(out), "--sample", "--limit", "4"]) != 0  # nothing to sample
    assert "no policy to sample" in capsys.readouterr().err
    monkeypatch.setattr("ramlab.robustness.shifted_scenes", lambda *a, **k: pytest.fail("a level was built"))
    assert main(["robustness", str(out), "--sample", "--shift", "noise", "--limit", "4"]) != 0
    assert "no policy to sample" in capsys.readouterr().err  # before any level's scenes
    assert main(["eval", str(out), "--limit", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["protocol"] == "random glimpse locations, one rollout"
    config = run_config_from_args(build_parser().parse_args(["train", "ram", *TINY, "--policy", "random"]))
    assert default_run_dir(config).name == "ram-translated60-random2-seed0"  # not the reward's name
