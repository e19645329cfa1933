"""One trainer for every model: the loop, validation, checkpoints, exact resume, results.

A run directory holds:
    config.yaml     the resolved RunConfig
    metrics.jsonl   namespaced metrics (train/*, loss/*, policy/*, val/*)
    last.pt         the latest state (every epoch, and every `checkpoint_every` steps)
    best.pt         the weights with the lowest validation error
    result.json     test_error, val_error, per_glimpse_test_error, params, epochs, ...
    history.jsonl   budgets changed on resume (`--resume --epochs 90`), one line per resume

Exact resume: epoch e shuffles and samples from a generator seeded with (seed, e), and a
checkpoint stores that generator's state, so an interrupted run continued with `resume`
ends with the same weights as an uninterrupted one (on CPU).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ramlab.checkpoint import init_weights, load_checkpoint, save_checkpoint
from ramlab.config import load_yaml, save_yaml
from ramlab.data.datasets import image_size, load_split
from ramlab.data.loader import SceneLoader
from ramlab.device import resolve_device
from ramlab.diagnostics import grad_norms, starved_parts
from ramlab.errors import RamlabError
from ramlab.evaluate import evaluate
from ramlab.files import write_json
from ramlab.metrics import MetricsLog
from ramlab.models.base import Model
from ramlab.models.registry import build_model
from ramlab.optim import Schedule, make_optimizer
from ramlab.runconfig import RunConfig, resume_changes


def git_commit(where: Path = Path(__file__).parent) -> str | None:
    """The commit of the git checkout holding `where` (ramlab's source by default), with
    "-dirty" when tracked files differ from it; None outside a checkout."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=where)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0 or not head.stdout.strip():
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63)


def build_run_model(config: RunConfig, device: torch.device | str = "cpu") -> Model:
    return build_model(config.model, config.model_config, image_size=image_size(config.data)).to(device)


class Trainer:
    """Trains `config` into `out_dir`. `fit()` returns the result dict (also result.json)."""

    def __init__(self, config: RunConfig, out_dir: str | Path, *, command: str | None = None) -> None:
        self.config = config
        self.cfg = config.train
        self.out = Path(out_dir)
        self.command = command or " ".join(["ramlab", *sys.argv[1:]])
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        self.device = resolve_device(self.cfg.device)

    # ---- set-up -------------------------------------------------------------------------
    def _prepare_dir(self, resume: bool) -> dict[str, Any] | None:
        """Returns the checkpoint to resume from, or None for a fresh run."""
        saved = self.out / "config.yaml"
        last = self.out / "last.pt"
        if saved.exists():
            if resume:
                try:
                    changed = resume_changes(
                        RunConfig.from_dict(load_yaml(saved), where=str(saved)), self.config
                    )
                except RamlabError as exc:
                    raise RamlabError(f"{self.out}: {exc}") from None
                if changed:  # the new budget is the run's config from now on; history says when
                    save_yaml(saved, self.config.to_dict())
                    with (self.out / "history.jsonl").open("a") as history:
                        history.write(json.dumps({"command": self.command, "changed": changed}) + "\n")
                return load_checkpoint(last) if last.exists() else None
            if last.exists() or (self.out / "result.json").exists():
                raise RamlabError(
                    f"{self.out} already holds a run; pass --resume to continue it, or choose another --out"
                )
        self.out.mkdir(parents=True, exist_ok=True)
        save_yaml(saved, self.config.to_dict())
        return None

    def _loaders(self) -> tuple[SceneLoader, SceneLoader, SceneLoader]:
        seed, cfg = self.cfg.data_seed, self.cfg
        train = load_split(self.config.data, "train", seed=seed, limit=cfg.train_limit)
        val = load_split(self.config.data, "val", seed=seed, limit=cfg.eval_limit)
        test = load_split(self.config.data, "test", seed=seed, limit=cfg.eval_limit)
        return (
            SceneLoader(train, batch_size=cfg.batch_size, device=self.device),
            SceneLoader(val, batch_size=cfg.eval_batch_size, device=self.device),
            SceneLoader(test, batch_size=cfg.eval_batch_size, device=self.device),
        )

    def _fresh_train_loader(self, epoch: int) -> SceneLoader:
        """Epoch e's own training scenes (same digits, new placements): scene seed
        data_seed + 1000·e, built in memory and not cached."""
        scenes = load_split(
            self.config.data,
            "train",
            seed=self.cfg.data_seed + 1000 * epoch,
            limit=self.cfg.train_limit,
            cache=False,
        )
        return SceneLoader(scenes, batch_size=self.cfg.batch_size, device=self.device)

    # ---- the loop -----------------------------------------------------------------------
    def fit(self, *, resume: bool = False) -> dict[str, Any]:
        if resume and (self.out / "result.json").exists() and not (self.out / "last.pt").exists():
            raise RamlabError(f"{self.out}: the run has finished (result.json) and has no last.pt")
        state = self._prepare_dir(resume)
        commit = git_commit()  # the code this process loaded, whatever the tree holds by the end
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        model = build_run_model(self.config, self.device)
        train, val, test = self._loaders()
        steps_per_epoch = len(train)
        optimizer = make_optimizer(model.parameters(), cfg)
        schedule = Schedule(optimizer, cfg, steps_per_epoch=steps_per_epoch)
        copies = model.training_copies  # the RAM's M rollouts per image

        epoch, start_step, global_step, rollouts_seen = 0, 0, 0, 0
        best_error, best_epoch, train_seconds = math.inf, -1, 0.0
        generator_state = None
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            epoch, start_step, global_step = (
                state["epoch"],
                state["step_in_epoch"],
                state["global_step"],
            )
            best_error, best_epoch = state["best_val_error"], state["best_epoch"]
            train_seconds = state["train_seconds"]
            rollouts_seen = state.get("rollouts_seen", 0)
            generator_state = state["generator"]
        elif cfg.init_from:
            init_weights(model, cfg.init_from)
        log = MetricsLog(self.out / "metrics.jsonl", resume_step=global_step if state is not None else None)
        board = self._tensorboard()

        def checkpoint(path: Path, *, epoch: int, step_in_epoch: int, generator: torch.Generator) -> None:
            save_checkpoint(
                path,
                {
                    "config": self.config.to_dict(),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "epoch": epoch,
                    "step_in_epoch": step_in_epoch,
                    "global_step": global_step,
                    "generator": generator.get_state(),
                    "best_val_error": best_error,
                    "best_epoch": best_epoch,
                    "train_seconds": train_seconds,
                    "rollouts_seen": rollouts_seen,
                },
            )

        def evaluate_on(loader: SceneLoader):
            return evaluate(model, loader, sample=cfg.eval_sample, rollouts=cfg.eval_rollouts)

        first_epoch = epoch
        try:
            while self._stop_reason(epoch, best_epoch, train_seconds) is None:
                if cfg.fresh_scenes and epoch > 0:
                    train = self._fresh_train_loader(epoch)
                generator = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch))
                order = train.order(generator)
                if generator_state is not None and start_step > 0:
                    generator.set_state(generator_state)
                sample_gen = generator if self.device.type == "cpu" else None
                model.train()
                bar = tqdm(
                    total=steps_per_epoch,
                    initial=start_step,
                    desc=f"epoch {epoch + 1}/{cfg.epochs}",
                    disable=not cfg.progress,
                    mininterval=1.0 if sys.stderr.isatty() else 30.0,
                    leave=False,
                )
                tick, seen = time.perf_counter(), 0
                norm_sums: dict[str, float] = {}
                for step, batch in enumerate(train.iterate(order, start=start_step), start=start_step):
                    if copies > 1:
                        batch = batch.repeat(copies)
                    out = model(batch.images, sample=True, generator=sample_gen)
                    objective = model.objective(out, batch.labels, batch.bboxes)
                    loss = objective.loss
                    if not torch.isfinite(loss):
                        raise RamlabError(
                            f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} of {steps_per_epoch}; stopped. "
                            f"The last good checkpoint is kept in {self.out}. Fix: lower --lr or set --grad-clip"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    logging = (global_step + 1) % cfg.log_every == 0 or step + 1 == steps_per_epoch
                    norms = grad_norms(model) if logging else {}  # before clipping
                    if cfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    optimizer.step()
                    schedule.after_step()
                    global_step += 1
                    seen += len(batch)
                    rollouts_seen += len(batch)
                    bar.update(1)
                    if logging:
                        elapsed = time.perf_counter() - tick
                        error = (out.logits.argmax(1) != batch.labels).float().mean() * 100
                        train_seconds += elapsed
                        record = {
                            "step": global_step,
                            "epoch": epoch + step / steps_per_epoch,
                            "train/loss": loss.detach(),
                            "train/error": error,
                            "train/lr": schedule.lr,
                            "train/rollouts": rollouts_seen,
                            "perf/train_seconds": train_seconds,
                            "perf/samples_per_s": seen / max(elapsed, 1e-9),
                            **objective.metrics,
                            **norms,
                        }
                        log.write(record)
                        self._board(board, record, global_step)
                        bar.set_postfix(loss=f"{loss.item():.3f}", err=f"{error.item():.1f}")
                        for key, value in norms.items():
                            norm_sums[key] = norm_sums.get(key, 0.0) + float(value)
                        tick, seen = time.perf_counter(), 0
                    if (
                        cfg.checkpoint_every
                        and global_step % cfg.checkpoint_every == 0
                        and step + 1 < steps_per_epoch
                    ):
                        train_seconds += time.perf_counter() - tick
                        tick = time.perf_counter()
                        checkpoint(
                            self.out / "last.pt",
                            epoch=epoch,
                            step_in_epoch=step + 1,
                            generator=generator,
                        )
                bar.close()
                train_seconds += time.perf_counter() - tick
                epoch += 1
                start_step, generator_state = 0, None
                result = evaluate_on(val)
                starved = starved_parts(norm_sums)
                record = {
                    "step": global_step,
                    "epoch": epoch,
                    "val/error": result.error,
                    "val/loss": result.loss,
                    "val/per_step_error": result.per_step_error,
                    "train/lr": schedule.lr,
                    "train/rollouts": rollouts_seen,
                    "perf/train_seconds": train_seconds,
                }
                if result.in_box is not None:
                    record["val/in_box"] = sum(result.in_box) / len(result.in_box)
                    record["val/in_box_per_step"] = result.in_box
                if starved:
                    record["warning/no_gradient"] = starved
                log.write(record)
                self._board(board, record, global_step)
                schedule.after_epoch(result.error)
                if result.error < best_error:
                    best_error, best_epoch = result.error, epoch
                    save_checkpoint(
                        self.out / "best.pt",
                        {
                            "config": self.config.to_dict(),
                            "model": model.state_dict(),
                            "epoch": epoch,
                            "val_error": result.error,
                        },
                    )
                checkpoint(self.out / "last.pt", epoch=epoch, step_in_epoch=0, generator=generator)
                if starved:  # shown even without progress output: the run is not what it claims
                    print(
                        f"warning: epoch {epoch}: no gradient reached {', '.join(starved)} "
                        "(grad/<part> = 0 at every logged step of the epoch)",
                        file=sys.stderr,
                    )
                if cfg.progress:
                    in_box = "" if result.in_box is None else f", glimpses in box {record['val/in_box']:.0f}%"
                    print(
                        f"epoch {epoch}/{cfg.epochs}: val error {result.error:.2f}% "
                        f"(best {best_error:.2f}%){in_box}, lr {schedule.lr:.2g}",
                        file=sys.stderr,
                    )
        finally:
            log.close()
            if board is not None:
                board.close()

        finished = self.out / "result.json"
        if epoch == first_epoch and start_step == 0 and finished.exists():
            # A resume of a finished run that trained nothing: the test split is read once.
            return json.loads(finished.read_text())
        best = load_checkpoint(self.out / "best.pt", map_location=self.device)
        model.load_state_dict(best["model"])
        test_result = evaluate_on(test) if cfg.test else None
        result = {
            "model": self.config.model,
            "data": self.config.data,
            "test_error": test_result and test_result.error,
            "val_error": best_error,
            "per_glimpse_test_error": test_result and test_result.per_step_error,
            "test_loss": test_result and test_result.loss,
            "test_count": test_result and test_result.count,
            "test_protocol": test_result and test_result.protocol,
            "test_in_box": test_result and test_result.in_box,
            "params": model.num_parameters(),
            "epochs": cfg.epochs,
            "epochs_run": epoch,
            "stopped_early": epoch < cfg.epochs,
            "stop_reason": self._stop_reason(epoch, best_epoch, train_seconds),
            "best_epoch": best_epoch,
            "steps": global_step,
            "rollouts_seen": rollouts_seen,
            "train_seconds": train_seconds,
            "seed": cfg.seed,
            "data_seed": cfg.data_seed,
            "device": str(self.device),
            "commit": commit,
            "command": self.command,
            "config": self.config.to_dict(),
        }
        write_json(self.out / "result.json", result)
        return result

    def _stop_reason(self, epoch: int, best_epoch: int, train_seconds: float) -> str | None:
        """Why training ends before epoch `epoch`: every epoch done, `early_stop` epochs
        without a better validation error, or the time budget spent; None: go on."""
        cfg = self.cfg
        if epoch >= cfg.epochs:
            return "epochs"
        if cfg.early_stop > 0 and best_epoch > 0 and epoch - best_epoch >= cfg.early_stop:
            return "early_stop"
        if cfg.time_budget > 0 and train_seconds >= 60 * cfg.time_budget:
            return "time_budget"
        return None

    # ---- TensorBoard --------------------------------------------------------------------
    def _tensorboard(self):
        if not self.cfg.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RamlabError(
                "--tensorboard needs the tensorboard package: pip install 'ramlab[tensorboard]'"
            ) from None
        return SummaryWriter(str(self.out / "tensorboard"))

    @staticmethod
    def _board(board, record: dict[str, Any], step: int) -> None:
        if board is None:
            return
        for key, value in record.items():
            if "/" in key and not isinstance(value, list):
                board.add_scalar(key, float(value), step)
