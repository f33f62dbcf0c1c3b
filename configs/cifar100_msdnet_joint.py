"""MSDNet on CIFAR-100 from tensorflow-datasets, trained jointly: BoostNet's baseline recipe.

Model: 10 blocks, step 2 ("even"), base 4, 16 channels, growth 6, factors 1-2-4, bottleneck,
prune "max", reduction 0.5 (4.96M parameters; see the README for the per-exit FLOPs).
Training: batch 64, SGD momentum 0.9, weight decay 1e-4, learning rate 0.1 divided by 10 at
epochs 150 and 225 of 300, random crop and flip. As in the reference, the last 5,000 training
images are held out to calibrate the budgeted thresholds.

Prepare CIFAR-100 once (see the README), then
`python train.py --config configs/cifar100_msdnet_joint.py --workdir DIR
 --config.data.data_dir=~/tensorflow_datasets`
"""

import ml_collections

from configs import default

EPOCHS = 300
TRAIN_IMAGES = 45_000
BATCH = 64


def get_config():
    config = default.get_config()
    config.data.name = "cifar100"
    config.data.train_split = f"train[:{TRAIN_IMAGES}]"
    config.data.calibration_split = f"train[{TRAIN_IMAGES}:]"
    config.data.eval_split = "test"
    config.data.augment = "crop_flip"

    config.model = ml_collections.ConfigDict()
    config.model.name = "msdnet"
    config.model.num_blocks = 10
    config.model.step_mode = "even"
    config.model.step = 2
    config.model.base = 4
    config.model.channels = 16
    config.model.growth_rate = 6
    config.model.gr_factor = (1, 2, 4)
    config.model.bn_factor = (1, 2, 4)
    config.model.bottleneck = True
    config.model.prune = "max"
    config.model.reduction = 0.5
    config.model.layout = "cifar"

    config.objective.name = "joint"
    config.objective.weights = "uniform"

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = False
    config.optimizer.weight_decay = 1e-4
    config.optimizer.schedule = "piecewise"
    config.optimizer.decay_epochs = (150, 225)
    config.optimizer.decay_factor = 0.1

    steps_per_epoch = TRAIN_IMAGES // BATCH  # the last partial batch of an epoch is dropped
    config.train.batch_size = BATCH
    config.train.steps = EPOCHS * steps_per_epoch
    config.train.log_every = 200
    config.train.eval_every = 10 * steps_per_epoch
    config.train.checkpoint_every = steps_per_epoch
    config.train.eval_batch_size = 500
    return config
