"""The default experiment: resnet_ee (4 exits) trained jointly on the embedded MNIST digits.

Runs offline in about two minutes on a 2-core CPU: `python train.py` (or
`python train.py --config configs/default.py --workdir /tmp/run`).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.name = "mnist_5k"  # embedded: 5,000 real MNIST digits from a pip wheel
    config.data.data_dir = ""  # tfds data_dir; "" = tfds' default
    config.data.train_split = "train"
    config.data.eval_split = "test"
    # Budgeted evaluation (MSDNet/BoostNet) picks thresholds on this split; "" skips it.
    config.data.calibration_split = "validation"
    config.data.augment = "crop"  # none | crop | crop_flip

    config.model = ml_collections.ConfigDict()
    config.model.name = "resnet_ee"  # num_classes and input_shape come from the data
    config.model.num_exits = 4
    config.model.width = 16
    config.model.blocks_per_stage = 1

    config.objective = ml_collections.ConfigDict()
    config.objective.name = "joint"
    config.objective.weights = "uniform"

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.weight_decay = 1e-4
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_steps = 30

    config.train = ml_collections.ConfigDict()
    config.train.batch_size = 128  # global, over all devices (or 0 with per_device_batch_size)
    config.train.per_device_batch_size = 0  # 0: batch_size / number of devices
    config.train.num_devices = 0  # data-parallel over this many devices; 0 = all visible
    config.train.shard_params = False  # True: shard params and optimizer state over devices
    config.train.steps = 300
    config.train.log_every = 50
    config.train.eval_every = 150
    config.train.checkpoint_every = 100
    config.train.max_checkpoints = 3
    config.train.eval_batch_size = 500

    # The early-exit policy evaluated at the end (same threshold at every exit but the last).
    config.policy = ml_collections.ConfigDict()
    config.policy.name = "max_prob"  # max_prob | entropy | margin | gates (JEI-DNN)
    config.policy.threshold = 0.9
    # Conformal prediction sets of the policy's exited predictions, calibrated per exit on
    # data.calibration_split: target coverage 1 - alpha.
    config.conformal_alpha = 0.1
    return config
