"""Train an early-exit network, evaluate its exits and an early-exit policy.

    python train.py                                   # embedded default, temporary workdir
    python train.py --config configs/default.py --workdir /tmp/run --config.train.steps=600

Reads top to bottom: config -> data -> model -> objective -> state -> jitted train step -> loop
(progress, periodic evaluation, orbax checkpoints) -> final report (stdout, DIR/report.json,
DIR/accuracy_vs_flops.png). Rerunning with the same --workdir resumes from the latest checkpoint.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so configs can import each other

import eejax  # noqa: E402
from eejax import calibration, evaluation, parallel, plotting, uncertainty  # noqa: E402
from eejax.checkpoint import Checkpointer  # noqa: E402
from eejax.data import batch_indices, load, steps_per_epoch  # noqa: E402
from eejax.gates import with_gates  # noqa: E402
from eejax.optim import make_optimizer  # noqa: E402
from eejax.training import create_train_state, make_train_step, predict_exits  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(Path(__file__).resolve().parent / "configs" / "default.py"),
    "Experiment config file (a get_config() returning a ConfigDict).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints and report; a temporary directory "
                               "if unset. An existing workdir is resumed.")

# Sections whose change makes an old checkpoint meaningless (resume refuses it).
_RESUME_KEYS = ("seed", "data", "model", "objective", "optimizer")


def log(message: str) -> None:
    """Progress and reports: printed by process 0 only."""
    if parallel.is_main_process():
        print(message, flush=True)


def options(section: ml_collections.ConfigDict) -> dict:
    """A config section as keyword options, without its `name`."""
    return {k: v for k, v in section.to_dict().items() if k != "name"}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path,
                       on_step: Callable[[int], None] | None = None) -> dict:
    """Trains (resuming from `workdir` if it holds a checkpoint) and returns the final report."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    train_cfg = config.train
    mesh = parallel.make_mesh(train_cfg.get("num_devices", 0))
    global_batch, per_device = parallel.batch_sizes(
        train_cfg.batch_size, train_cfg.get("per_device_batch_size", 0), mesh)

    # Data.
    data_dir = config.data.data_dir or None
    train_ds = load(config.data.name, config.data.train_split, data_dir)
    eval_ds = load(config.data.name, config.data.eval_split, data_dir)
    calibration_split = config.data.get("calibration_split", "")
    calibration_ds = load(config.data.name, calibration_split, data_dir) if calibration_split \
        else None
    per_epoch = steps_per_epoch(len(train_ds), global_batch)

    # Model, objective, optimizer, state.
    model_options = options(config.model)
    gates = model_options.pop("gates", "")  # JEI-DNN: "uncertainty" | "hidden" | "" (none)
    net = eejax.models.get(config.model.name, num_classes=train_ds.num_classes,
                           input_shape=train_ds.input_shape, **model_options)
    if gates:
        net = with_gates(net, gates)
    objective = eejax.objectives.get(config.objective.name, **options(config.objective))
    readout = objective.readout(net.num_exits)  # how the trained exits predict
    optimizer = make_optimizer(config.optimizer, train_cfg.steps, per_epoch)
    state = create_train_state(net, optimizer, config.seed)
    shardings = parallel.state_shardings(state, mesh, train_cfg.get("shard_params", False))
    state = jax.device_put(state, shardings)
    policy = eejax.policies.from_config(
        config.policy.name, thresholds=[config.policy.threshold] * (net.num_exits - 1))
    if policy.needs_gates and not net.gates:
        raise ValueError("policy.name='gates' needs exit gates: set model.gates='uncertainty' "
                         "(and train them with objective.name='jei')")

    # Resume. The config is kept beside the checkpoints; the device count is not part of what
    # must match, so a run saved on 8 devices resumes on 1 and back.
    if parallel.is_main_process():
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    checkpoints = Checkpointer(workdir / "checkpoints", train_cfg.max_checkpoints)
    meta = {key: json.dumps(config[key].to_dict() if hasattr(config[key], "to_dict")
                            else config[key], sort_keys=True) for key in _RESUME_KEYS}
    meta["batch_size"] = str(global_batch)
    meta["steps"] = str(train_cfg.steps)
    latest = checkpoints.latest_step()
    if latest is not None:
        state = checkpoints.restore(latest, state, meta)  # onto this run's shardings
        log(f"resumed from {checkpoints.directory / str(latest)} at step {latest}")
    log(f"{net.name}: {net.num_exits} exits, "
        f"{sum(x.size for x in jax.tree.leaves(state.params)):,} parameters, "
        f"{net.costs.total / 1e6:.2f} MFLOPs per sample; training on {train_ds.name} "
        f"({len(train_ds)} images) for {train_cfg.steps} steps of {global_batch} "
        f"({per_device} per device on {mesh.devices.size} {jax.default_backend()} device(s), "
        f"{jax.process_count()} process(es))")

    # Train. On any exception, wait for in-flight asynchronous saves before propagating it.
    train_step = make_train_step(net, objective, optimizer, config.data.augment, mesh, shardings)
    try:
        state = _train_loop(config, net, readout, state, train_step, train_ds, eval_ds,
                            checkpoints, meta, on_step, mesh, global_batch)
    finally:
        checkpoints.close()

    # Evaluate every exit, the configured policy and a threshold sweep.
    exit_logits, gate_logits = _predict(net, state, eval_ds, train_cfg.eval_batch_size, readout)
    result = _select(net, policy, exit_logits, gate_logits)
    sweep = evaluation.threshold_sweep(net, exit_logits, eval_ds.labels, config.policy.name,
                                       _sweep_values(config.policy.name), gate_logits)
    report = {
        "dataset": eval_ds.name,
        "steps": int(state.step),
        "exit_accuracy": evaluation.exit_accuracy(exit_logits, eval_ds.labels),
        "exit_flops": net.costs.to_exit.tolist(),
        "stage_flops": net.costs.stage.tolist(),
        "head_flops": net.costs.head.tolist(),
        "policy": {"name": config.policy.name,
                   "thresholds": [round(float(t), 6) for t in policy.thresholds],
                   **evaluation.policy_report(result, eval_ds.labels, net.costs)},
        "sweep": sweep,
    }
    report["policy"]["ece"] = uncertainty.expected_calibration_error(
        np.asarray(result.logits), eval_ds.labels)
    curves = {f"{config.policy.name} sweep": sweep}
    if calibration_ds is not None:
        calibration_logits, calibration_gates = _predict(net, state, calibration_ds,
                                                         train_cfg.eval_batch_size, readout)
        calibrated = _select(net, policy, calibration_logits, calibration_gates)
        report["policy"]["conformal"] = uncertainty.conformal_report(
            (np.asarray(calibrated.logits), calibration_ds.labels, np.asarray(calibrated.exit)),
            (np.asarray(result.logits), eval_ds.labels, np.asarray(result.exit)),
            net.num_exits, config.get("conformal_alpha", 0.1))
        report["budgeted"] = calibration.budgeted_sweep(
            net, calibration_logits, calibration_ds.labels, exit_logits, eval_ds.labels)
        curves[f"budgeted (p^k shares, thresholds from {calibration_split})"] = \
            report["budgeted"]
    if parallel.is_main_process():
        (workdir / "report.json").write_text(json.dumps(report, indent=2))
        plotting.accuracy_vs_flops(workdir / "accuracy_vs_flops.png", report["exit_flops"],
                                   report["exit_accuracy"], curves,
                                   f"{net.name} ({config.objective.name}) on {eval_ds.name}")
        _print_report(report, workdir)
    return report


def _train_loop(config, net, readout, state, train_step, train_ds, eval_ds, checkpoints, meta,
                on_step, mesh, global_batch):
    """Steps from `state.step` to config.train.steps: progress, evaluation, checkpoints."""
    train_cfg = config.train
    rows = parallel.process_rows(global_batch)  # this process's part of every global batch
    window_start, window_steps = time.perf_counter(), 0
    for step in range(int(state.step), train_cfg.steps):
        index = batch_indices(len(train_ds), global_batch, config.seed, step)[rows]
        images, labels = parallel.global_batch(mesh, train_ds.images[index],
                                               train_ds.labels[index])
        state, metrics = train_step(state, images, labels)
        done = step + 1
        window_steps += 1
        if on_step is not None:
            on_step(done)
        if done % train_cfg.log_every == 0 or done == train_cfg.steps:
            metrics = jax.device_get(metrics)
            rate = window_steps / (time.perf_counter() - window_start)
            eta = (train_cfg.steps - done) / rate
            accuracy = " ".join(f"{a:.3f}" for a in metrics["exit_accuracy"])
            log(f"step {done}/{train_cfg.steps}  loss {metrics['loss']:.4f}  "
                f"train acc/exit [{accuracy}]  {rate:.2f} steps/s  ETA {eta:.0f}s")
            window_start, window_steps = time.perf_counter(), 0
        if done % train_cfg.eval_every == 0 and done < train_cfg.steps:
            exit_logits = predict_exits(net, state.variables, eval_ds.images,
                                        train_cfg.eval_batch_size, readout)
            accuracy = evaluation.exit_accuracy(exit_logits, eval_ds.labels)
            log(f"  eval {eval_ds.name} acc/exit [{' '.join(f'{a:.3f}' for a in accuracy)}]")
        if done % train_cfg.checkpoint_every == 0 or done == train_cfg.steps:
            checkpoints.save(done, state, meta)
    return state


def _predict(net, state, dataset, batch_size, readout):
    """Every exit's predictions [K, N, C] and, for gated nets, the gate logits [K-1, N]."""
    if net.gates:
        return predict_exits(net, state.variables, dataset.images, batch_size, readout,
                             with_gates=True)
    return predict_exits(net, state.variables, dataset.images, batch_size, readout), None


def _select(net, policy, exit_logits, gate_logits):
    index = np.arange(exit_logits.shape[1], dtype=np.int32)
    return eejax.engines.select_exits(net, policy, exit_logits, index,
                                      gate_logits if policy.needs_gates else None)


def _sweep_values(rule: str) -> list[float]:
    if rule == "gates":
        return [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    if rule == "entropy":
        return [float(v) for v in np.geomspace(1e-3, 2.0, 15)]
    return [0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999]


def _print_report(report: dict, workdir: Path) -> None:
    print(f"\nfinal evaluation on {report['dataset']} after {report['steps']} steps")
    print(" exit   MFLOPs   accuracy")
    for k, (flops, acc) in enumerate(zip(report["exit_flops"], report["exit_accuracy"],
                                         strict=True)):
        print(f" {k:4d} {flops / 1e6:8.2f}   {acc:.4f}")
    p = report["policy"]
    print(f"policy {p['name']} thresholds {p['thresholds']}: accuracy {p['accuracy']:.4f}, "
          f"mean {p['mean_flops'] / 1e6:.2f} MFLOPs, ideal speedup {p['ideal_speedup']:.2f}x, "
          f"exit fractions {[round(f, 3) for f in p['exit_fractions']]}, ECE {p['ece']:.4f}")
    if "conformal" in p:
        c = p["conformal"]
        print(f"conformal sets (alpha {c['alpha']}, calibrated per exit): coverage "
              f"{c['coverage']:.4f}, mean size {c['mean_set_size']:.2f}")
    if "budgeted" in report:
        print("budgeted (thresholds from the calibration split), every 4th p:")
        print("     p   val acc  test acc   MFLOPs")
        for point in report["budgeted"][::4]:
            print(f"  {point['p']:4.2f}   {point['val_accuracy']:.4f}    {point['accuracy']:.4f} "
                  f"{point['mean_flops'] / 1e6:8.2f}")
    print(f"report: {workdir / 'report.json'}  plot: {workdir / 'accuracy_vs_flops.png'}",
          flush=True)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    parallel.initialize_distributed()  # before any other JAX call, when the environment asks
    workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="eejax-")
    log(f"workdir: {workdir}")
    train_and_evaluate(_CONFIG.value, workdir)


if __name__ == "__main__":
    app.run(main)
