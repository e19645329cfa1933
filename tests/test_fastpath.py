"""The compiled fast path gives the eager path's results: the same losses, gradients and
weights after a few training steps, and the same evaluation outputs (CPU here; the `gpu`
tests repeat it on CUDA with CUDA graphs)."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import tiny
import torch

from ramlab.data.loader import Batch
from ramlab.errors import RamlabError
from ramlab.fastpath import CompiledForward, TrainingStep, compile_mode, cpu_compiler, inductor_options
from ramlab.models.ram import RAMConfig
from ramlab.models.registry import build_model

needs_compiler = pytest.mark.skipif(cpu_compiler() is None, reason="no C++ compiler for inductor on PATH")
DEVICES = [
    pytest.param("cpu", marks=needs_compiler),
    pytest.param("cuda", marks=pytest.mark.gpu),
]


def _ram(core: str, device: str, *, first_location: str = "random", **changes) -> torch.nn.Module:
    torch.manual_seed(3)
    base = {
        "glimpses": 4,
        "core": core,
        "first_location": first_location,
        "ce_all_steps": True,
        "reward": "sparse+infogain+bbox",
        "dropout": 0.2,  # in training only: its masks are drawn outside the graph too
    }
    config = RAMConfig(**{**tiny.TINY_RAM, **base, **changes})
    return build_model("ram", config, image_size=(60, 60)).to(device)


def _batches(device: str, count: int, size: int = 16, copies: int = 1):
    """`count` batches of `size` rows, each scene `copies` times in a row as the trainer lays
    out a RAM's rollouts (`Batch.repeat`), so rollout baselines group one scene's copies."""
    data = torch.Generator().manual_seed(5)
    scenes = size // copies
    for _ in range(count):
        images = torch.rand(scenes, 1, 60, 60, generator=data)
        labels = torch.randint(0, 10, (scenes,), generator=data)
        corner = torch.randint(0, 32, (scenes, 2), generator=data).float()
        batch = Batch(images, labels, torch.cat([corner, corner + 28], dim=1)).repeat(copies)
        yield batch.images.to(device), batch.labels.to(device), batch.bboxes.to(device)


def _train(model, compiled: bool, device: str, steps: int = 3) -> list[float]:
    step = TrainingStep(model, compiled=compiled)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator(device=device).manual_seed(11)
    losses = []
    for images, labels, bboxes in _batches(device, steps, copies=model.training_copies):
        out, objective = step(images, labels, bboxes, generator)
        optimizer.zero_grad(set_to_none=True)
        objective.loss.backward()
        optimizer.step()
        losses.append(objective.loss.item())
        assert out.logits.shape == (len(labels), 10)
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("core", "changes"),
    [
        ("rnn", {}),
        ("lstm", {}),
        ("lstm", {"glimpse_conv": 3}),
        ("lstm", {"glimpse_combine": "product"}),
        # what the recipes and the study train compiled, beyond the above
        (
            "lstm",
            {
                "reward": "0.1*sparse+0.1*infogain@0+bbox",
                "policy_trains_core": True,
                "label_smoothing": 0.1,
                "learn_std": True,
                "entropy_weight": 0.01,
                "rollouts": 2,
                "baseline": "rollouts",
                "consistency_weight": 0.1,
            },
        ),
        ("lstm", {"policy": "random", "policy_trains_core": True}),  # the study's ram8-random
    ],
)
def test_compiled_training_steps_match_the_eager_ones(core: str, changes: dict, device: str) -> None:
    eager = _ram(core, device, **changes)
    compiled = copy.deepcopy(eager)
    expected = _train(eager, compiled=False, device=device)
    got = _train(compiled, compiled=True, device=device)
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-5)
    # Three Adam steps later the weights still agree: the gradients did too.
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), name
    # The policy was trained (not only the classifier), in both; a random one has none.
    if eager.policy is not None:
        assert not torch.equal(eager.policy.mean.weight, _ram(core, device, **changes).policy.mean.weight)


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("sample", [False, True])
def test_compiled_forward_matches_the_eager_one(sample: bool, device: str) -> None:
    model = _ram("lstm", device).eval()
    images = next(_batches(device, 1))[0]
    forward = CompiledForward(model)
    with torch.inference_mode():
        expected = model(images, sample=sample, generator=torch.Generator(device=device).manual_seed(2))
        got = forward(images, sample=sample, generator=torch.Generator(device=device).manual_seed(2))
    assert torch.allclose(got.step_logits, expected.step_logits, rtol=1e-4, atol=1e-5)
    assert torch.allclose(got.rollout.locations, expected.rollout.locations, atol=1e-5)


def test_randomness_is_drawn_in_the_eager_passes_order() -> None:
    # The fast path hands the graph what draw_randomness drew; the eager pass given the same
    # generator state must see exactly those numbers, or compiled runs would differ.
    model = _ram("rnn", "cpu")
    images = next(_batches("cpu", 1))[0]
    drawn = model.draw_randomness(images, sample=True, generator=torch.Generator().manual_seed(4))
    handed = model.rollout(images, sample=True, randomness=drawn)
    inside = model.rollout(images, sample=True, generator=torch.Generator().manual_seed(4))
    assert torch.equal(handed.locations, inside.locations)
    assert torch.equal(handed.locations[:, 0], drawn[0])
    # With the policy mean, no noise; the dropout masks in training only.
    location, noise, masks = model.draw_randomness(images, sample=False, generator=None)
    assert location.shape == (16, 2) and noise is None and masks.shape[:3] == (2, 16, 4)
    assert model.eval().draw_randomness(images, sample=True, generator=None)[2] is None


@needs_compiler
def test_compiled_retina_tables_and_glimpses_are_the_eager_ones_bit_for_bit() -> None:
    from ramlab.models.retina import Retina

    retina = Retina(glimpse_size=4, scales=3, image_size=(20, 24))
    images = torch.rand(3, 1, 20, 24, generator=torch.Generator().manual_seed(1))
    location = torch.tensor([[0.0, 0.0], [-1.0, 0.9], [0.3, -0.4]])

    def read(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pyramid = retina.prepare(images)
        return pyramid.flat, retina.glimpse(pyramid, location)

    for got, expected in zip(torch.compile(read)(images), read(images), strict=True):
        assert torch.equal(got, expected)


@needs_compiler
def test_the_compiled_passes_are_one_graph_each_without_a_break() -> None:
    # The retina's tables are built by `sense` outside the graph: traced inside the rollout,
    # their out= writes broke it into four graphs (each a guard check and a wrapper a step).
    model = _ram("lstm", "cpu")
    images, labels, bboxes = next(_batches("cpu", 1))
    randomness = model.draw_randomness(images, sample=True, generator=torch.Generator().manual_seed(1))
    training = TrainingStep(model, compiled=False)
    explained = torch._dynamo.explain(training._forward_objective)(
        images, labels, bboxes, randomness, model.sense(images)
    )
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    forward = CompiledForward(model.eval())
    randomness = model.draw_randomness(images, sample=False, generator=None)
    explained = torch._dynamo.explain(forward._forward)(images, False, randomness, model.sense(images))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)


def test_the_training_step_compiles_once_from_a_fresh_model() -> None:
    # The retina's constants are put on the device by `sense`, outside the graph: built lazily
    # inside it, the first trace changed the retina's cache, its guard failed on the second
    # call, and every compiled run compiled its step twice (tens of seconds).
    torch._dynamo.reset()
    graphs = []

    def count(graph, inputs):
        graphs.append(graph)
        return graph.forward

    model = _ram("lstm", "cpu")
    step = torch.compile(TrainingStep(model, compiled=False)._forward_objective, backend=count, dynamic=False)
    for images, labels, bboxes in _batches("cpu", 2):
        randomness = model.draw_randomness(images, sample=True, generator=torch.Generator().manual_seed(1))
        step(images, labels, bboxes, randomness, model.sense(images))
    assert len(graphs) == 1


def test_feed_forward_models_draw_nothing_and_compile_mode_follows_the_device() -> None:
    fc = build_model("fc", None, image_size=(28, 28))
    assert fc.draw_randomness(torch.zeros(2, 1, 28, 28), sample=True, generator=None) == ()
    assert compile_mode(torch.device("cuda")) == "reduce-overhead"
    assert compile_mode(torch.device("cpu")) is None


def test_a_batch_of_another_size_than_the_compiled_one_runs_eagerly_with_the_same_draws() -> None:
    # An epoch's last, smaller batch would cost a graph's compile for one step: it runs eagerly,
    # drawing the numbers the eager pass draws, so the generator ends where it would have.
    model = _ram("rnn", "cpu")
    step = TrainingStep(model, compiled=False, batch=16)
    graphed = []
    step._graph = lambda *args: graphed.append(len(args[0])) or "graph"  # stands in for the compiled one
    images, labels, bboxes = next(_batches("cpu", 1, size=8))
    generator = torch.Generator().manual_seed(7)
    out, objective = step(images, labels, bboxes, generator)
    expected = model(images, sample=True, generator=torch.Generator().manual_seed(7))
    assert graphed == [] and torch.equal(out.rollout.locations, expected.rollout.locations)
    assert torch.equal(objective.loss, model.objective(expected, labels, bboxes).loss)
    assert torch.equal(generator.get_state(), _after_one_eager_pass(model, images, seed=7))
    images, labels, bboxes = next(_batches("cpu", 1, size=16))
    assert step(images, labels, bboxes, generator) == "graph" and graphed == [16]


def _after_one_eager_pass(model, images: torch.Tensor, *, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    model(images, sample=True, generator=generator)
    return generator.get_state()


def test_cpu_graphs_are_called_from_cpp_and_cuda_graphs_replayed(monkeypatch) -> None:
    # torch.compile takes a mode or options, never both: a CPU graph gets inductor's C++
    # wrapper, a CUDA one the CUDA-graphs mode, and options given replace either.
    calls = []
    monkeypatch.setattr(torch, "compile", lambda function, **kwargs: calls.append(kwargs) or function)
    monkeypatch.setattr("ramlab.fastpath.shutil.which", lambda name: "/usr/bin/" + name)
    model = _ram("rnn", "cpu")
    TrainingStep(model, compiled=True)
    CompiledForward(model, options={"cpp_wrapper": False})
    on_cuda = SimpleNamespace(parameters=lambda: iter([SimpleNamespace(device=torch.device("cuda"))]))
    CompiledForward(on_cuda)  # no GPU needed: the fast path reads the device off the parameters
    CompiledForward(on_cuda, options={"triton.cudagraphs": True, "max_autotune": True})
    assert calls == [
        {"options": {"cpp_wrapper": True}, "dynamic": False},
        {"options": {"cpp_wrapper": False}, "dynamic": False},
        {"mode": "reduce-overhead", "dynamic": False},
        {"options": {"triton.cudagraphs": True, "max_autotune": True}, "dynamic": False},
    ]
    assert inductor_options(torch.device("cpu")) == {"cpp_wrapper": True}
    assert inductor_options(torch.device("cuda")) == {}


@pytest.mark.slow
@needs_compiler
def test_train_with_compile_gives_the_eager_run(fake_mnist, tmp_path) -> None:
    # `ramlab train --compile true` end to end: the same errors and (nearly) the same
    # weights as the eager run, and a resume may switch the fast path on.
    from test_cli_train import TINY

    from ramlab.checkpoint import load_checkpoint
    from ramlab.cli import main

    runs = {}
    for compiled in ("false", "true"):
        out = tmp_path / f"compile-{compiled}"
        args = ["train", "ram", "--data", "translated60", *TINY, "--epochs", "2", "--schedule", "none"]
        args += ["--lr", "0.03", "--out", str(out)]
        assert main([*args, "--compile", compiled]) == 0
        runs[compiled] = (json.loads((out / "result.json").read_text()), load_checkpoint(out / "last.pt"))
    (eager, eager_state), (fast, fast_state) = runs["false"], runs["true"]
    for key in ("val_error", "test_error", "per_glimpse_test_error", "rollouts_seen"):
        assert fast[key] == eager[key], key
    for name, weights in eager_state["model"].items():
        assert torch.allclose(fast_state["model"][name], weights, rtol=1e-4, atol=1e-5), name

    out = tmp_path / "compile-false"
    resumed = ["train", "ram", "--data", "translated60", *TINY, "--epochs", "3", "--schedule", "none"]
    resumed += ["--lr", "0.03", "--out", str(out)]
    assert main([*resumed, "--compile", "true", "--resume"]) == 0
    assert json.loads((out / "result.json").read_text())["epochs_run"] == 3


def test_without_a_compiler_the_cpu_fast_path_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setattr("ramlab.fastpath.shutil.which", lambda name: None)
    with pytest.raises(RamlabError, match=r"needs a C\+\+ compiler .* train without --compile"):
        TrainingStep(_ram("rnn", "cpu"), compiled=True)
    TrainingStep(_ram("rnn", "cpu"), compiled=False)  # the eager path needs none
