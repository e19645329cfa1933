"""Compute cost on tiny images: what the FLOP counts must show, the JSON, and `ramlab cost`."""

from __future__ import annotations

import json

import pytest
import torch

from ramlab import cost as cost_module
from ramlab.cli import main
from ramlab.cost import (
    THROUGHPUT_PIXELS,
    LiveTensorMemory,
    measure_costs,
    median_seconds,
    read_cost_json,
    throughput_batch,
    write_cost_json,
)
from ramlab.cost_rows import cost_ratios, format_cost_table, timing_mode
from ramlab.fastpath import cpu_compiler
from ramlab.models.ram import RAM, RAMConfig

QUICK = {"batch": 2, "repeats": 1}


def by_size(rows):
    return {row["size"]: row for row in rows}


def test_ram_flops_apart_from_the_retina_do_not_depend_on_the_image_size():
    # 32, 48 and 60 all get 3 scales (widest patch 48 >= 80% of the side).
    rows = by_size(measure_costs(["ram"], [32, 48, 60], **QUICK))
    assert {row["config"]["scales"] for row in rows.values()} == {3}
    parts = {size: row["flops_breakdown"] for size, row in rows.items()}
    assert list(parts[32]) == ["retina", "glimpse", "core", "heads"]
    for part in ("glimpse", "core", "heads"):
        assert parts[32][part] == parts[48][part] == parts[60][part] > 0
    assert 0 < parts[32]["retina"] < parts[48]["retina"] < parts[60]["retina"]


def test_ram_matrix_product_flops_by_hand():
    # The paper's 60×60 RAM: T = 6 glimpses of 3 scales of 12×12 (432 values), h_g = h_l = 128,
    # hidden 256, 10 classes. 2 FLOPs per multiply-add.
    (row,) = measure_costs(["ram"], [60], **QUICK)
    parts = row["flops_breakdown"]
    t, rho, what, where, hidden, classes = 6, 432, 128, 128, 256, 10
    glimpse = t * 2 * (rho * what + 2 * where + what * hidden + where * hidden)
    # h_0 = relu(W_g g_0 + b): the first step has no W_h h_{-1} (h_{-1} = 0).
    core = 2 * (t * hidden * hidden + (t - 1) * hidden * hidden)
    heads = 2 * ((t - 1) * hidden * 2 + t * hidden * classes + t * hidden)  # policy, classifier, baseline
    assert (parts["glimpse"], parts["core"], parts["heads"]) == (glimpse, core, heads)


def test_lstm_core_flops_by_hand():
    # The LSTM core on the paper's 60×60 RAM: g_t and h_t of 256, gates 4 × 256. The first step
    # starts from the zero state: W_ih g_0 + b_ih + b_hh (1024 adds), c_0 = i ⊙ c̃ and
    # h_0 = o ⊙ tanh(c_0) (256 multiplies each), no W_hh h_{-1}. Each later step, as ATen's
    # lstm_cell: both products, their sum (1024), c = f ⊙ c + i ⊙ c̃ (3 × 256), h (256).
    (row,) = measure_costs(["ram"], [60], configs={"ram": RAMConfig(core="lstm")}, **QUICK)
    t, d, h = 6, 256, 256
    products = 2 * (t * d * 4 * h + (t - 1) * h * 4 * h)
    elementwise = (4 * h + 2 * h) + (t - 1) * (4 * h + 4 * h)
    assert row["flops_breakdown"]["core"] == products + elementwise


def test_a_config_keeps_its_scales_at_the_size_it_trains_on():
    trained = RAMConfig(glimpse_size=8, scales=1)  # the mnist recipe's retina, at 28 px
    scales = {
        s: RAM.config_for_image_size(trained, s, trained_size=28).scales for s in (14, 28, 60, 100, 800)
    }
    assert scales == {14: 1, 28: 1, 60: 2, 100: 3, 800: 6}  # 1 + round(log2(size / 28)), at least 1
    assert RAM.config_for_image_size(trained, 28).scales == 3  # no trained size: the 80% rule


def test_added_scales_only_widen_the_glimpse_networks_first_layer():
    rows = by_size(measure_costs(["ram"], [28, 60, 100], **QUICK))
    base = RAMConfig()
    assert [rows[s]["config"]["scales"] for s in (28, 60, 100)] == [2, 3, 4]
    for size in (60, 100):
        assert rows[size]["flops_breakdown"]["core"] == rows[28]["flops_breakdown"]["core"]
        assert rows[size]["flops_breakdown"]["heads"] == rows[28]["flops_breakdown"]["heads"]
    # One more g×g patch per glimpse: g² more inputs to the 'what' layer, 2 FLOPs per weight.
    per_scale = base.glimpses * 2 * base.glimpse_size**2 * base.glimpse_hidden
    glimpse = {s: rows[s]["flops_breakdown"]["glimpse"] for s in (28, 60, 100)}
    assert glimpse[60] - glimpse[28] == glimpse[100] - glimpse[60] == per_scale


def test_the_paper_baselines_flops_by_hand():
    # fc at 28 px: 784 -> 256 -> 256 -> 10, 2 FLOPs a multiply-add. convnet at 60 px: 8 filters
    # of 10x10, stride 5: an 11x11 map (121 x 8 outputs of 100 multiply-adds), then 968 -> 256 -> 10.
    rows = {(r["model"], r["size"]): r for r in measure_costs(["fc", "convnet"], [28, 60], **QUICK)}
    assert rows[("fc", 28)]["flops"] == 2 * (784 * 256 + 256 * 256 + 256 * 10) == 537_600
    assert rows[("convnet", 60)]["flops_by_op"] == {
        "convolution": 2 * 121 * 8 * 100,
        "addmm": 2 * (968 * 256 + 256 * 10),
    }


def test_elementwise_operators_count_as_the_formulas_say() -> None:
    # 1 FLOP an output element for add, sub, mul, div; 2 for addcmul (a + b * c).
    from torch import nn

    from ramlab.cost import count_flops

    class Toy(nn.Module):
        def forward(self, x):
            return torch.addcmul(x + x, x, x) * 2  # add 12, addcmul 24, mul 12

    total, _, by_op = count_flops(Toy(), torch.ones(3, 4))
    assert by_op == {"add": 12, "addcmul": 24, "mul": 12} and total == 48


def test_cnn_flops_grow_with_the_pixel_count():
    rows = measure_costs(["resnet", "convnet", "fc"], [32, 64], **QUICK)
    flops = {(row["model"], row["size"]): row["flops"] for row in rows}
    # ResNet: every layer scales with the pixels (32 and 64 divide by all its strides).
    assert flops[("resnet", 64)] / flops[("resnet", 32)] == pytest.approx(4.0, rel=0.05)
    # The paper's nets have a size-independent tail, so a little less than 4x.
    for name in ("convnet", "fc"):
        assert 3.0 < flops[(name, 64)] / flops[(name, 32)] < 5.0


def test_rows_describe_themselves(tmp_path):
    torch.set_num_threads(1)
    rows = measure_costs(["resnet", "ram"], [28, 200], **QUICK)
    assert [(row["model"], row["size"]) for row in rows] == [
        ("resnet", 28),
        ("resnet", 200),
        ("ram", 28),
        ("ram", 200),
    ]
    for row in rows:
        assert row["params"] > 0 and row["flops"] > 0
        assert row["latency_ms"] > 0 and row["throughput"] > 0 and row["peak_memory_mb"] > 0
        assert row["throughput_batch"] == min(2, throughput_batch(2, row["size"]))
        assert row["flops_by_op"]
        assert row["threads"] == 1  # how it was timed
        # Its weights, 4 bytes a float32 parameter (and the ResNet's BatchNorm buffers), are
        # part of its peak, which also holds the image and the activations.
        assert 4 * row["params"] / 2**20 <= row["weights_mb"] < row["peak_memory_mb"]
        assert row["model"] == "resnet" or row["weights_mb"] == 4 * row["params"] / 2**20
    # The config actually used: the RAM keeps g = 12 and adds scales (12 * 2^4 = 192 >= 0.8 * 200).
    assert rows[3]["config"]["glimpse_size"] == 12 and rows[3]["config"]["scales"] == 5
    assert rows[3]["config"] == {**RAMConfig().__dict__, "scales": 5}
    path = write_cost_json(rows, tmp_path / "cost.json")
    assert read_cost_json(path) == json.loads(json.dumps(rows))
    table = format_cost_table(rows)
    assert "ResNet / RAM" in table and "retina=" in table
    assert f"{rows[0]['peak_memory_mb']:.3g} ({rows[0]['weights_mb']:.3g})" in table


def test_throughput_batch_is_capped_by_pixels():
    assert throughput_batch(256, 100) == 256
    assert throughput_batch(256, 200) == THROUGHPUT_PIXELS // 200**2 == 64
    assert throughput_batch(256, 5000) == 1
    assert throughput_batch(8, 28) == 8
    # A GPU batch may hold 16 times the pixels: 64 images of 800×800 instead of 4.
    assert throughput_batch(2048, 800) == 4
    assert throughput_batch(2048, 800, torch.device("cuda")) == 16 * THROUGHPUT_PIXELS // 800**2 == 64
    assert throughput_batch(2048, 60, torch.device("cuda")) == 2048


def test_live_tensor_memory_counts_the_peak_of_live_storages():
    with LiveTensorMemory(start=[]) as tracker:
        a = torch.ones(1000)  # 4000 bytes
        b = a + 1  # 8000 live
        view = b[:10]  # a view: no new storage
        del a
        c = view * 2  # b (4000) + c (40)
    assert tracker.peak == 8000
    assert c.shape == (10,)


def test_cli_prints_the_table_and_writes_json(tmp_path, capsys):
    path = tmp_path / "cost.json"
    argv = ["cost", "--models", "ram,resnet", "--sizes", "28,32", "--repeats", "1", "--batch", "2"]
    assert main([*argv, "--device", "cpu", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ResNet / RAM" in out and "resnet" in out
    rows = read_cost_json(path)
    assert [(row["model"], row["size"]) for row in rows] == [
        ("ram", 28),
        ("ram", 32),
        ("resnet", 28),
        ("resnet", 32),
    ]


def test_cli_config_measures_the_trained_shape(tmp_path, capsys):
    # The RAM a recipe trains (an LSTM, a glimpse layer of 256) is not the default RAM (the
    # paper's RNN, 128): --config measures the former, adapted to each size.
    path = tmp_path / "cost.json"
    argv = [
        "cost",
        "--models",
        "ram",
        "--sizes",
        "28,60",
        "--repeats",
        "1",
        "--batch",
        "2",
        "--device",
        "cpu",
    ]
    assert main([*argv, "--config", "translated60", "--json", str(path)]) == 0
    rows = read_cost_json(path)
    assert [(r["config"]["core"], r["config"]["glimpse_hidden"]) for r in rows] == [("lstm", 256)] * 2
    assert [r["config"]["scales"] for r in rows] == [2, 3]  # adapted: 2 scales fit 28 px
    # The mnist recipe trains 1 scale at 28 px: measured so there, one more at 60 (about 2×).
    assert main([*argv, "--config", "mnist", "--json", str(path)]) == 0
    assert [r["config"]["scales"] for r in read_cost_json(path)] == [1, 2]
    assert main([*argv, "--json", str(path)]) == 0
    default = read_cost_json(path)
    assert default[1]["config"]["core"] == "rnn" and default[1]["flops"] < rows[1]["flops"] / 2
    capsys.readouterr()
    assert main([*argv, "--config", "translated60", "--config", "cluttered60"]) == 2
    assert "--config cluttered60: a second config of ram; give one per model" in capsys.readouterr().err
    assert main([*argv[:2], "resnet", *argv[3:], "--config", "translated60"]) == 2
    assert "--config gives ram, which --models does not measure" in capsys.readouterr().err


def test_cli_refuses_a_model_or_size_given_twice(capsys):
    assert main(["cost", "--models", "fc,fc", "--sizes", "28"]) == 2
    assert "--models: fc is given twice" in capsys.readouterr().err
    assert main(["cost", "--models", "fc", "--sizes", "28,60,28"]) == 2
    assert "--sizes: 28 is given twice" in capsys.readouterr().err


def test_cli_refuses_a_size_a_model_does_not_fit_before_measuring_any(capsys, monkeypatch):
    # The RAM was timed at 400 and 800 px, then 7 px raised and every row was lost.
    measured = []
    real = cost_module.measure_cost
    monkeypatch.setattr(cost_module, "measure_cost", lambda *a, **k: measured.append(a) or real(*a, **k))
    assert main(["cost", "--models", "fc,ram", "--sizes", "28,7", "--repeats", "1", "--batch", "2"]) == 2
    assert "ram at 7 px: ram glimpse_size 12 is wider than the 7x7 canvas" in capsys.readouterr().err
    assert measured == []


def test_cli_lists_the_valid_models_on_a_wrong_name(capsys):
    assert main(["cost", "--models", "ram,resnett", "--sizes", "28"]) == 2
    err = capsys.readouterr().err
    assert "resnett" in err
    for name in ("convnet", "fc", "ram", "resnet"):
        assert name in err


def test_median_seconds_runs_the_warm_up_calls_untimed_then_the_repeats():
    calls = []
    seconds = median_seconds(lambda: calls.append(1), repeats=3, device=torch.device("cpu"), warmup=2)
    assert len(calls) == 5 and seconds >= 0


def test_timing_mode_names_how_and_where_the_rows_were_timed():
    eager = {"device": "cpu", "compiled": False}
    compiled = {"device": "cuda:0", "compiled": True}
    assert timing_mode([eager, {"device": "cpu"}]) == "eager inference on cpu"  # rows written before the key
    assert timing_mode([compiled]) == "compiled (torch.compile; CUDA graphs on a GPU) inference on cuda:0"
    assert timing_mode([eager, compiled]).startswith("eager and compiled (")
    assert timing_mode([eager, compiled]).endswith("inference on cpu, cuda:0")


@pytest.mark.skipif(cpu_compiler() is None, reason="no C++ compiler for inductor on PATH")
def test_cli_compile_times_the_compiled_forward_and_says_so(tmp_path, capsys):
    from torch._dynamo.utils import counters

    counters.clear()
    path = tmp_path / "cost.json"
    argv = ["cost", "--models", "fc", "--sizes", "28", "--repeats", "1", "--batch", "2", "--device", "cpu"]
    assert main([*argv, "--compile", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("compiled (torch.compile; CUDA graphs on a GPU) inference on cpu:")
    # One graph per batch shape (latency at 1, throughput at 2): the timed calls went through them.
    assert counters["stats"]["unique_graphs"] == 2
    (compiled,) = read_cost_json(path)
    assert compiled["compiled"] is True and compiled["throughput_batch"] == 2
    assert main([*argv, "--json", str(path)]) == 0
    assert capsys.readouterr().out.startswith("eager inference on cpu:")
    (eager,) = read_cost_json(path)
    assert eager["compiled"] is False
    # The same model and arithmetic, timed another way.
    for key in ("params", "flops", "flops_by_op", "config"):
        assert compiled[key] == eager[key], key


def test_cost_ratios_pair_rows_of_one_device_only():
    def row(model, device, flops, latency):
        return {
            "model": model, "size": 60, "device": device, "flops": flops, "params": 10,
            "latency_ms": latency, "throughput": 1000 / latency, "peak_memory_mb": 1.0,
        }  # fmt: skip

    rows = [row("resnet", "cpu", 40, 8.0), row("ram", "cpu", 4, 2.0), row("resnet", "cuda", 40, 0.1)]
    ratios = cost_ratios(rows, numerator="resnet", denominator="ram")
    assert [(r["size"], r["device"]) for r in ratios] == [(60, "cpu")]  # no RAM timed on cuda
    assert ratios[0]["flops"] == 10 and ratios[0]["latency"] == 4 and ratios[0]["throughput"] == 4
    assert ratios[0]["timing"] == ""  # one timing: nothing to tell apart
    both = cost_ratios([*rows, row("ram", "cuda", 4, 0.05)], numerator="resnet", denominator="ram")
    assert [(r["device"], r["latency"], r["timing"]) for r in both] == [
        ("cpu", 4, "cpu"),
        ("cuda", 2, "cuda"),
    ]


def test_cost_ratios_never_divide_times_of_other_code_threads_or_compilation():
    # A study resumed after a preset change measured the RAM again and kept the ResNet's rows of
    # an earlier commit and thread count; a file of eager and compiled rows paired the last.
    def row(model, latency, **timing):
        return {
            "model": model, "size": 60, "device": "cpu", "flops": 4, "params": 10, "latency_ms": latency,
            "throughput": 1000 / latency, "peak_memory_mb": 1.0, "threads": 2, "commit": "a" * 40, **timing,
        }  # fmt: skip

    rows = [row("resnet", 8.0), row("ram", 2.0, commit="b" * 40), row("ram", 1.0, threads=8)]
    assert cost_ratios(rows, numerator="resnet", denominator="ram") == []
    rows += [row("ram", 4.0), row("resnet", 4.0, compiled=True), row("ram", 1.0, compiled=True)]
    ratios = cost_ratios(rows, numerator="resnet", denominator="ram")
    assert [(r["latency"], r["timing"]) for r in ratios] == [(2.0, "eager"), (4.0, "compiled")]
    table = format_cost_table([{**r, "flops_breakdown": {}, "throughput_batch": 2} for r in rows])
    assert "    60 (eager): FLOPs x1" in table and "    60 (compiled): FLOPs x1" in table
