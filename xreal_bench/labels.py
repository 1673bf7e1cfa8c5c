"""Label vocabularies shared by every stage."""

from __future__ import annotations

#: The 14 CheXpert labels in the column order of ``mimic-cxr-2.0.0-chexpert.csv``.
CHEXPERT_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)

#: Labels that are not pathologies: never part of a pathology prompt.
NON_PATHOLOGY_LABELS: frozenset[str] = frozenset({"No Finding", "Support Devices"})

#: The seven pathologies XReal's released inference knows (the paper's label set).
XREAL_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Lung Opacity",
    "Pneumothorax",
    "Pneumonia",
)

#: Anatomy label-map values (XReal's convention). "Left"/"right" are the patient's sides:
#: on a standard frontal (PA/AP) radiograph the patient's left lung is on the image's right.
ANATOMY_CLASSES: dict[str, int] = {
    "background": 0,
    "left_lung": 1,
    "right_lung": 2,
    "heart": 3,
    "aorta": 4,
}

#: Structures scored by Dice, each a set of label-map values.
DICE_STRUCTURES: dict[str, tuple[int, ...]] = {
    "lungs": (1, 2),
    "heart": (3,),
    "aorta": (4,),
}


def label_index(name: str) -> int:
    """Index of a CheXpert label, with a clear error for unknown names."""
    try:
        return CHEXPERT_LABELS.index(name)
    except ValueError:
        raise ValueError(f"unknown label {name!r}; known labels: {', '.join(CHEXPERT_LABELS)}") from None


def positive_names(labels: tuple[int, ...]) -> tuple[str, ...]:
    """Positive pathology names in CheXpert order (non-pathology labels left out)."""
    return tuple(name for name, value in zip(CHEXPERT_LABELS, labels) if value == 1 and name not in NON_PATHOLOGY_LABELS)
