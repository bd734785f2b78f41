"""Primitives that import nothing from se_monai.

- :mod:`se_monai.ops.resample`: rescaling of volumes and smooth random test fields;
- :mod:`se_monai.ops.space_to_depth`: the exact space-to-depth form of few-channel stride-1 convolutions;
- :mod:`se_monai.ops.channels_last`: per-channel operations on feature maps whose channel axis is innermost;
- :mod:`se_monai.ops.atomic`: files written to a temporary name and renamed into place.
"""
