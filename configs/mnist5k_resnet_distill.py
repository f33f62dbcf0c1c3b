"""The default experiment with distillation from the last exit (Phuong & Lampert, 2019)."""

from configs import default


def get_config():
    config = default.get_config()
    config.objective.name = "distill"
    config.objective.temperature = 3.0
    config.objective.alpha = 0.5
    return config
