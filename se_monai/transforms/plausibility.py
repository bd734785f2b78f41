"""Is a segmentation plausible for the model that made it? Tissue volumes (mL) and volume ratios against the ranges
the bundle declares, so that an input outside the model's domain (a T1 with the skull still on, another contrast, a
partial field of view) is flagged in one line instead of being silently wrong.

The shipped bundle declares its ranges in ``inference.json``, as data::

    "class_names": {"0": "other", "1": "grey matter", "2": "white matter", "3": "CSF"},
    "plausibility": {
        "volume_ml": {"grey matter + white matter": [40, 1900]},
        "ratio": {"grey matter / white matter": [0.8, 3.0]},
        "field_of_view": "grey matter + white matter",
        "hint": "expected a T1-weighted brain"
    }

A ``volume_ml`` key sums the volumes of the classes it names (joined by " + "); a ``ratio`` key divides the volumes
of two classes (" / "); ``field_of_view`` names classes whose union must lie inside the image, not cut by its border
(:func:`se_monai.transforms.spacing.cut_by_field_of_view`: a partial field of view, whose volumes are not the whole
brain's). Bundles made for other datasets start with no ranges (nothing is checked).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from se_monai.data.datalists import voxel_ml
from se_monai.io.files import InputError
from se_monai.transforms.spacing import cut_by_field_of_view

__all__ = ["ACTIONS", "ImplausibleSegmentation", "class_volumes", "check_volumes", "CheckPlausibilityd"]

#: What :class:`CheckPlausibilityd` does with an implausible segmentation.
ACTIONS = ("warn", "raise", "off")
LOGGER = logging.getLogger("se_monai.transforms.plausibility")


class ImplausibleSegmentation(InputError):
    """The segmentation's volumes are outside the ranges the bundle declares (the input is outside its domain)."""


def class_volumes(labels: Any, affine: Any, class_names: Mapping[str, str]) -> dict[str, float]:
    """Volume of each class (mL) in a label volume.

    Args:
        labels: ``(D, H, W)`` or ``(1, D, H, W)`` integer labels (array or tensor).
        affine: ``(4, 4)`` voxel-to-world matrix (mm); the voxel volume is ``|det(affine[:3, :3])|`` mm^3.
        class_names: class index (as a string, as in ``metadata.json``) -> name.

    Returns:
        name -> volume in mL (1 mL = 1000 mm^3), for every class in ``class_names``.
    """
    values = torch.as_tensor(labels).reshape(-1).long()
    counts = torch.bincount(values, minlength=max(int(k) for k in class_names) + 1)
    return {name: float(counts[int(k)]) * voxel_ml(affine) for k, name in class_names.items()}


def _classes(expression: str, known: Any, operator: str) -> list[str]:
    """The class names of a rule ("a + b", "a / b"), checked against ``known``.

    Raises:
        ValueError: a name not in ``known``, or a ratio of other than two classes.
    """
    names = [part.strip() for part in expression.split(operator)]
    unknown = [n for n in names if n not in known]
    if unknown or (operator == "/" and len(names) != 2):
        raise ValueError(f"plausibility rule {expression!r}: unknown classes {unknown} (known: {sorted(known)})")
    return names


def _evaluate(expression: str, volumes: Mapping[str, float], operator: str) -> float:
    names = _classes(expression, volumes, operator)
    if operator == "+":
        return sum(volumes[n] for n in names)
    return volumes[names[0]] / volumes[names[1]] if volumes[names[1]] > 0 else float("inf")


def check_volumes(volumes: Mapping[str, float], rules: Mapping[str, Any]) -> list[str]:
    """The rules a segmentation breaks, each as a short phrase (empty when plausible).

    Args:
        volumes: class name -> volume (mL), from :func:`class_volumes`.
        rules: ``{"volume_ml": {"a + b": [low, high]}, "ratio": {"a / b": [low, high]}}`` (either may be absent).

    Raises:
        ValueError: a rule names a class that ``volumes`` does not have.
    """
    broken = []
    for expression, (low, high) in rules.get("volume_ml", {}).items():
        value = _evaluate(expression, volumes, "+")
        if not low <= value <= high:
            broken.append(f"{expression} {value:.0f} mL is outside {low:g}-{high:g} mL")
    for expression, (low, high) in rules.get("ratio", {}).items():
        value = _evaluate(expression, volumes, "/")
        if not low <= value <= high:
            broken.append(f"{expression} is {value:.2f}, outside {low:g}-{high:g}")
    return broken


class CheckPlausibilityd(MapTransform):
    """Checks a label volume (after ``AsDiscreted``, on the input's grid) against the bundle's plausibility ranges.

    Args:
        keys: the label key, e.g. "pred"; a ``(1, D, H, W)`` MetaTensor whose affine is in mm.
        class_names: class index (string) -> name.
        rules: see :func:`check_volumes`, plus an optional "field_of_view" (classes "a + b" that must not be cut by
            the image's border; see the module's docstring) and "hint" (appended to the message).
        action: "warn" (log one warning line), "raise" (:class:`ImplausibleSegmentation`, so no output is written)
            or "off".
        allow_missing_keys: as MONAI's MapTransform.

    Raises:
        ValueError: unknown ``action``; when called, a rule naming a class not in ``class_names``.
        ImplausibleSegmentation: with ``action="raise"``, on an implausible segmentation.
    """

    def __init__(
        self,
        keys: KeysCollection,
        class_names: Mapping[str, str],
        rules: Mapping[str, Any] | None = None,
        action: str = "warn",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if action not in ACTIONS:
            raise ValueError(f"plausibility action must be one of {ACTIONS}, got {action!r}")
        self.class_names = dict(class_names)
        self.rules = dict(rules or {})
        self.action = action

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.action == "off" or not any(self.rules.get(k) for k in ("volume_ml", "ratio", "field_of_view")):
            return d
        for key in self.key_iterator(d):
            labels = d[key]
            meta = getattr(labels, "meta", {})
            broken = check_volumes(class_volumes(labels, labels.affine, self.class_names), self.rules)
            if self.rules.get("field_of_view"):
                broken += self._cut(labels, self.rules["field_of_view"])
            if broken:
                self._report(str(meta.get("filename_or_obj", key)), broken)
        return d

    def _cut(self, labels: Any, expression: str) -> list[str]:
        """``[phrase]`` when the classes of ``expression`` ("a + b") are cut by the field of view, else ``[]``."""
        indices = {name: int(k) for k, name in self.class_names.items()}
        names = _classes(expression, indices, "+")
        values = torch.as_tensor(labels).reshape(labels.shape[-3:])
        inside = torch.isin(values, torch.tensor([indices[n] for n in names], device=values.device))
        return [f"{expression} is cut by the field of view (a partial brain)"] if cut_by_field_of_view(inside) else []

    def _report(self, source: str, broken: Sequence[str]) -> None:
        hint = self.rules.get("hint")
        message = f"{source}: implausible segmentation: {'; '.join(broken)}" + (f" ({hint})" if hint else "")
        if self.action == "raise":
            raise ImplausibleSegmentation(message)
        LOGGER.warning(message)
