"""Data-parallel training: 8 forced CPU devices against 1, sharded parameters, checkpoints
moved between device counts, and a run killed during an asynchronous save."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO
from test_train import Crash, crash_after, tiny_config

import eejax
import train
from eejax import data, parallel
from eejax.objectives import get as get_objective
from eejax.optim import make_optimizer
from eejax.training import create_train_state, make_train_step


def loss_curve(num_devices: int, shard_params: bool, steps: int = 4) -> list[float]:
    """Losses of the first steps of the tiny config, data-parallel over `num_devices`."""
    config = tiny_config()
    ds = data.load("mnist_5k", "train")
    net = eejax.models.get("resnet_ee", num_classes=10, input_shape=ds.input_shape,
                           num_exits=3, width=4)
    optimizer = make_optimizer(config.optimizer, steps, 10)
    mesh = parallel.make_mesh(num_devices)
    state = create_train_state(net, optimizer, seed=0)
    shardings = parallel.state_shardings(state, mesh, shard_params)
    state = jax.device_put(state, shardings)
    step_fn = make_train_step(net, get_objective("joint"), optimizer, "crop", mesh, shardings)
    losses = []
    for step in range(steps):
        index = data.batch_indices(len(ds), 32, 0, step)
        state, metrics = step_fn(state, *parallel.global_batch(mesh, ds.images[index],
                                                               ds.labels[index]))
        losses.append(float(metrics["loss"]))
    if shard_params:  # the big kernels really are split over the devices
        specs = [leaf.sharding.spec for leaf in jax.tree.leaves(state.params)]
        assert any(parallel.DATA_AXIS in spec for spec in specs)
    return losses


def test_eight_devices_follow_the_single_device_loss_curve():
    """Same global batch of 32, split 4 per device: same losses up to float reassociation of
    the cross-device sums (relative tolerance 1e-4 over 4 Adam steps)."""
    assert jax.device_count() == 8, "conftest forces 8 host devices"
    single = loss_curve(1, shard_params=False)
    np.testing.assert_allclose(loss_curve(8, shard_params=False), single, rtol=1e-4)
    np.testing.assert_allclose(loss_curve(8, shard_params=True), single, rtol=1e-4)
    assert single[-1] < single[0]  # it trains, so equal curves are not two constant ones


@pytest.mark.parametrize("options, message", [
    ({"num_devices": 9}, "only 8 cpu device"),
    ({"batch_size": 36, "num_devices": 8}, "multiple of the 8 device"),
    ({"batch_size": 32, "per_device_batch_size": 8, "num_devices": 8}, "disagree on 8"),
])
def test_bad_parallel_config_is_named(tmp_path, options, message):
    config = tiny_config()
    config.train.update(**options)
    with pytest.raises(ValueError, match=message):
        train.train_and_evaluate(config, tmp_path)


def devices_config(num_devices):
    config = tiny_config()
    config.train.num_devices = num_devices
    return config


@pytest.mark.slow
def test_saved_on_8_devices_resumes_on_1_and_back(tmp_path):
    reference = train.train_and_evaluate(devices_config(1), tmp_path / "reference")
    with pytest.raises(Crash):  # on 8 devices, dies after step 3: checkpoint 2
        train.train_and_evaluate(devices_config(8), tmp_path / "run", on_step=crash_after(3))
    steps = []
    with pytest.raises(Crash):  # on 1 device from checkpoint 2, dies after 5: checkpoint 4
        train.train_and_evaluate(devices_config(1), tmp_path / "run",
                                 on_step=lambda s: (steps.append(s), crash_after(5)(s)))
    resumed = train.train_and_evaluate(devices_config(8), tmp_path / "run",
                                       on_step=steps.append)  # back on 8 from checkpoint 4
    assert steps == [3, 4, 5, 5, 6]
    # Device counts change only the order of float sums; on 1,000 test images at most a
    # handful of predictions may flip.
    np.testing.assert_allclose(resumed["exit_accuracy"], reference["exit_accuracy"], atol=0.005)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["num_devices"] == 8 and saved["model"]["width"] == 4


KILL_DURING_SAVE = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import train
from eejax.checkpoint import Checkpointer
from test_train import tiny_config

save = Checkpointer.save
def save_then_die(self, step, state, meta):
    save(self, step, state, meta)  # asynchronous: returns while the write is in flight
    if step == 4:
        os.kill(os.getpid(), signal.SIGKILL)
Checkpointer.save = save_then_die
train.train_and_evaluate(tiny_config(), {workdir!r})
"""


@pytest.mark.slow
def test_killed_during_an_async_save_resumes_from_the_last_complete_checkpoint(tmp_path):
    workdir = tmp_path / "run"
    script = KILL_DURING_SAVE.format(tests=str(REPO / "tests"), workdir=str(workdir))
    # The child inherits this process's 8 forced devices: the same device count throughout,
    # so the resumed run must equal the uninterrupted one exactly.
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=600, cwd=REPO)
    assert killed.returncode == -9, killed.stderr[-2000:]
    entries = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    assert "2" in entries and "4" not in entries, entries  # 4 never committed
    steps = []
    resumed = train.train_and_evaluate(tiny_config(), workdir, on_step=steps.append)
    assert steps == [3, 4, 5, 6]  # back from checkpoint 2: only steps after it are redone
    uninterrupted = train.train_and_evaluate(tiny_config(), tmp_path / "uninterrupted")
    assert resumed["exit_accuracy"] == uninterrupted["exit_accuracy"]
    assert resumed["policy"] == uninterrupted["policy"]


TWO_PROCESS_WORKER = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
sys.path.insert(0, {tests!r})
import train
from test_train import tiny_config
os.environ["JAX_PROCESS_ID"] = sys.argv[1]
train.parallel.initialize_distributed()  # reads JAX_COORDINATOR_ADDRESS and the two below
train.train_and_evaluate(tiny_config(), {workdir!r})
"""


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_as_many_devices(tmp_path):
    """2 processes x 2 CPU devices (gloo collectives): each builds its half of every batch,
    orbax writes the checkpoints together, only process 0 reports; the result matches one
    process on 4 devices (float sums in another order: at most a few flipped test images)."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    script = TWO_PROCESS_WORKER.format(tests=str(REPO / "tests"), workdir=str(tmp_path / "mp"))
    env = {**os.environ, "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
           "JAX_NUM_PROCESSES": "2"}
    workers = [subprocess.Popen([sys.executable, "-c", script, str(i)], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    assert "final evaluation" in outputs[0] and "final evaluation" not in outputs[1]
    assert "on 4 cpu device(s), 2 process(es)" in outputs[0]
    two_processes = json.loads((tmp_path / "mp" / "report.json").read_text())
    one_process = train.train_and_evaluate(devices_config(4), tmp_path / "single")
    np.testing.assert_allclose(two_processes["exit_accuracy"], one_process["exit_accuracy"],
                               atol=0.005)
    assert sorted(p.name for p in (tmp_path / "mp" / "checkpoints").iterdir()) == ["2", "4", "6"]
