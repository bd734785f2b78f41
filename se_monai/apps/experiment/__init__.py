"""The scale-generalisation experiment: scale generalisation and data efficiency of SE-U-Net against MONAI's UNet.

One JSON config (``configs/scale_generalisation.json``) declares the arms (a network, with or without random
isotropic rescaling augmentation), the training-set sizes, the seeds and the test scales. For every combination the
runner trains with the bundle's ``train.json`` (MONAI's SupervisedTrainer) and evaluates with its ``evaluate.json``
(SupervisedEvaluator, MeanDice, MetricsSaver) on the test images rescaled by each factor, labels resampled with
nearest neighbour. The volumes keep their 1 mm voxels, so a factor below 1 makes the anatomy smaller, as a smaller
head or a coarser scanner would; it is the paper's test (Wimmer et al. 2023, Sec. 4).

Every finished run writes ``<output_dir>/runs/<run>/result.json``; a later invocation skips finished runs, so an
interrupted experiment resumes where it stopped. ``results.csv`` and ``results.json`` gather all runs, and
:mod:`se_monai.apps.plots` draws them.

Data: an MSD-layout ``dataset_dir``. When it has no ``dataset.json`` and is the offline ICBM152 dataset of
:mod:`se_monai.data` (``"synthesise": true``), it is written first. The last training subject validates nothing
and is held out; test images come from ``imagesTs/`` with labels in ``labelsTs/``, or, for a dataset without
labelled test images (most MSD tasks), the last ``num_test`` training subjects, excluded from training.

Modules: :mod:`~se_monai.apps.experiment.config` (the config and the plan of runs),
:mod:`~se_monai.apps.experiment.testset` (datasets and the rescaled test images),
:mod:`~se_monai.apps.experiment.runner` (training and testing through the bundle),
:mod:`~se_monai.apps.experiment.results` (results files and tables).
"""

from se_monai.apps.experiment.config import (
    REQUIRED,
    ConfigError,
    arms,
    load_config,
    plan_runs,
    run_name,
    scale_tag,
    seeds_for,
)
from se_monai.apps.experiment.results import collect_results, format_summary, summarise
from se_monai.apps.experiment.runner import predict, run_experiment
from se_monai.apps.experiment.testset import prepare_test_scales, scaled_test_pairs

__all__ = [
    "REQUIRED",
    "ConfigError",
    "load_config",
    "arms",
    "seeds_for",
    "plan_runs",
    "run_name",
    "scale_tag",
    "scaled_test_pairs",
    "prepare_test_scales",
    "run_experiment",
    "collect_results",
    "summarise",
    "format_summary",
    "predict",
]
