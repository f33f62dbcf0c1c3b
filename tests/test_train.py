"""train.py end to end: CLI, report, resume after a crash, bad checkpoints and configs."""

import json
import subprocess
import sys

import pytest
from conftest import REPO

import train
from configs import default
from eejax.checkpoint import CheckpointError


def tiny_config():
    config = default.get_config()
    config.model.width = 4
    config.model.num_exits = 3
    config.train.batch_size = 32
    config.train.steps = 6
    config.train.log_every = 2
    config.train.eval_every = 4
    config.train.checkpoint_every = 2
    return config


class Crash(Exception):
    pass


def crash_after(step):
    def on_step(done):
        if done == step:
            raise Crash(f"simulated crash after step {done}")

    return on_step


@pytest.mark.slow
def test_resume_after_crash_matches_uninterrupted_run(tmp_path):
    uninterrupted = train.train_and_evaluate(tiny_config(), tmp_path / "a")
    with pytest.raises(Crash):  # dies after step 5; the last checkpoint is step 4
        train.train_and_evaluate(tiny_config(), tmp_path / "b", on_step=crash_after(5))
    resumed_steps = []
    resumed = train.train_and_evaluate(tiny_config(), tmp_path / "b",
                                       on_step=resumed_steps.append)
    assert resumed_steps == [5, 6]  # picked up after checkpoint 4, redid only step 5
    assert resumed["exit_accuracy"] == uninterrupted["exit_accuracy"]
    assert resumed["policy"] == uninterrupted["policy"]
    assert resumed["steps"] == uninterrupted["steps"] == 6


@pytest.mark.slow
def test_corrupt_checkpoint_gets_a_clear_error(tmp_path):
    with pytest.raises(Crash):
        train.train_and_evaluate(tiny_config(), tmp_path, on_step=crash_after(3))
    state_dir = tmp_path / "checkpoints" / "2" / "state"
    for path in state_dir.rglob("*"):  # every array file and index of the saved state
        if path.is_file() and path.name != "commit_success.txt":
            path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"checkpoints/2 could not be restored"):
        train.train_and_evaluate(tiny_config(), tmp_path)


@pytest.mark.slow
def test_checkpoint_from_another_config_is_refused(tmp_path):
    with pytest.raises(Crash):
        train.train_and_evaluate(tiny_config(), tmp_path, on_step=crash_after(3))
    other = tiny_config()
    other.objective.weights = "linear"
    with pytest.raises(CheckpointError, match=r"different config \(fields \['objective'\]"):
        train.train_and_evaluate(other, tmp_path)


@pytest.mark.slow
def test_cli_trains_and_writes_the_report(tmp_path):
    command = [sys.executable, str(REPO / "train.py"), "--workdir", str(tmp_path),
               "--config.train.steps=4", "--config.train.batch_size=32",
               "--config.model.width=4", "--config.train.log_every=2"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "step 4/4" in run.stdout and "ETA" in run.stdout
    assert "ideal speedup" in run.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["exit_accuracy"]) == len(report["exit_flops"]) == 4
    assert set(report["policy"]) >= {"accuracy", "mean_flops", "ideal_speedup", "exit_fractions"}
    assert report["policy"]["ideal_speedup"] >= 1.0
    assert (tmp_path / "accuracy_vs_flops.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "field, value, error, message",
    [
        ("model.name", "resnet_xl", ValueError, "unknown model 'resnet_xl'"),
        ("model.depth", 3, ValueError, "unknown option\\(s\\) \\['depth'\\]"),
        ("objective.name", "boost", ValueError, "unknown objective 'boost'"),
        ("data.name", "imagenet_tiny", ValueError, "unknown dataset 'imagenet_tiny'"),
        ("data.name", "cifar10", FileNotFoundError, "tfds build cifar10"),
        ("optimizer.name", "lion", ValueError, "config.optimizer.name must be"),
        ("data.augment", "mixup", ValueError, "augment must be one of"),
        ("policy.threshold", 1.5, ValueError, "must lie in \\[0.0, 1.0\\]"),
    ],
)
def test_bad_config_gets_a_named_error(tmp_path, field, value, error, message):
    config = tiny_config()
    config.data.data_dir = str(tmp_path / "tfds")
    section, key = field.split(".")
    config[section][key] = value  # new fields too: the factory, not ConfigDict, must reject
    config.train.steps = 1
    with pytest.raises(error, match=message):
        train.train_and_evaluate(config, tmp_path / "run")


@pytest.mark.slow
def test_trains_from_a_tfds_dataset(tmp_path):
    import tensorflow_datasets as tfds

    config = tiny_config()
    config.data.name = "cifar10"
    config.data.augment = "crop_flip"
    config.train.steps = 2
    with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
        report = train.train_and_evaluate(config, tmp_path)
    assert report["dataset"] == "cifar10:test" and len(report["exit_accuracy"]) == 3


@pytest.mark.slow
def test_boostnet_cifar100_config_trains_from_a_fake_tfds_dataset(tmp_path):
    """The published recipe's config end to end on a locally faked CIFAR-100 (tfds mock data),
    with the MSDNet shrunk so that it runs in seconds: boosted loss, gradient rescaling,
    boosted predictions in evaluation and the budgeted sweep on the held-out split."""
    import tensorflow_datasets as tfds

    from configs import cifar100_msdnet_boost

    config = cifar100_msdnet_boost.get_config()
    config.model.update(num_blocks=3, base=1, step=1, channels=4, growth_rate=2)
    config.train.update(batch_size=16, steps=2, log_every=1, eval_every=10,
                        checkpoint_every=1, eval_batch_size=32)
    with tfds.testing.mock_data(num_examples=48, policy=tfds.testing.MockPolicy.USE_CODE):
        report = train.train_and_evaluate(config, tmp_path)
    assert report["dataset"] == "cifar100:test" and len(report["exit_accuracy"]) == 3
    assert len(report["budgeted"]) == 39
    assert (tmp_path / "accuracy_vs_flops.png").stat().st_size > 0


def test_published_boostnet_recipe_is_what_the_configs_say():
    from configs import cifar100_msdnet_boost, cifar100_msdnet_joint

    boost, joint = cifar100_msdnet_boost.get_config(), cifar100_msdnet_joint.get_config()
    assert boost.objective.to_dict() == {"name": "boosted", "reweight": 0.5,
                                         "gradient_rescale": True}
    assert joint.objective.name == "joint"
    for config in (boost, joint):
        assert config.model.to_dict() == {**joint.model.to_dict(), "num_blocks": 10, "step": 2,
                                          "base": 4, "channels": 16, "step_mode": "even"}
        assert config.train.batch_size == 64
        assert config.train.steps == 300 * (45_000 // 64)
        optimizer = config.optimizer
        assert (optimizer.name, optimizer.learning_rate, optimizer.momentum) == ("sgd", 0.1, 0.9)
        assert (optimizer.decay_epochs, optimizer.decay_factor) == ((150, 225), 0.1)
        assert optimizer.weight_decay == 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["mnist5k_resnet_jei", "mnist5k_vit_jei"])
def test_jei_configs_train_gates_and_report_uncertainty(tmp_path, config_name):
    import importlib

    config = importlib.import_module(f"configs.{config_name}").get_config()
    if config.model.name == "resnet_ee":
        config.model.update(width=4, num_exits=3)
    else:
        config.model.update(dim=8, num_heads=2, exit_blocks=(1, 2))
    config.train.update(batch_size=32, steps=4, log_every=2, eval_every=10, checkpoint_every=2)
    config.objective.warmup_steps = 2
    report = train.train_and_evaluate(config, tmp_path)
    policy = report["policy"]
    assert policy["name"] == "gates" and len(policy["exit_fractions"]) == len(
        report["exit_accuracy"])
    assert 0 <= policy["ece"] <= 1
    assert 0 <= policy["conformal"]["coverage"] <= 1 and policy["conformal"]["mean_set_size"] >= 1
    assert [p["threshold"] for p in report["sweep"]][:2] == [0.1, 0.2]
