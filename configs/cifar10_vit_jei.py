"""JEI-DNN on CIFAR-10 from tensorflow-datasets with vit_ee (8x8 patches of 4x4 pixels, width
192, 6 heads, exits after blocks 2, 4, 6, 8; uncertainty gates). The last 5,000 training images
calibrate the conformal sets and the budgeted thresholds.

`python train.py --config configs/cifar10_vit_jei.py --workdir DIR
 --config.data.data_dir=~/tensorflow_datasets`
"""

import ml_collections

from configs import mnist5k_vit_jei


def get_config():
    config = mnist5k_vit_jei.get_config()
    config.data.name = "cifar10"
    config.data.train_split = "train[:45000]"
    config.data.calibration_split = "train[45000:]"
    config.data.augment = "crop_flip"
    config.model.dim = 192
    config.model.num_heads = 6
    config.model.exit_blocks = (2, 4, 6, 8)
    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 0.05
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_steps = 1000
    config.train.steps = 35_000  # 100 epochs of 45,000 at batch 128
    config.train.eval_every = 3500
    config.train.checkpoint_every = 1000
    config.objective.warmup_steps = 10_000
    return config
