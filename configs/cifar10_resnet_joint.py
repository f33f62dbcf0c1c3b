"""resnet_ee on CIFAR-10 from tensorflow-datasets (prepare it once, see the README).

`python train.py --config configs/cifar10_resnet_joint.py --workdir DIR
 --config.data.data_dir=~/tensorflow_datasets`
"""

from configs import default


def get_config():
    config = default.get_config()
    config.data.name = "cifar10"
    config.data.train_split = "train[:45000]"
    config.data.calibration_split = "train[45000:]"  # held out for budgeted thresholds
    config.data.augment = "crop_flip"
    config.model.width = 32
    config.model.blocks_per_stage = 2
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = True
    config.optimizer.weight_decay = 5e-4
    config.optimizer.warmup_steps = 500
    config.train.steps = 30000  # ~85 epochs of 45,000 images at batch 128
    config.train.eval_every = 2000
    config.train.checkpoint_every = 1000
    return config
