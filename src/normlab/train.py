"""`python -m normlab.train` (or `normlab-train`): compose -> instantiate -> fit -> summary.

One job = one run directory (docs/run-directory.md). Hydra's multirun (`-m`) runs a preset's sweep,
one job after another (or through a launcher: `hydra/launcher=local|slurm`).
"""

from __future__ import annotations

import logging
import secrets
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from normlab import resume, signals, sweep
from normlab.appended_files import AppendedFilesAtCheckpoint
from normlab.config import CONF_DIR
from normlab.console import ProgressLines, progress_bar_wanted, silence_library_noise
from normlab.distributed import ReleaseProcessGroupAtExit
from normlab.errors import NormlabError
from normlab.module import SupervisedModule
from normlab.process import process_record, still_running
from normlab.runlog import MetricsCSVLogger, RunSummary, last_values
from normlab.schema import check_overrides, validate_config

log = logging.getLogger("normlab.train")


@dataclass
class RunResult:
    status: str
    module: SupervisedModule | None
    trainer: L.Trainer | None
    summary: dict[str, Any]


def build_loggers(
    cfg: DictConfig, run_dir: Path, job_name: str, wandb_id: str | None = None
) -> list[L.pytorch.loggers.Logger]:
    """metrics.csv always; W&B unless `logger=none`, as the W&B run `wandb_id` (a resumed run
    continues its own W&B run)."""
    loggers: list[Any] = [MetricsCSVLogger(run_dir)]
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if wandb_cfg:
        from lightning.pytorch.loggers import WandbLogger

        options = OmegaConf.to_container(wandb_cfg, resolve=True)
        mode = options.pop("mode")
        if mode not in ("offline", "online", "disabled"):
            raise NormlabError(
                f"logger.wandb.mode={mode!r}; valid choices: ['offline', 'online', 'disabled']"
            )
        wandb_logger = WandbLogger(
            save_dir=str(run_dir),
            name=job_name,
            mode=mode,
            id=wandb_id,
            # A W&B id is its run's for good: only a resumed normlab run continues one.
            resume="allow" if cfg.get("resume") else "never",
            config=OmegaConf.to_container(cfg, resolve=True),
            **options,
        )
        # WandbLogger always passes `anonymous`, which W&B >= 0.31 ignores with a warning.
        wandb_logger._wandb_init.pop("anonymous", None)
        loggers.append(wandb_logger)
    return loggers


def build_probes(cfg: DictConfig) -> list[L.Callback]:
    """One callback per entry of `probe` (the `probe/` group options chosen, e.g. probe=[activations])."""
    probes = []
    for name, probe_cfg in (cfg.get("probe") or {}).items():
        if not probe_cfg or "_target_" not in probe_cfg:
            # A preset may tune a probe's settings while the user turned it off (probe=none).
            log.info("probe.%s has settings but is not selected (probe=%s): off", name, name)
            continue
        probes.append(instantiate(probe_cfg))
    return probes


# The statuses a W&B run ends with exit code 0: the others (diverged, failed, interrupted) show as
# failed on the dashboard, with normlab's status in the run's summary.
WANDB_OK_STATUSES = ("finished", "fast_dev_run")


def _finish_wandb(summary: dict[str, Any]) -> None:
    # WandbLogger never calls wandb.finish(): without it the next job of a multirun would log
    # into this job's run.
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.run.summary.update(
                {k: summary.get(k) for k in ("status", "diverged_at_step", "step", "error")}
            )
            wandb.finish(exit_code=0 if summary["status"] in WANDB_OK_STATUSES else 1)


def warn_if_sweep_ignored(cfg: DictConfig) -> None:
    """A preset that defines a sweep, run without -m, runs only its base point: say so."""
    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:
        return
    params = OmegaConf.select(hydra_cfg, "sweeper.params") or {}
    if params and hydra_cfg.mode == RunMode.RUN:
        sweep = " ".join(f"{k}={v}" for k, v in params.items())
        log.warning(
            "experiment %s defines a sweep (%s) but this is a single run: only its base point runs. "
            "Add -m to run the whole sweep.",
            cfg.get("name"),
            sweep,
        )


def run(
    cfg: DictConfig,
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    job_name: str | None = None,
    callbacks: Sequence[L.Callback] = (),
) -> RunResult:
    """Train one job described by `cfg` into `run_dir`; always leaves a truthful summary.json.

    `overrides` are recorded in the summary; `job_name` names the W&B run (default: the overrides);
    `callbacks` are added to the probes (e.g. a timer). Raises what training raised, after writing
    `failed` (or `interrupted`); `NormlabError` marks bad input."""
    run_dir = Path(run_dir)
    is_rank_zero = rank_zero_only.rank == 0  # under strategy=ddp every rank runs this function
    earlier = resume.read_summary(run_dir)
    if is_rank_zero and earlier is not None:
        _check_continues(cfg, run_dir, earlier)
    _validate_at_the_door(cfg, run_dir, overrides, holds_a_run=earlier is not None)
    run_dir.mkdir(parents=True, exist_ok=True)
    silence_library_noise()
    flushing_before = flushes_denormals()
    torch.set_flush_denormal(bool(cfg.flush_denormal))  # sigmoid nets on CPU: docs/design.md
    threads_before = torch.get_num_threads()
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    job_name = job_name or ",".join(overrides) or "default"
    max_steps = int(cfg.trainer.max_steps)
    # A run continued in its own directory keeps its W&B run and its record of earlier attempts.
    continues = earlier is not None and bool(cfg.get("resume"))
    wandb_id = (earlier or {}).get("wandb_id") if continues else None
    summary = (RunSummary.continued if continues else RunSummary)(
        run_dir,
        experiment=cfg.get("name"),
        overrides=list(overrides),
        seed=int(cfg.seed),
        max_steps=max_steps,
        config=OmegaConf.to_container(cfg, resolve=True),
        process=process_record(),
        job_name=job_name,
        wandb_id=wandb_id or _new_wandb_id(cfg),
    )
    summary.write(status="running")
    module = trainer = None
    step, status, fields = 0, "failed", {}
    try:
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
        datamodule = instantiate(cfg.data)
        model = instantiate(cfg.model, norm=OmegaConf.to_container(cfg.norm, resolve=True))
        module = instantiate(cfg.module, model=model, optimizer=instantiate(cfg.optim))
        progress_bar = progress_bar_wanted(cfg.trainer.get("enable_progress_bar", "auto"))
        probes = build_probes(cfg)
        trainer = instantiate(
            cfg.trainer,
            logger=build_loggers(cfg, run_dir, job_name, summary.data["wandb_id"]),
            callbacks=[
                *probes,
                *_checkpointing(cfg, run_dir, probes),
                *([] if progress_bar else [ProgressLines(max_steps)]),
                ReleaseProcessGroupAtExit(),
                *callbacks,
            ],
            enable_progress_bar=progress_bar,
            default_root_dir=str(run_dir),
            plugins=_cluster_plugins(),
        )
        compile_model(cfg, model, trainer.strategy.root_device, probes)
        summary.write(device=str(trainer.strategy.root_device), threads=torch.get_num_threads())
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("resume"))
        step, diverged_at = _where_training_ended(trainer)
        if diverged_at is not None:
            status, fields = "diverged", {"diverged_at_step": diverged_at}
            log.warning("run diverged: non-finite loss at step %d", diverged_at)
        elif trainer.fast_dev_run:
            status = "fast_dev_run"  # a check of the code path, never a result
        elif step == max_steps:
            status = "finished"
        else:
            status, fields = "interrupted", {"error": f"stopped at step {step} of {max_steps}"}
    except (KeyboardInterrupt, SystemExit) as err:
        # Lightning turns Ctrl-C into SystemExit(1) and SIGTERM into a SystemExit with no code;
        # with normlab.signals installed (the command line), the signal is named and its exit
        # code kept (143 for SIGTERM, 130 for SIGINT).
        signum = signals.ending_signal(err)
        reason = signum.name if signum is not None else f"{type(err).__name__}: {err}"
        status, fields = "interrupted", {"error": reason}
        code = signals.exit_code(err)
        if code is not None:
            raise SystemExit(code) from err
        raise
    except Exception as err:
        status, fields = "failed", {"error": f"{type(err).__name__}: {err}"}
        if signal.SIGUSR2 in signals.received:
            # submitit refused to requeue after SIGUSR2 (max_num_timeout reached): the run was
            # stopped, not broken; a re-launched sweep resumes it from its checkpoint.
            status, fields = "interrupted", {"error": f"SIGUSR2, not requeued: {err}"}
        raise
    finally:
        if trainer is not None:
            for logger in trainer.loggers:
                logger.save()
            if status in ("failed", "interrupted"):
                step = _where_training_ended(trainer)[0]
        summary.end(
            status,
            step=step,
            final_metrics=last_values(run_dir / MetricsCSVLogger.FILE),
            **fields,
        )
        _finish_wandb(summary.data)
        # `threads` and `flush_denormal` are the job's, not the process's: flushing is processor
        # state that would change every later float computation in the process (a test, a
        # notebook, the next job of a sweep that turned it off).
        torch.set_num_threads(threads_before)
        torch.set_flush_denormal(flushing_before)
    log.info("run %s: %s at step %d -> %s", job_name, status, step, run_dir)
    return RunResult(status, module, trainer, summary.data)


def _check_continues(cfg: DictConfig, run_dir: Path, earlier: dict[str, Any]) -> None:
    """A run directory that holds a run takes only that run, continued (`resume`), and never
    while its process still runs."""
    if not cfg.get("resume"):
        raise NormlabError(
            f"{run_dir} already holds a run (summary.json, {earlier.get('status')}); continue it "
            f"with `python -m normlab.train resume={run_dir}`, or choose another directory "
            "(hydra.run.dir / hydra.sweep.dir)"
        )
    if earlier.get("status") == "running" and still_running(earlier.get("process")):
        raise NormlabError(resume.running_message(run_dir, earlier, alive=True))


def _new_wandb_id(cfg: DictConfig) -> str | None:
    """A W&B run id chosen before the run starts, so that its summary names it from the start
    (8 characters of [0-9a-f], valid as a W&B id)."""
    if not (cfg.get("logger") or {}).get("wandb"):
        return None
    return secrets.token_hex(4)


def flushes_denormals() -> bool:
    """Whether the CPU flushes subnormal floats to zero now (torch has a setter, no getter)."""
    tiny = torch.tensor([torch.finfo(torch.float64).tiny / 4], dtype=torch.float64)
    return bool((tiny * 1.0).item() == 0.0)


def _validate_at_the_door(
    cfg: DictConfig, run_dir: Path, overrides: Sequence[str], holds_a_run: bool
) -> None:
    """`normlab.schema.validate_config`; when Hydra already made the run directory, its
    summary.json says `failed` and why, so that no directory is left looking like a run (one that
    holds a run already, one resumed, keeps that run's record as it was)."""
    try:
        validate_config(cfg, overrides)
    except NormlabError as err:
        if run_dir.is_dir() and rank_zero_only.rank == 0 and not holds_a_run:
            RunSummary(run_dir, experiment=cfg.get("name"), overrides=list(overrides)).end(
                "failed", error=f"NormlabError: {err}"
            )
        raise


def compile_model(
    cfg: DictConfig,
    model: torch.nn.Module,
    device: torch.device,
    probes: Sequence[L.Callback] = (),
) -> None:
    """`compile.enabled`: torch.compile `model` in place (`nn.Module.compile`), so that its
    state_dict keys and checkpoints stay the eager model's. Bad settings fail here, at start-up."""
    options = cfg.get("compile") or {}
    if not options.get("enabled"):
        return
    import torch._inductor

    mode = options.get("mode")
    modes = list(torch._inductor.list_mode_options())
    if mode is not None and mode not in modes:
        raise NormlabError(f"compile.mode={mode!r}; valid choices: {[None, *modes]}")
    # A model compiled in place and then evaluated under torch.func (grad, vmap) makes dynamo skip
    # nn.Module.compile's wrapper for good: every compiled module of the process runs eager after
    # the first probed step (tests/test_compile.py). Refuse rather than compile for nothing.
    # Each probe declares it (`uses_torch_func`, normlab.probes.functional.StepProbe).
    func_probes = [p.key.removeprefix("probe.") for p in probes if p.uses_torch_func]
    if func_probes:
        raise NormlabError(
            f"compile.enabled=true cannot run with probe={func_probes} (these probes use "
            "torch.func transforms, which a compiled model does not support); set "
            "compile.enabled=false or leave those probes out"
        )
    if device.type == "cpu":
        from torch._inductor.cpp_builder import get_cpp_compiler

        try:
            get_cpp_compiler()
        except Exception as err:
            raise NormlabError(
                f"compile.enabled=true on the CPU needs a C++ compiler (inductor searched "
                f"torch._inductor.config.cpp.cxx, set by $CXX, default g++): {err!r}; install one "
                "or set compile.enabled=false"
            ) from err
    model.compile(mode=mode)


def _checkpointing(
    cfg: DictConfig, run_dir: Path, probes: Sequence[L.Callback]
) -> list[L.Callback]:
    """`<run_dir>/checkpoints/last.ckpt`, rewritten at each validation (when checkpointing is on),
    with the run's appended files kept in step with it (normlab.appended_files: also when this
    run writes no checkpoint but resumes from one)."""
    files = [MetricsCSVLogger.FILE, *(f for p in probes for f in getattr(p, "files", ()))]
    appended = AppendedFilesAtCheckpoint(run_dir, files)
    if not cfg.trainer.get("enable_checkpointing", True):
        log.warning(
            "trainer.enable_checkpointing=false: this run writes no checkpoint and cannot be "
            "resumed (an interrupted sweep job runs again from the start)"
        )
        return [appended]
    from lightning.pytorch.callbacks import ModelCheckpoint

    # No monitor and top-1: the newest checkpoint replaces the previous one, under a fixed name.
    last = run_dir / resume.CHECKPOINT  # where normlab.resume looks for it
    checkpoints = [
        appended,
        ModelCheckpoint(
            dirpath=last.parent,
            filename=last.stem,
            save_top_k=1,
            enable_version_counter=False,
        ),
    ]
    if signals.requeue_handler() is not None:  # a submitit job: see normlab.signals
        checkpoints.append(signals.CheckpointBeforeRequeue(last))
    return checkpoints


def _cluster_plugins() -> list[Any]:
    """Under SLURM, Lightning's cluster environment without its own requeue (normlab.signals:
    submitit owns requeue)."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def _where_training_ended(trainer: L.Trainer) -> tuple[int, int | None]:
    """(last global step, first non-finite step or None), also after `ddp_spawn` (see module)."""
    metrics = trainer.callback_metrics
    step = int(metrics.get("run/global_step", trainer.global_step))
    diverged = metrics.get("run/diverged_at_step")
    return step, None if diverged is None else int(diverged)


def _reject_ddp_in_multirun(cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    # `strategy=ddp` starts the other ranks by re-running this command line: under -m, rank 1
    # would run the whole sweep again. ddp_spawn and launcher-made processes do not.
    strategy = str(cfg.trainer.get("strategy", "auto"))
    launcher = str(OmegaConf.select(hydra_cfg, "runtime.choices.hydra/launcher") or "basic")
    if (
        hydra_cfg.mode == RunMode.MULTIRUN
        and strategy.startswith("ddp")
        and "spawn" not in strategy
    ) and launcher == "basic":
        raise NormlabError(
            f"trainer.strategy={strategy} with -m and the basic launcher re-runs the sweep in "
            "every rank; use trainer.strategy=ddp_spawn or hydra/launcher=local|slurm"
        )


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    # A job that a launcher started (submitit: local or SLURM) did not go through `main()`.
    signals.install()
    sweep.watch_launcher()
    hydra_cfg = HydraConfig.get()
    warn_if_sweep_ignored(cfg)
    run_dir = Path(hydra_cfg.runtime.output_dir)
    # Named like the job's directory: its overrides, less those that say where or how it runs.
    job_name = hydra_cfg.job.override_dirname or cfg.name
    try:
        _reject_ddp_in_multirun(cfg, hydra_cfg)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            # A sweep launched again into its own directory, or a requeued SLURM job (it runs its
            # Hydra job again): carry on from what the job directory holds (normlab.resume).
            rank_zero = rank_zero_only.rank == 0  # another rank's `running` record is rank 0's
            plan = resume.plan_job(run_dir, cfg, check_alive=rank_zero)
            if plan.action == "skip":
                log.info("job %s: %s: skipped", job_name, plan.reason)
                return (plan.summary or {}).get("final_metrics", {}).get("test/acc")
            if plan.action == "resume":
                log.info("job %s: %s: resuming from %s", job_name, plan.reason, plan.checkpoint)
                with open_dict(cfg):
                    cfg.resume = str(plan.checkpoint)
            elif plan.action == "rerun" and rank_zero:
                moved = resume.set_aside(run_dir)
                log.info(
                    "job %s: %s: running it again (earlier files: %s)", job_name, plan.reason, moved
                )
        result = run(cfg, run_dir, list(hydra_cfg.overrides.task), job_name)
    except Exception as raised:
        err = normlab_cause(raised)
        if err is None:
            raise
        message = f"normlab: error: {err}"
        if hydra_cfg.mode == RunMode.RUN:
            raise SystemExit(message) from None  # bad input: one line, no traceback
        log.error(message)  # a multirun goes on with its other jobs and exits 1 at the end
        raise
    # The return value is what Hydra sweepers (e.g. Optuna) optimise.
    return result.summary["final_metrics"].get("test/acc")


def normlab_cause(raised: BaseException) -> NormlabError | None:
    """The NormlabError (bad input) along `raised`'s cause chain: one found while Hydra
    instantiates a component arrives wrapped in Hydra's InstantiationException."""
    err: BaseException | None = raised
    while err is not None and not isinstance(err, NormlabError):
        err = err.__cause__
    return err


# Command-line flags after which Hydra runs no job (it prints help, info or a config).
_NO_JOB_FLAGS = ("-h", "--help", "--hydra-help", "--info", "-i", "--shell-completion", "-sc")
_CFG_FLAGS = ("-c", "--cfg", "-p", "--package", "-r", "--resolve")


def check_command_line(argv: Sequence[str]) -> None:
    """Bad input found before Hydra runs a job, as a NormlabError: `--cfg` with `-m`, group
    options that do not exist, and every job's config (`normlab.schema`), so that a bad value
    stops a sweep before any run directory exists."""
    if any(a.split("=")[0] in _NO_JOB_FLAGS for a in argv):
        return
    multirun = any(a in ("-m", "--multirun") for a in argv)
    if any(a.split("=")[0] in _CFG_FLAGS[:2] for a in argv):
        if multirun:
            raise NormlabError(
                "--cfg prints one job's config and Hydra cannot combine it with -m: drop -m "
                "(the sweep's values are under hydra.sweeper.params in `--cfg hydra`)"
            )
        return
    overrides = [a for a in argv if not a.startswith("-")]
    check_overrides(CONF_DIR, overrides)
    sweep.check_slurm_launch(overrides)
    from normlab.config import compose_config, sweep_points

    try:
        points = sweep_points(overrides) if multirun else [overrides]
        configs = [compose_config(point) for point in points]
        for point, cfg in zip(points, configs, strict=True):
            validate_config(cfg, point)
        sweep.check_one_job_shape(overrides, points, [cfg.resources for cfg in configs])
    except NormlabError:
        raise
    except Exception as err:  # Hydra's and OmegaConf's composition errors, in one line
        raise NormlabError(" ".join(str(err).split())) from err


def resume_run(run_dir: Path, argv: Sequence[str]) -> RunResult:
    """`resume=<run dir> [bookkeeping overrides]`: continue that run from its own record, in its
    own directory, without Hydra (normlab.resume). NormlabError for anything it cannot do."""
    flags = [a for a in argv if a.startswith("-")]
    if flags:
        raise NormlabError(f"resume=<run dir> takes no flags (got {flags}): it continues one run")
    others = [a for a in argv if not a.startswith("resume=")]
    for line in [a for a in others if a.startswith("hydra.")]:
        # The older form named the run's directory with hydra.run.dir: that one is fine.
        key, _, value = line.partition("=")
        if key != "hydra.run.dir" or Path(value).resolve() != run_dir:
            raise NormlabError(
                f"resume: {line!r}: a resumed run continues in its own directory ({run_dir}), "
                "without Hydra; leave the hydra.* overrides out"
            )
        others.remove(line)
    # Under strategy=ddp, Lightning starts ranks > 0 by running this command line again, while
    # rank 0 (the `running` record they find) runs: they continue it with rank 0.
    rank_zero = rank_zero_only.rank == 0
    cfg = resume.resumed_config(run_dir, others, check_alive=rank_zero)
    recorded = resume.read_summary(run_dir) or {}
    if rank_zero:
        _log_to(run_dir / "train.log")
    log.info("resuming %s from %s", run_dir, cfg.resume)
    return run(cfg, run_dir, recorded.get("overrides") or [], job_name=recorded.get("job_name"))


def _log_to(path: Path) -> None:
    """Console and `path` (appended), formatted as Hydra's job logging does (conf/hydra)."""
    formatter = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in (logging.StreamHandler(sys.stdout), logging.FileHandler(path, mode="a")):
        handler.setFormatter(formatter)
        root.addHandler(handler)


def main() -> None:
    """Console entry point (`normlab-train`, `python -m normlab.train`)."""
    signals.install()  # from the start: a SIGTERM while composing or loading data is an interrupt
    if not CONF_DIR.is_dir():  # the package's data: a broken install
        sys.exit(
            f"normlab: config folder {CONF_DIR} not found: reinstall normlab (`pip install .`)"
        )
    argv = sys.argv[1:]
    try:
        # `resume=<run dir>` continues a run without Hydra; `resume=<checkpoint of no run>` starts
        # a new run from that checkpoint, through Hydra as any run.
        value = next((a.partition("=")[2] for a in argv if a.startswith("resume=")), None)
        run_dir = None if value is None else resume.resume_target(value)
        if run_dir is not None:
            resume_run(run_dir, argv)
            return
    except Exception as raised:
        err = normlab_cause(raised)
        if err is None:
            raise
        sys.exit(f"normlab: error: {err}")
    try:
        check_command_line(argv)
    except NormlabError as err:
        sys.exit(f"normlab: error: {err}")
    # A sweep: how its jobs ended, those not done listed; any of them makes the exit non-zero.
    try:
        _hydra_main()
    except SystemExit:
        sweep.report_sweeps()
        raise
    if not sweep.report_sweeps():
        sys.exit(1)


if __name__ == "__main__":
    main()
