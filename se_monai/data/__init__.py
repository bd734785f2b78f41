"""Data: the offline ICBM152 brain-tissue dataset, its synthetic subjects, datalists and a dataset's plan.

- :mod:`se_monai.data.template`: the ICBM 2009a template inside the nilearn package, its tissue labels, subjects
  synthesised from it (:class:`TemplateSubjects`) and the MSD-layout dataset (:func:`prepare_brain_tissue_dataset`);
- :mod:`se_monai.data.synth`: the SynthSeg-style generator (random per-structure intensities, a synthetic head);
- :mod:`se_monai.data.datalists`: the images to segment in a folder or an MSD ``imagesTs/``, test pairs, the
  validation split, ``dataset.json`` checked;
- :mod:`se_monai.data.fingerprint`: a dataset's fingerprint and plan (spacing, patch size, normalisation).
"""

from se_monai.data.datalists import (
    STRIPPED_ZERO_FRACTION,
    acquired_voxels,
    images_to_segment,
    is_skull_stripped,
    labelled_test_datalist,
    list_nifti,
    read_dataset,
    skull_stripped_indices,
    split_datalist,
)
from se_monai.data.fingerprint import dataset_fingerprint, describe_plan, plan
from se_monai.data.synth import GENERATORS, AlternatingSubjects, SynthSegSubjects, training_subjects
from se_monai.data.template import (
    CSF_LABELS,
    HEAD_PAD,
    HEAD_SHELLS,
    LABELS,
    TISSUE_SOURCES,
    TemplateSubjects,
    add_head,
    head_shell_labels,
    icbm152_paths,
    intensity_tissue_maps,
    load_icbm152,
    prepare_brain_tissue_dataset,
    random_geometry,
    synthesis_transform,
    tissue_labels,
)

__all__ = [
    "LABELS",
    "CSF_LABELS",
    "TISSUE_SOURCES",
    "icbm152_paths",
    "intensity_tissue_maps",
    "load_icbm152",
    "tissue_labels",
    "add_head",
    "head_shell_labels",
    "HEAD_SHELLS",
    "HEAD_PAD",
    "random_geometry",
    "synthesis_transform",
    "TemplateSubjects",
    "prepare_brain_tissue_dataset",
    "SynthSegSubjects",
    "AlternatingSubjects",
    "GENERATORS",
    "training_subjects",
    "images_to_segment",
    "list_nifti",
    "labelled_test_datalist",
    "STRIPPED_ZERO_FRACTION",
    "is_skull_stripped",
    "acquired_voxels",
    "split_datalist",
    "skull_stripped_indices",
    "read_dataset",
    "dataset_fingerprint",
    "plan",
    "describe_plan",
]
