"""Segmenting users' images with the bundle's inference.json: one image (``segment_image``) or every
image and DICOM series in a folder (``segment_folder``), with label statistics, probability maps and mirroring
test-time augmentation.

Every output is written atomically (staged in a hidden folder beside it, then renamed), on the input's grid: NIfTI
inputs keep their shape and affine; NRRD, MetaImage and DICOM inputs their size, spacing, origin and direction
exactly (:func:`se_monai.io.sitk.write_on_grid`). Inputs are checked first, so bad input costs one line
(:class:`se_monai.io.InputError`) and writes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from se_monai.engines import CasesFailed, describe_failure
from se_monai.io import (
    NIFTI_SUFFIXES,
    InputError,
    check_nifti,
    check_output_path,
    is_hidden,
    is_nifti,
    list_images,
    nifti_stem,
)
from se_monai.io.dicom_seg import DICOM_SEG_SUFFIX, write_dicom_seg
from se_monai.io.files import no_images_error
from se_monai.io.sitk import (
    LABEL_SUFFIXES,
    dicom_series,
    label_statistics,
    needs_sitk,
    read_image,
    series_files,
    write_on_grid,
)
from se_monai.ops.atomic import TEMPORARY_PREFIX, atomic_write
from se_monai.transforms import ACTIONS, BRAIN_EXTRACTION_MODES
from se_monai.workflows import bundle_class_names, bundle_settings, resolve_bundle_dir, run_bundle

__all__ = ["PROBABILITY_DTYPES", "OUTPUT_SUFFIXES", "segment_image", "Case", "find_cases", "segment_folder"]

#: Data types of written probability maps.
PROBABILITY_DTYPES = ("float32", "float16")
#: Suffixes of label and probability outputs (DICOM SEG for labels of DICOM series).
OUTPUT_SUFFIXES = (*NIFTI_SUFFIXES, *LABEL_SUFFIXES, DICOM_SEG_SUFFIX)
#: Suffix of probabilities as a NumPy archive (the only output holding float16: NIfTI, NRRD and MetaImage as
#: nibabel and SimpleITK write them do not).
NUMPY_SUFFIX = ".npz"


def _suffix(path: str | os.PathLike) -> str:
    name = Path(path).name.lower()
    return next((s for s in sorted(OUTPUT_SUFFIXES, key=len, reverse=True) if name.endswith(s)), Path(path).suffix)


@dataclass(frozen=True)
class _Outputs:
    labels: Path
    statistics: Path | None
    probabilities: Path | None


def segment_image(
    input: str | os.PathLike,
    output: str | os.PathLike,
    bundle_dir: str | os.PathLike | None = None,
    overlap: float = 0.25,
    sw_batch_size: int = 1,
    device: str | None = None,
    progress: bool | None = None,
    plausibility: str = "warn",
    series: str | None = None,
    statistics: str | os.PathLike | None = None,
    probabilities: str | os.PathLike | None = None,
    probabilities_dtype: str = "float32",
    tta: bool | Sequence[int] = False,
    amp: bool | None = None,
    verbose: bool = False,
    brain_extraction: str | None = None,
) -> Path:
    """Segment one image with the bundle's ``inference.json`` and write the label image atomically, on the input's
    grid (same shape and affine; for NRRD, MetaImage and DICOM inputs the same size, spacing, origin and direction).

    Args:
        input: image (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd) or a DICOM series folder, 3-D, or with the bundle's
            number of channels (a 4-D NIfTI with channels last, a vector NRRD or MetaImage).
        output: label file to write (.nii, .nii.gz, .nrrd or .mha; unsigned 8-bit), or for a DICOM series a DICOM
            SEG (.dcm, :func:`se_monai.io.dicom_seg.write_dicom_seg`); must differ from ``input``.
        bundle_dir: the bundle folder (default :func:`se_monai.workflows.default_bundle_dir`).
        overlap, sw_batch_size: of the sliding-window inferer.
        progress: the sliding-window inferer's progress bar (stderr); None: when stderr is a terminal.
        device: "cpu", "cuda", ... (default: the config's, CUDA if available).
        plausibility: what to do when the tissue volumes are outside the bundle's ranges
            (:mod:`se_monai.transforms.plausibility`): "warn" (one log line, the output is written), "raise" or "off".
        series: the DICOM series instance UID, for a folder with several series.
        statistics: a .json file to write per class (by the bundle's class names): voxels, volume in mL and mean
            input intensity (:func:`se_monai.io.sitk.label_statistics`), written after the labels.
        probabilities: a file to write the class probabilities to (softmax, refined by the bundle's
            :class:`se_monai.transforms.MixtureRefinementd` if it has one), one channel per class on the input's grid,
            class 0 completed to one outside the segmented region (:func:`se_monai.inferers.complete_background`):
            an image (same suffixes as ``output``; float32, a 4-D NIfTI ``(X, Y, Z, C)`` or a vector NRRD/MetaImage)
            or a .npz archive (``probabilities`` ``(C, X, Y, Z)`` in ``probabilities_dtype``, the RAS ``affine``).
        probabilities_dtype: "float32" or "float16" (float16 for .npz only).
        tta: mirroring test-time augmentation (:class:`se_monai.inferers.FlipInferer`): True mirrors over the
            bundle's ``tta_axes`` (the shipped bundle: all three, 8 passes), a list of spatial axes (0, 1, 2 of the
            RAS-resampled image: left-right, posterior-anterior, inferior-superior) over those (2^n passes).
        amp: mixed precision. None: the bundle's default (float16 autocast on CUDA; bfloat16 on CPUs with AMX,
            :func:`se_monai.inferers.cpu_bf16_preferred`; float32 otherwise); True: autocast on any CUDA or CPU
            device; False: float32 throughout.
        brain_extraction: of heads (:class:`se_monai.transforms.BrainExtractiond`): "auto" (inputs whose non-zero
            voxels hold over the bundle's ``head_ml``), "always", "never"; None: the bundle's own (shipped: "auto").

    Returns:
        The label path written.

    Raises:
        InputError: a bad input or output path (see :func:`se_monai.io.check_nifti`,
            :func:`se_monai.io.sitk.read_image`), not a bundle, a bundle without ``models/model.pt``, an unknown
            ``plausibility``, ``probabilities_dtype`` or ``brain_extraction`` (or one for a bundle without it).
        se_monai.transforms.ImplausibleSegmentation: with ``plausibility="raise"`` (an InputError raised inside the
            bundle's transforms, unwrapped from MONAI's RuntimeError); nothing is written.
    """
    _check_choices(dict(zip(_CHOICES, (plausibility, probabilities_dtype, brain_extraction), strict=True)))
    root = resolve_bundle_dir(bundle_dir)
    settings = bundle_settings(root)
    extraction = _brain_extraction_overrides(root, settings, brain_extraction)
    reference = _read_other_format(input, settings["in_channels"], series) if needs_sitk(input) else None
    if reference is None:
        check_nifti(input, channels=settings["in_channels"])
    targets = _check_outputs(input, output, statistics, probabilities)
    if not (root / "models" / "model.pt").is_file():
        raise InputError(f"{root / 'models' / 'model.pt'}: no trained model in the bundle (run se-monai train)")
    overrides: dict[str, Any] = {
        "datalist": [str(Path(input).resolve())],
        "dicom_series": series,
        "inferer#overlap": float(overlap),
        "inferer#sw_batch_size": int(sw_batch_size),
        "inferer#progress": sys.stderr.isatty() if progress is None else bool(progress),
        "plausibility_action": plausibility,
        "output_ext": ".nii.gz" if targets.labels.suffix == DICOM_SEG_SUFFIX else _suffix(targets.labels),
        "tta": bool(tta),
        **({"tta_axes": _axes(tta)} if isinstance(tta, (list, tuple)) else {}),
        "save_probabilities": targets.probabilities is not None,
        "probabilities_ext": _probabilities_ext(targets, probabilities_dtype),
        **_device_overrides(device, amp),
        **extraction,
    }
    with tempfile.TemporaryDirectory(prefix=TEMPORARY_PREFIX, dir=targets.labels.parent) as staging:
        _run_inference(root, staging, overrides, verbose)
        labels = _staged(Path(staging), "_seg", overrides["output_ext"])
        table = _statistics(root, labels, reference, input) if targets.statistics is not None else None
        if targets.labels.suffix == DICOM_SEG_SUFFIX:
            with atomic_write(targets.labels) as partial:
                write_dicom_seg(labels, series_files(input, series), bundle_class_names(root), partial)
        else:
            _deliver(labels, reference, targets.labels)
        if targets.probabilities is not None:
            staged = _staged(Path(staging), "_prob", overrides["probabilities_ext"])
            _deliver(staged, reference, targets.probabilities, probabilities_dtype)
    if table is not None:
        with atomic_write(targets.statistics) as partial:
            partial.write_text(json.dumps(table, indent=2) + "\n")
    return targets.labels


#: The values :func:`segment_image`'s options take (``brain_extraction`` also None: the bundle's own).
_CHOICES = {
    "plausibility": ACTIONS,
    "probabilities_dtype": PROBABILITY_DTYPES,
    "brain_extraction": BRAIN_EXTRACTION_MODES,
}


def _check_choices(values: dict[str, Any]) -> None:
    for name, value in values.items():
        if value not in _CHOICES[name] and not (value is None and name == "brain_extraction"):
            raise InputError(f"--{name} {value}: expected one of {', '.join(_CHOICES[name])}")


def _brain_extraction_overrides(root: Path, settings: dict[str, Any], mode: str | None) -> dict[str, Any]:
    """inference.json's override for :func:`segment_image`'s ``brain_extraction`` (none for the bundle's own)."""
    if mode is None:
        return {}
    if settings["brain_extraction"] is None:
        raise InputError(f"--brain_extraction: the bundle {root} has no brain extraction stage")
    return {"brain_extraction": mode}


def _axes(values: Sequence[Any]) -> list[int]:
    axes = [int(v) for v in values]
    if not axes or len(set(axes)) != len(axes) or not all(0 <= a <= 2 for a in axes):
        raise InputError(f"--tta {list(values)}: expected distinct spatial axes among 0, 1, 2, e.g. [0,1,2]")
    return axes


#: Loggers that print an engine's exception with its traceback before it propagates (MONAI's StatsHandler, Ignite's
#: engine) or a skipped case (se_monai.engines); silenced while segment runs the bundle, which reports the failure
#: in one line instead.
_ENGINE_LOGGERS = ("monai.handlers.StatsHandler", "ignite.engine.engine.SupervisedEvaluator", "se_monai.engines")


class _NoErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


def _device_overrides(device: str | None, amp: bool | None) -> dict[str, Any]:
    """inference.json overrides for :func:`segment_image`'s ``device`` and ``amp`` (none for the defaults)."""
    overrides: dict[str, Any] = {} if device is None else {"device": f"$torch.device('{device}')"}
    if amp is not None:
        on = {"amp": "$@device.type == 'cuda'", "cpu_bf16": "$@device.type == 'cpu'"}
        overrides |= on if amp else {"amp": False, "cpu_bf16": False}
    return overrides


def _run_inference(root: Path, staging: str, overrides: dict[str, Any], verbose: bool) -> None:
    """Run inference.json; a failure is one :class:`InputError` line: the InputError a transform raised (MONAI's
    Compose wraps it), else the input's name with the innermost cause (e.g. a degenerate geometry). Bundles made
    before the configs skipped failed cases raise instead of reporting :class:`se_monai.engines.CasesFailed`."""
    quiet = _NoErrors()
    for name in _ENGINE_LOGGERS:
        logging.getLogger(name).addFilter(quiet)
    source = overrides["datalist"][0]
    try:
        run_bundle(["inference.json"], root, workflow_type="infer", quiet=not verbose, output_dir=staging, **overrides)
    except CasesFailed as failed:
        case = failed.failed[0]
        if case.error is not None:
            raise case.error from None
        raise InputError(f"{source}: inference failed ({case.reason})") from None
    except Exception as err:
        reason, user = describe_failure(err)
        if user is not None:
            raise user from None
        raise InputError(f"{source}: inference failed ({reason})") from err
    finally:
        for name in _ENGINE_LOGGERS:
            logging.getLogger(name).removeFilter(quiet)


def _staged(staging: Path, postfix: str, suffix: str) -> Path:
    written = sorted(p for p in staging.iterdir() if p.name.endswith(postfix + suffix))
    if len(written) != 1:
        raise RuntimeError(f"inference wrote {len(written)} '{postfix}{suffix}' files to {staging}, expected 1")
    return written[0]


def _probabilities_ext(targets: _Outputs, dtype: str) -> str:
    """The suffix the bundle writes the probabilities with (NIfTI for a .npz target, converted after)."""
    if targets.probabilities is None or targets.probabilities.suffix == NUMPY_SUFFIX:
        return ".nii.gz"  # (not written, or converted)
    if dtype != "float32":
        raise InputError(f"{targets.probabilities}: {dtype} probabilities need a .npz file (images hold float32)")
    return _suffix(targets.probabilities)


def _deliver(staged: Path, reference: Any, target: Path, dtype: str = "float32") -> None:
    """Move a staged output onto ``target`` atomically; for a SimpleITK input and output, with the input's exact
    geometry; a .npz target gets the staged NIfTI's channels first, in ``dtype``, with its affine."""
    with atomic_write(target) as partial:
        if target.suffix == NUMPY_SUFFIX:
            image = nib.load(str(staged))
            maps = np.moveaxis(np.asanyarray(image.dataobj), -1, 0).astype(dtype)
            with open(partial, "wb") as handle:
                np.savez_compressed(handle, probabilities=maps, affine=image.affine)
        elif reference is not None and not is_nifti(target):
            write_on_grid(staged, reference, partial)
        else:
            shutil.move(staged, partial)


def _check_outputs(source: str | os.PathLike, output: Any, statistics: Any, probabilities: Any) -> _Outputs:
    """The output paths, checked: the labels (an image suffix), the statistics (.json) and the probabilities (an
    image suffix), none of them an input or one another."""
    target = check_output_path(output, source, others=(*LABEL_SUFFIXES, DICOM_SEG_SUFFIX))
    if target.suffix == DICOM_SEG_SUFFIX and not Path(source).is_dir():
        raise InputError(f"{target}: DICOM SEG output (.dcm) needs a DICOM series folder as input")
    table = None
    if statistics is not None:
        if statistics is True or Path(statistics).suffix != ".json":
            raise InputError(f"{statistics}: --statistics must name a .json file")
        table = check_output_path(statistics, source, target, others=(".json",))
    maps = None
    if probabilities is not None:
        if probabilities is True:
            raise InputError("--probabilities must name a file (.nii, .nii.gz, .nrrd, .mha or .npz)")
        others = (*LABEL_SUFFIXES, NUMPY_SUFFIX)
        maps = check_output_path(probabilities, source, target, *([table] if table else []), others=others)
    return _Outputs(target, table, maps)


def _statistics(root: Path, labels: Path, reference: Any, source: str | os.PathLike) -> dict[str, dict]:
    image = reference if reference is not None else sitk.ReadImage(str(source))
    return label_statistics(labels, image, bundle_class_names(root))


def _read_other_format(path: str | os.PathLike, channels: int, series: str | None) -> Any:
    """The SimpleITK image of a non-NIfTI input, checked for the model: 3-D, its channel count, finite values."""
    image = read_image(path, series)
    if image.GetDimension() != 3:
        raise InputError(f"{path}: expected a 3-D volume, got {image.GetDimension()}-D size {image.GetSize()}")
    if min(image.GetSize()) < 2:
        raise InputError(f"{path}: size {image.GetSize()} is a single slice (a localizer or 2-D image), not a volume")
    if image.GetNumberOfComponentsPerPixel() != channels:
        found = image.GetNumberOfComponentsPerPixel()
        raise InputError(f"{path}: has {found} channel(s), the model expects {channels}")
    if not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
        raise InputError(f"{path}: contains NaN or infinite values")
    return image


#: Data files of detached headers (.mhd, .nhdr): read through their header, not cases of their own.
_DATA_SUFFIXES = (".raw", ".zraw", ".img", ".gz", ".bz2")


@dataclass(frozen=True)
class Case:
    """One input of a folder: ``name`` (the output's stem), the image file or DICOM folder, its series UID."""

    name: str
    path: Path
    series: str | None = None


def find_cases(input_dir: str | os.PathLike) -> tuple[list[Case], list[str]]:
    """The images in ``input_dir`` and the DICOM series in it and any folder below it.

    Images are the top-level files ending in .nii, .nii.gz, .nrrd, .nhdr, .mha or .mhd, named by their stem. A
    DICOM series is named by its folder's path below ``input_dir`` (``/`` written ``_``; ``input_dir``'s own name for
    series directly inside it), with ``_<series UID>`` added when the folder holds several series.

    Returns:
        ``(cases, notes)``: the cases sorted by name, and one line per top-level file that is neither (ignored).

    Raises:
        InputError: ``input_dir`` is not a folder, or two cases have the same name.
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    cases: list[Case] = []
    dicom_files: set[str] = set()
    for folder, folders, _ in os.walk(root):
        folders[:] = [name for name in folders if not is_hidden(name)]
        uids = dicom_series(folder)
        relative = Path(folder).relative_to(root)
        stem = "_".join(relative.parts) if relative.parts else root.resolve().name
        for uid in uids:
            dicom_files.update(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid))
            name = stem if len(uids) == 1 else f"{stem}_{uid}"
            cases.append(Case(name, Path(folder), uid if len(uids) > 1 else None))
    images, ignored = list_images(root)
    cases += [Case(nifti_stem(path) if is_nifti(path) else Path(path).stem, Path(path)) for path in images]
    parts = dicom_files | {path for path in ignored if path.lower().endswith(_DATA_SUFFIXES) and not is_nifti(path)}
    notes = [
        f"{path}: ignored ({_not_a_case(Path(path), reason)})" for path, reason in ignored.items() if path not in parts
    ]
    names = [case.name for case in cases]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InputError(f"{root}: several inputs would write the same output name: {', '.join(twice)}")
    return sorted(cases, key=lambda case: case.name), notes


def _not_a_case(path: Path, reason: str) -> str:
    with open(path, "rb") as handle:
        preamble = handle.read(132)
    if preamble[128:132] == b"DICM":
        return "a DICOM file outside any image series, e.g. a DICOMDIR index or a report"
    return f"{reason} or DICOM" if reason.startswith("not an image") else reason


def segment_folder(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    output_ext: str = ".nii.gz",
    statistics: bool = False,
    probabilities: bool = False,
    progress: bool | None = None,
    **options: Any,
) -> dict[str, list[str]]:
    """Segment every case of :func:`find_cases` into ``output_dir`` as ``<name>_seg<output_ext>`` (with
    ``<name>_statistics.json`` and ``<name>_prob<output_ext>`` when asked), skipping cases whose outputs all exist
    (so that an interrupted run resumes), printing one line for each input that fails and going on.

    Args:
        input_dir: folder of images and DICOM series.
        output_dir: folder to write to (created if missing).
        output_ext: .nii.gz, .nii, .nrrd or .mha.
        statistics, probabilities: also write the statistics / probability map of each case.
        progress: a progress bar over the cases (stderr); None: when stderr is a terminal.
        options: of :func:`segment_image` (``overlap``, ``tta``, ``plausibility``, ...).

    Returns:
        ``{"written": [...], "skipped": [...], "failed": [...]}``: the cases' names.

    Raises:
        InputError: a bad ``input_dir``, ``output_dir`` or ``output_ext``, or no case in ``input_dir``.
    """
    if output_ext not in OUTPUT_SUFFIXES:
        raise InputError(f"--output_ext {output_ext}: expected one of {', '.join(OUTPUT_SUFFIXES)}")
    cases, notes = find_cases(input_dir)
    if not cases:
        raise no_images_error(input_dir)
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for note in notes:
        print(note, file=sys.stderr)
    result: dict[str, list[str]] = {"written": [], "skipped": [], "failed": []}
    show = sys.stderr.isatty() if progress is None else progress
    for case in tqdm(cases, desc="segmenting", unit="image", disable=not show, file=sys.stderr):
        paths = {
            "output": out / f"{case.name}_seg{output_ext}",
            "statistics": out / f"{case.name}_statistics.json" if statistics else None,
            "probabilities": out / f"{case.name}_prob{output_ext}" if probabilities else None,
        }
        if all(path is None or path.exists() for path in paths.values()):
            result["skipped"].append(case.name)
            continue
        try:
            segment_image(case.path, series=case.series, progress=False, **paths, **options)
        except Exception as err:  # one case's failure is reported and the others go on
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if not message.startswith(str(case.path)):
                message = f"{case.path}: {message}"
            if case.series is not None:  # one of several series in the folder: which one
                message = f"{case.path} (series {case.series}){message[len(str(case.path)) :]}"
            tqdm.write(message, file=sys.stderr)
            result["failed"].append(case.name)
        else:
            result["written"].append(case.name)
    return result
