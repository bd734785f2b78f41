"""Programs built on the library, one per ``se-monai`` command family; nothing in the library imports them.

- :mod:`se_monai.apps.bench`: timings of SEUNet, its reference formulation and MONAI's UNet;
- :mod:`se_monai.apps.equivariance`: the equivariance report of the bases and the trained network;
- :mod:`se_monai.apps.experiment`: the scale-generalisation experiment (config, runs, results);
- :mod:`se_monai.apps.plots`: Dice plots and prediction overlays;
- :mod:`se_monai.apps.export`: ONNX export;
- :mod:`se_monai.apps.demo`: the shipped model on the real ICBM152 T1.
"""
