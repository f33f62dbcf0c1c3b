"""Throughput of the inference engines against the ideal speedup.

    python -m eejax.bench                                   # resnet_ee, batch 512, 50/25/15/10
    python -m eejax.bench --splits 0.5,0.25,0.15,0.1 0.45,0.3,0.15,0.1 0,0,0,1 --json out.json

Two workloads:
  oracle (default)  random weights; an oracle policy makes exactly the given fraction of each
                    batch leave at each exit (positions shuffled): a controlled exit pattern.
  --trained STEPS   resnet_ee trained STEPS steps on the embedded MNIST digits; for each split,
                    max-probability thresholds calibrated on the validation split so that those
                    fractions leave at each exit; the engines then run on test digits, and the
                    ideals come from the exits they really take.
For every engine: samples/s (median of --repeats
timed runs after a warm-up that includes compilation, each ended by `block_until_ready`; the
engines take turns, run by run, so machine noise hits them alike), speedup
over `dense`, and efficiency = achieved speedup / ideal speedup, against two ideals:

  flop ideal   cost(all stages and heads) / mean FLOPs per sample  (XLA cost analysis)
  time ideal   the same ratio with each stage+head's measured time at the full batch

FLOPs mis-predict time on real hardware (small late stages run below peak), so both are shown.
`stream` processes --stream-batches batches per timed run (a dataset: the partial batches it
flushes at the end of the stream are a fixed cost per stream); the others one batch.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import eejax
from eejax import policies
from eejax.stream import stream_infer

DEFAULT_SPLIT = "0.5,0.25,0.15,0.1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m eejax.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet_ee")
    parser.add_argument("--input-shape", default="32,32,3", help="one sample, e.g. 32,32,3")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--width", type=int, default=16, help="resnet_ee width")
    parser.add_argument("--num-exits", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--splits", nargs="+", default=[DEFAULT_SPLIT],
                        help="exit fractions per exit, comma-separated; several to compare")
    parser.add_argument("--engines", default="dense,masked,compact,stream")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stream-batches", type=int, default=32,
                        help="batches of the stream engine's dataset per timed run")
    parser.add_argument("--trained", type=int, default=0, metavar="STEPS",
                        help="train on the embedded digits for STEPS steps and calibrate "
                             "thresholds per split (0: random weights, oracle policy)")
    parser.add_argument("--json", default=None, help="write the results here")
    return parser.parse_args(argv)


def median_seconds(fns: dict[str, Callable[[], object]],
                   repeats: int) -> tuple[dict[str, float], dict[str, object]]:
    """Median wall time of each fn over `repeats` runs, after one warm-up run each (compilation),
    and each fn's output (from its warm-up run).

    The runs are interleaved (round robin over the fns), so that a slow spell of a shared machine
    lands on every fn alike instead of on whichever was being timed: the ratios stay honest.
    """
    outputs = {name: jax.block_until_ready(fn()) for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, outputs


def oracle_exits(fractions: list[float], size: int, seed: int) -> np.ndarray:
    """[size] exit indices with exactly round(fraction * size) samples at each exit."""
    counts = np.floor(np.asarray(fractions) * size).astype(int)
    counts[-1] = size - counts[:-1].sum()
    exits = np.repeat(np.arange(len(fractions)), counts)
    return np.random.default_rng(seed).permutation(exits).astype(np.int32)


def stage_times(net, variables, x, repeats: int) -> np.ndarray:
    """[K] measured seconds of stage k plus head k at the full batch."""
    times, h = [], x
    for k in range(net.num_exits):
        stage = jax.jit(functools.partial(net.apply_stage, k))
        head = jax.jit(functools.partial(net.apply_head, k))
        step = functools.partial(lambda s, hd, h: hd(variables, s(variables, h)), stage, head, h)
        times.append(median_seconds({"step": step}, repeats)[0]["step"])
        h = jax.block_until_ready(stage(variables, h))
    return np.asarray(times)


def oracle_workload(net, fractions, args) -> tuple[np.ndarray, policies.Policy]:
    """Random inputs and an oracle policy giving every batch exactly the requested split (so
    one batch and the stream share an ideal)."""
    total = args.stream_batches * args.batch_size
    data = np.random.default_rng(0).normal(size=(total, *net.input_shape)).astype(np.float32)
    exits = np.concatenate([oracle_exits(fractions, args.batch_size, seed=i)
                            for i in range(args.stream_batches)])
    return data, policies.oracle(exits)


def run_split(net, variables, fractions, args, engines, per_stage_time, workload) -> dict:
    """Times every engine on the inputs and policy `workload(net, fractions, args)` gives."""
    batch = args.batch_size
    if len(fractions) != net.num_exits or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"--splits entries need {net.num_exits} fractions summing to 1, "
                         f"got {fractions}")
    data, policy = workload(net, fractions, args)
    x = jnp.asarray(data[:batch])
    chunks = [jnp.asarray(data[i : i + batch]) for i in range(0, len(data), batch)]

    runners = {"stream": lambda: stream_infer(net, variables, chunks, policy, batch_size=batch)}
    for engine in ("dense", "masked", "compact"):
        runners[engine] = lambda e=engine: eejax.infer(net, variables, x, policy, engine=e)
    cumulative_time = np.cumsum(per_stage_time)
    results = {}
    seconds, outputs = median_seconds({e: runners[e] for e in engines}, args.repeats)
    for engine in engines:
        # Each engine's ideals come from the exits of the samples it processed.
        used = np.asarray(outputs[engine].exit)
        results[engine] = {
            "throughput": len(used) / seconds[engine], "seconds": seconds[engine],
            "ideal_speedup": net.costs.total / float(np.mean(net.costs.to_exit[used])),
            "time_ideal_speedup": cumulative_time[-1] / float(np.mean(cumulative_time[used])),
            "measured_exit_fractions": (np.bincount(used, minlength=net.num_exits)
                                        / len(used)).tolist()}
    dense = results["dense"]["throughput"]  # main() insists on dense: the baseline
    for r in results.values():
        r["speedup_vs_dense"] = r["throughput"] / dense
        r["efficiency"] = r["speedup_vs_dense"] / r["ideal_speedup"]
        r["time_efficiency"] = r["speedup_vs_dense"] / r["time_ideal_speedup"]
    first = results["dense"]
    return {"exit_fractions": list(fractions), "ideal_speedup": first["ideal_speedup"],
            "time_ideal_speedup": first["time_ideal_speedup"],
            "measured_exit_fractions": first["measured_exit_fractions"], "engines": results}


def trained_setup(args) -> tuple:
    """resnet_ee trained on the embedded digits, and a workload that calibrates max-prob
    thresholds on the validation split for each requested split."""
    import optax

    from eejax import calibration, data, training

    train, validation, test = (data.load("mnist_5k", s) for s in ("train", "validation", "test"))
    net = eejax.models.get("resnet_ee", num_classes=10, input_shape=train.input_shape,
                           num_exits=args.num_exits, width=args.width)
    schedule = optax.warmup_cosine_decay_schedule(0.0, 3e-3, args.trained // 10 + 1,
                                                  args.trained)
    state = training.fit(net, eejax.objectives.get("joint"), optax.adamw(schedule, 1e-4),
                         train.images, train.labels, args.trained, 128, augment="crop",
                         log_every=max(args.trained // 5, 1))
    validation_logits = training.predict_exits(net, state.variables, validation.images)
    total = args.stream_batches * args.batch_size
    inputs = test.images[np.random.default_rng(0).integers(0, len(test), total)]

    def workload(net, fractions, args):
        thresholds = calibration.max_prob_thresholds(validation_logits, fractions)
        print(f"max_prob thresholds calibrated on {validation.name}: "
              f"{np.round(thresholds, 4).tolist()}")
        return inputs, policies.max_prob(thresholds)

    return net, state.variables, workload


def print_split(split: dict) -> None:
    fractions = "/".join(f"{100 * f:g}" for f in split["exit_fractions"])
    measured = "/".join(f"{100 * f:.1f}" for f in split["measured_exit_fractions"])
    print(f"\nexit split {fractions} (measured {measured}): flop ideal "
          f"{split['ideal_speedup']:.2f}x, time ideal {split['time_ideal_speedup']:.2f}x")
    print(f"{'engine':<9}{'samples/s':>11}{'vs dense':>10}{'eff(flop)':>11}{'eff(time)':>11}")
    for engine, r in split["engines"].items():
        print(f"{engine:<9}{r['throughput']:>11.1f}{r['speedup_vs_dense']:>9.2f}x"
              f"{r['efficiency']:>11.2f}{r['time_efficiency']:>11.2f}")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    engines = args.engines.split(",")
    unknown = set(engines) - set(eejax.engines.ENGINES)
    if unknown or "dense" not in engines:
        raise SystemExit(f"--engines must include dense and name only {eejax.engines.ENGINES}")
    if args.trained:
        if args.model != "resnet_ee":
            raise SystemExit("--trained trains resnet_ee on the embedded digits; drop --model")
        net, variables, workload = trained_setup(args)
        input_shape = net.input_shape
    else:
        input_shape = tuple(int(d) for d in args.input_shape.split(","))
        net = eejax.models.get(args.model, num_classes=args.num_classes,
                               input_shape=input_shape, num_exits=args.num_exits,
                               width=args.width)
        variables = net.init(jax.random.key(0), np.zeros((1, *input_shape), np.float32))
        workload = oracle_workload
    x = jnp.asarray(np.random.default_rng(0).normal(size=(args.batch_size, *input_shape)),
                    jnp.float32)
    per_stage_time = stage_times(net, variables, x, args.repeats)
    mflops = [round(float(f) / 1e6, 2) for f in net.costs.stage + net.costs.head]
    milliseconds = [round(1e3 * float(t), 1) for t in per_stage_time]
    trained = f" trained {args.trained} steps" if args.trained else ""
    print(f"{args.model} {input_shape}{trained}, batch {args.batch_size}, {net.num_exits} exits; "
          f"MFLOPs per sample by stage+head: {mflops}; measured ms at the full batch: "
          f"{milliseconds}")
    processor = platform.processor() or platform.machine()
    xla_flags = os.environ.get("XLA_FLAGS", "")
    print(f"{jax.device_count()} {jax.default_backend()} device(s) ({processor}), "
          f"jax {jax.__version__}, XLA_FLAGS={xla_flags!r}")
    splits = []
    for text in args.splits:
        split = run_split(net, variables, [float(f) for f in text.split(",")], args, engines,
                          per_stage_time, workload)
        print_split(split)
        splits.append(split)
    report = {
        "model": args.model, "input_shape": input_shape, "batch_size": args.batch_size,
        "workload": f"trained {args.trained} steps, calibrated max_prob" if args.trained
        else "random weights, oracle policy",
        "num_exits": net.num_exits, "stage_flops": net.costs.stage.tolist(),
        "head_flops": net.costs.head.tolist(), "stage_seconds": per_stage_time.tolist(),
        "backend": jax.default_backend(), "device_count": jax.device_count(),
        "jax": jax.__version__, "xla_flags": xla_flags,
        "engines": splits[0]["engines"], "splits": splits,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {args.json}")
    return report


if __name__ == "__main__":
    main()
