"""Label conventions: five-grade DR to three grades, the joint label, and quality codes.

In memory the quality label is *canonical*: 0 is HQ and the order follows
`DatasetConfig.quality_names` (Table 1 of the MKCNet paper). The authors' split files
use their own per-dataset codes (EyeQ writes 2 for "Good", DeepDR / DRAC / CT-IQAD write
1 for HQ); this module is the one place that converts between the two, so metrics that
treat quality 0 as HQ are right for every dataset.
"""

from __future__ import annotations

# File code -> canonical index, established from the authors' published split files
# (counts per code match Table 1 only under this reading):
#   EYEQ   file 2 = Good (HQ), 1 = Usable (LQ-U), 0 = Reject (LQ-P)
#   DEEPDR file 1 = good overall quality (DeepDRiD's own "Overall quality" = 1), 0 = LQ;
#          Table 1's NPDR and PDR rows match exactly, its NoDR row has HQ / LQ swapped
#   DRAC   file 1 = HQ (84 % of images, as Table 1), 0 = LQ
#   IQAD_CT file 1 = SARS-CoV-2 CT-scan images (HQ), 0 = COVID-CT images (LQ)
#   IQAD_CXR file 0 = HQ child, 1 = LQ-C low-dose child, 2 = LQ-A low-dose adult
_FILE_TO_CANONICAL: dict[str, tuple[int, ...]] = {
    "EYEQ": (2, 1, 0),
    "DEEPDR": (1, 0),
    "DRAC": (1, 0),
    "IQAD_CT": (1, 0),
    "IQAD_CXR": (0, 1, 2),
}


def map_five_grade(dr: int) -> int:
    """Five-grade DR (0-4) to NoDR / NPDR / PDR, as the MKCNet authors do."""
    if not 0 <= dr <= 4:
        raise ValueError(f"five-grade DR label must be 0-4, got {dr}")
    if dr == 0:
        return 0
    return 2 if dr == 4 else 1


def joint_label(y_d: int, y_q: int, num_diagnosis: int) -> int:
    """The authors' joint (diagnosis, quality) class: y_q * D + y_d."""
    return y_q * num_diagnosis + y_d


def quality_from_file(name: str, code: int) -> int:
    """Canonical quality index (0 = HQ) for a quality code read from a split file."""
    table = _FILE_TO_CANONICAL.get(name)
    if table is None:
        return code
    return table[code]


def quality_to_file(name: str, quality: int) -> int:
    """The split-file code that stands for canonical quality `quality`."""
    table = _FILE_TO_CANONICAL.get(name)
    if table is None:
        return quality
    return table.index(quality)


def file_quality_codes(name: str, num_quality: int) -> list[int]:
    """File code of each canonical quality index, e.g. EYEQ -> [2, 1, 0].

    Needed to read the authors' checkpoints, whose quality head is in file-code order.
    """
    return [quality_to_file(name, q) for q in range(num_quality)]


def five_grade_of(diagnosis: int, rank: int = 1) -> int:
    """A five-grade DR label for a three-grade one (NPDR -> 1, 2 or 3 by `rank`)."""
    if diagnosis == 0:
        return 0
    if diagnosis == 2:
        return 4
    if rank not in (1, 2, 3):
        raise ValueError(f"NPDR rank must be 1-3, got {rank}")
    return rank
