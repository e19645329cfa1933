"""One trainer for every model: the loop, validation, checkpoints, exact resume, results.

A run directory holds:
    config.yaml     the resolved RunConfig
    metrics.jsonl   namespaced metrics (train/*, loss/*, policy/*, val/*)
    last.pt         the latest state (every epoch, and every `checkpoint_every` steps)
    best.pt         the weights with the lowest validation error (their moving average with --ema);
                    staged as best.next.pt until last.pt records their epoch (ramlab.checkpoint)
    result.json     test_error, val_error, per_glimpse_test_error, params, epochs, ...
                    (result.previous[.STEPS].json: a finished run's, while a resume trains it on)
    history.jsonl   a line for each resume that changed settings, code or device
    .lock           held by the one process writing the run (see ramlab.lock)

Exact resume: epoch e shuffles and samples from a generator seeded with (seed, e), and a
checkpoint stores that generator's state, so an interrupted run continued with `resume`
ends with the same weights as an uninterrupted one (on a GPU the rollouts draw from a GPU
generator, saved alike, up to its kernels' non-determinism). SIGTERM or Ctrl-C stops the run
after the step in progress, writing last.pt at that step (`ramlab.stop_signal`).
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ramlab import run_dir
from ramlab.averaging import WeightAverage
from ramlab.checkpoint import (
    commit_best,
    init_weights,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    settle_best,
    stage_best,
)
from ramlab.data.loader import SceneLoader
from ramlab.device import resolve_device, set_threads
from ramlab.diagnostics import grad_norms, starved_parts
from ramlab.errors import Interrupted
from ramlab.evaluate import evaluate
from ramlab.fastpath import TrainingStep
from ramlab.files import remove_stale_temp, write_json
from ramlab.finite import FiniteCheck
from ramlab.lock import DirectoryLock
from ramlab.metrics import MetricsLog, open_tensorboard, validation_record, write_tensorboard
from ramlab.optim import Schedule, make_optimizer
from ramlab.position import Position, epoch_generators
from ramlab.progress import training_ends
from ramlab.provenance import run_commit
from ramlab.run_data import FreshScenes, final_test_loader, split_loaders
from ramlab.run_messages import (
    finish_interrupted_message,
    interrupted_message,
    nothing_trained_message,
    stopped_message,
)
from ramlab.runconfig import RunConfig, build_run_model
from ramlab.stop_signal import StopSignal


class Trainer:
    """Trains `config` into `out_dir`. `fit()` returns the result dict (also result.json)."""

    def __init__(self, config: RunConfig, out_dir: str | Path, *, command: str | None = None,
                 study_job: bool = False, commit: str | None = None) -> None:  # fmt: skip
        """`study_job`: a study's job, which the study resumes (not `--resume`). `commit`: the
        code running, where the caller knows it better than HEAD now (a study's, from its start)."""
        self.config = config
        self.given_commit = commit
        self.study_job = study_job
        self.cfg = config.train
        self.out = Path(out_dir)
        self.command = command or shlex.join(["ramlab", *sys.argv[1:]])
        set_threads(self.cfg.threads)
        self.device = resolve_device(self.cfg.device)
        self.stop = StopSignal()

    @property
    def resume_command(self) -> str:
        """A bare resume: it keeps the saved settings (a `--config` would re-read the recipe)."""
        if self.study_job:
            return self.command if " --resume" in self.command else f"{self.command} --resume"
        return shlex.join(["ramlab", "train", self.config.model, "--out", str(self.out), "--resume"])

    # ---- the run, step by step ----------------------------------------------------------
    def fit(self, *, resume: bool = False) -> dict[str, Any]:
        """Set up (or resume), train epoch by epoch until a stop reason, then test the best
        checkpoint and write result.json."""
        torch.manual_seed(self.cfg.seed)
        # Built first: settings the model refuses, or weights to start from that do not fit
        # it, leave no run directory behind.
        self.model = build_run_model(self.config, self.device)
        if self.cfg.init_from and not (resume and (self.out / "last.pt").exists()):
            init_weights(self.model, self.cfg.init_from)
        run_dir.refuse_study_folder(self.out)
        self.commit = self.given_commit or run_commit()  # the code this process loaded
        # A run another process holds: in a study, a job of an earlier run of it still going.
        lock = {"resume": "run the study again", "advice": ""} if self.study_job else {}
        with DirectoryLock(self.out, self.command, **lock), self.stop:
            how = {"resume": resume, "commit": self.commit, "device": str(self.device)}
            state, self.config = run_dir.prepare_run_dir(self.out, self.config, self.command, **how)
            self.cfg = self.config.train
            remove_stale_temp(self.out)
            settle_best(self.out, state["best_epoch"] if state else None)
            self._set_up(state)
            first_epoch = self.pos.epoch
            if self._stop_reason() is None:
                run_dir.set_aside_result(self.out)
            try:
                self.validating = False
                while self._stop_reason() is None:
                    self._train_epoch()
                    self.validating = True  # pos.epoch counts the epoch as done from here
                    self._end_epoch()
                    self.validating = False
                    self._stop_if_asked()  # a signal in the epoch's last step or its validation
            except Interrupted:
                raise
            except KeyboardInterrupt:  # Ctrl-C, or a second signal: stop at once
                epoch = self.pos.epoch - 1 if self.validating else self.pos.epoch
                message = interrupted_message(
                    epoch, self.out, self.resume_command, validating=self.validating
                )
                raise Interrupted(message, exit_code=self.stop.exit_code) from None
            finally:
                self.log.close()
                if self.fresh is not None:
                    self.fresh.close()
                if self.board is not None:
                    self.board.close()
            if self.pos.epoch == first_epoch and self.pos.step_in_epoch == 0:  # trained nothing
                kept = run_dir.kept_result(self.out, self.pos.global_step, test=self.cfg.test)
                if kept is not None:
                    print(nothing_trained_message(self.out, self._stop_reason()), file=sys.stderr)
                    return kept
            try:
                return self._finish()
            except KeyboardInterrupt:
                raise Interrupted(
                    finish_interrupted_message(self.out, self.resume_command), exit_code=self.stop.exit_code
                ) from None

    def _set_up(self, state: dict[str, Any] | None) -> None:
        """Data, optimiser, schedule and logs; restored from `state` when resuming."""
        cfg = self.cfg
        self.train, self.val = split_loaders(self.config, self.device)
        self.fresh = FreshScenes(self.config, self.device) if cfg.fresh_scenes else None
        self.steps_per_epoch = len(self.train)
        self.finite = FiniteCheck(
            self.device,
            lambda step: f"epoch {self.pos.epoch + 1}, step {step + 1} of {self.steps_per_epoch}",
            self.out,
            self.resume_command,
            cfg.lr,
            lr_floor=cfg.lr_min if cfg.schedule in ("exponential", "plateau") else 0.0,
            grad_clip=cfg.grad_clip,
        )
        self.optimizer = make_optimizer(self.model.parameter_groups(), cfg)
        # One graph, for the full batch (of M copies of each image); an epoch's last runs eagerly.
        self.step = TrainingStep(
            self.model, compiled=cfg.compile, batch=cfg.batch_size * self.model.training_copies
        )
        self.schedule = Schedule(self.optimizer, cfg, steps_per_epoch=self.steps_per_epoch)
        self.pos = Position()
        if state is not None:
            load_weights(self.model, state, self.out / "last.pt")
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])  # at this config's lr (see optim)
            self.pos = Position.from_checkpoint(state)
        # (else the weights are the new model's, or init_from's, loaded in fit)
        self.average = WeightAverage(self.model, cfg.ema)  # of the loaded weights
        self.average.load_state_dict(state.get("ema") if state else None)
        resumed = self.pos.global_step if state else None  # the logs are cut back to it
        self.log = MetricsLog(self.out / "metrics.jsonl", resume_step=resumed)
        self.board = open_tensorboard(self.out, resume_step=resumed) if self.cfg.tensorboard else None

    def _train_epoch(self) -> None:
        """One pass over the training scenes (from the saved step when resuming mid-epoch)."""
        cfg, pos, model = self.cfg, self.pos, self.model
        self.tick = time.perf_counter()  # training time, the epoch's fresh scenes included
        if self.fresh is not None and (pos.epoch > 0 or cfg.augmented):
            self.train = self.fresh.loader(pos.epoch)
        elif self.fresh is not None:  # epoch 0 trains on the cached scenes
            self.fresh.start(1)
        order, self.generator, sample_gen = epoch_generators(
            pos, cfg.seed, self.train.order, self.device, shared=self._samples_from_epoch_generator
        )
        self.sample_generator = sample_gen
        copies = model.training_copies  # the RAM's M rollouts per image
        model.train()
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=pos.step_in_epoch,
            desc=f"epoch {pos.epoch + 1}/{cfg.epochs}",
            disable=not cfg.progress,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
            leave=False,
        )
        self.seen_since = time.perf_counter()  # the samples/s window
        self.seen = 0
        if pos.step_in_epoch == 0:  # a resumed epoch keeps what its first steps logged
            pos.norm_sums = {}
        self.step_lr = self.schedule.lr  # the rate the latest step took: logged as train/lr
        for step, batch in enumerate(
            self.train.iterate(order, start=pos.step_in_epoch), start=pos.step_in_epoch
        ):
            if copies > 1:
                batch = batch.repeat(copies)
            out, objective = self.step(batch.images, batch.labels, batch.bboxes, sample_gen)
            logging = (pos.global_step + 1) % cfg.log_every == 0 or step + 1 == self.steps_per_epoch
            # A signal stops the run after this step, with a checkpoint of it (at an epoch's
            # last step, after its validation instead).
            mid_epoch = step + 1 < self.steps_per_epoch
            stop = mid_epoch and self.stop.received is not None
            checkpoint = stop or (
                mid_epoch and cfg.checkpoint_every > 0 and (pos.global_step + 1) % cfg.checkpoint_every == 0
            )
            self.finite.loss(objective.loss, step, now=logging or checkpoint)
            self.optimizer.zero_grad(set_to_none=True)
            objective.loss.backward()
            norms = grad_norms(model) if logging else {}  # before clipping
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            self.step_lr = self.schedule.lr
            self.optimizer.step()
            self.average.update(model)
            self.schedule.after_step()
            if checkpoint or step + 1 == self.steps_per_epoch:  # kept: checkpointed or validated
                self.finite.weights(model, step)
            pos.global_step += 1
            pos.step_in_epoch = step + 1
            self.seen += len(batch)
            pos.rollouts_seen += len(batch)
            bar.update(1)
            if logging:
                self._log_step(batch, out, objective, norms, bar)
            if checkpoint:
                self._clock()
                self._checkpoint(self.out / "last.pt")
                self._skip_since_tick()  # the write is not training time
            if stop:
                bar.close()
                self._stop_if_asked()
        bar.close()
        self._clock()
        pos.epoch += 1
        pos.step_in_epoch, pos.generator, pos.sample_generator = 0, None, None

    def _stop_if_asked(self) -> None:
        """After a step or an epoch that wrote last.pt: stop if a signal asked to."""
        if self.stop.received is not None:
            pos = self.pos
            raise Interrupted(
                stopped_message(
                    self.stop.received.name,
                    pos.epoch,
                    pos.step_in_epoch,
                    self.steps_per_epoch,
                    self.out,
                    self.resume_command,
                ),
                exit_code=self.stop.exit_code,
            )

    def _skip_since_tick(self) -> None:
        """Leave the time since the last tick out of the training time and the rate's window."""
        now = time.perf_counter()
        self.seen_since += now - self.tick
        self.tick = now

    def _clock(self) -> None:
        """Adds the training time since the last tick to the run's training seconds."""
        now = time.perf_counter()
        self.pos.train_seconds += now - self.tick
        self.tick = now

    def _log_step(self, batch, out, objective, norms: dict[str, Any], bar) -> None:
        elapsed = time.perf_counter() - self.seen_since  # since the last log (a checkpoint moves tick)
        error = (out.logits.argmax(1) != batch.labels).float().mean() * 100
        self._clock()
        pos = self.pos
        record = {
            "step": pos.global_step,
            "epoch": pos.epoch + pos.step_in_epoch / self.steps_per_epoch,  # done after this step
            "train/loss": objective.loss.detach(),
            "train/error": error,
            "train/lr": self.step_lr,
            "train/rollouts": pos.rollouts_seen,
            "perf/train_seconds": pos.train_seconds,
            "perf/samples_per_s": self.seen / max(elapsed, 1e-9),
            **objective.metrics,
            **norms,
        }
        self.log.write(record)
        write_tensorboard(self.board, record, pos.global_step)
        bar.set_postfix(loss=f"{objective.loss.item():.3f}", err=f"{error.item():.1f}")
        for key, value in norms.items():
            self.pos.norm_sums[key] = self.pos.norm_sums.get(key, 0.0) + float(value)
        self.seen, self.seen_since = 0, self.tick  # the reading _clock made above

    def _end_epoch(self) -> None:
        """Validate, log, keep the best weights, checkpoint, and say how the epoch went."""
        pos, cfg = self.pos, self.cfg
        result = self._evaluate(self.val)
        starved = starved_parts(self.pos.norm_sums)
        record = validation_record(result, pos, lr=self.step_lr, starved=starved)
        self.log.write(record)
        write_tensorboard(self.board, record, pos.global_step)
        self.schedule.after_epoch(result.error)
        improved = result.error < pos.best_val_error
        if improved:
            pos.best_val_error, pos.best_epoch = result.error, pos.epoch
            best = {"config": self.config.to_dict(), "model": self.average.evaluated(self.model).state_dict()}
            stage_best(self.out, {**best, "epoch": pos.epoch, "val_error": result.error})
        self._checkpoint(self.out / "last.pt")
        if improved:
            commit_best(self.out)
        if starved:  # shown even without progress output: the run is not what it claims
            parts = ", ".join(starved)
            print(f"warning: epoch {pos.epoch}: no gradient reached {parts} (grad/<part> = 0 at "
                  "every logged step of the epoch)", file=sys.stderr)  # fmt: skip
        if cfg.progress:
            in_box = "" if result.in_box is None else f", glimpses in box {record['val/in_box']:.0f}%"
            print(
                f"epoch {pos.epoch}/{cfg.epochs}: val error {result.error:.2f}% "
                f"(best {pos.best_val_error:.2f}%){in_box}, lr {self.schedule.lr:.2g}",
                file=sys.stderr,
            )

    def _finish(self) -> dict[str, Any]:
        """Test the best checkpoint (unless `test` is false) and write result.json."""
        cfg, pos = self.cfg, self.pos
        best = load_checkpoint(self.out / "best.pt", map_location=self.device)
        self.average.evaluated(self.model).load_state_dict(best["model"])
        test_result = self._evaluate(final_test_loader(self.config, self.device)) if cfg.test else None
        result = run_dir.result_record(
            self.config,
            pos,
            test_result,
            params=self.model.num_parameters(),
            stop_reason=self._stop_reason(),
            device=str(self.device),
            commit=self.commit,
            command=self.command,
        )
        write_json(self.out / "result.json", result)
        return result

    # ---- pieces -------------------------------------------------------------------------
    def _checkpoint(self, path: Path) -> None:
        position = {f.name: getattr(self.pos, f.name) for f in fields(self.pos)}
        position["generator"] = self.generator.get_state()
        # None where the epoch's generator draws the samples: a GPU run resumed on a CPU would
        # otherwise keep its stale GPU state, restored by a later resume on the GPU.
        position["sample_generator"] = (
            None if self.sample_generator is self.generator else self.sample_generator.get_state()
        )
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.average.averaged is not None:
            state["ema"] = self.average.state_dict()
        meta = {"config": self.config.to_dict(), "commit": self.commit, "device": str(self.device)}
        self.log.sync()
        if self.board is not None:  # a resume rewrites only the events past the checkpoint
            self.board.flush()
        save_checkpoint(path, {**meta, **state, "schedule": self.schedule.state_dict(), **position})

    def _evaluate(self, loader: SceneLoader):
        model = self.average.evaluated(self.model)
        return evaluate(model, loader, sample=self.cfg.eval_sample, rollouts=self.cfg.eval_rollouts)

    @property
    def _samples_from_epoch_generator(self) -> bool:
        return self.device.type == "cpu"

    def _stop_reason(self) -> str | None:
        """Why training ends here (`progress.training_ends`), None to go on. Read at an
        epoch's end only: the rest of a partly done epoch always trains (the time budget
        stops after the first epoch that reaches it, so a checkpoint within that epoch
        resumes to its end)."""
        pos, cfg = self.pos, self.cfg
        if pos.step_in_epoch > 0:
            return None
        return training_ends(
            pos.epoch,
            pos.best_epoch,
            patience=cfg.early_stop,
            epochs=cfg.epochs,
            train_seconds=pos.train_seconds,
            budget_minutes=cfg.time_budget,
        )
