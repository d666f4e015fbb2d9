"""MKCNet paper, Table 2: published AUC / ACC / macro-F1 (%) per dataset and method.

Source: Che, Chen and Chen, "Image Quality-aware Diagnosis via Meta-knowledge
Co-embedding", CVPR 2023, Table 2 (selection of methods). Shipped with the package
because installed users do not have the project's reference folder; a test keeps
this copy equal to `../shared/reference/table2_paper_results.tsv` where that exists.
These numbers are the paper's, never this project's results.

The paper scores binary tasks (CT, CXR) the authors' way: AUC from hard
predictions and binary F1 (`auc_hard_compat` / `f1_compat` in our metrics).
"""

from __future__ import annotations

CITATION = (
    'Che, Chen & Chen, "Image Quality-aware Diagnosis via Meta-knowledge Co-embedding", '
    "CVPR 2023, Table 2"
)
METRICS = ("AUC", "ACC", "F1")
# our dataset name -> the paper's column name
PAPER_DATASET = {
    "IQAD_CT": "CT-IQAD",
    "IQAD_CXR": "CXR-IQAD",
    "DRAC": "DRAC",
    "DEEPDR": "DeepDR",
    "EYEQ": "EyeQ",
}
# method -> paper dataset -> (AUC, ACC, F1) in percent
TABLE2: dict[str, dict[str, tuple[float, float, float]]] = {
    "MMCNN": {
        "CT-IQAD": (86.57, 86.54, 86.51),
        "CXR-IQAD": (89.13, 89.07, 91.82),
        "DRAC": (82.41, 77.20, 66.18),
        "DeepDR": (76.39, 79.50, 54.40),
        "EyeQ": (69.36, 73.22, 35.48),
    },
    "CANet": {
        "CT-IQAD": (93.36, 93.38, 93.19),
        "CXR-IQAD": (90.51, 91.49, 93.78),
        "DRAC": (86.70, 75.13, 64.38),
        "DeepDR": (81.83, 77.50, 62.74),
        "EyeQ": (81.89, 77.20, 60.26),
    },
    "MAXL": {
        "CT-IQAD": (93.35, 93.38, 93.16),
        "CXR-IQAD": (87.99, 89.86, 92.66),
        "DRAC": (87.24, 77.72, 69.20),
        "DeepDR": (81.59, 71.25, 57.58),
        "EyeQ": (80.64, 73.10, 58.81),
    },
    "QGNet": {
        "CT-IQAD": (92.71, 92.74, 92.50),
        "CXR-IQAD": (89.51, 90.70, 93.22),
        "DRAC": (84.38, 63.73, 47.80),
        "DeepDR": (84.21, 73.50, 64.66),
        "EyeQ": (82.40, 74.73, 60.36),
    },
    "MTMR-Net": {
        "CT-IQAD": (94.46, 94.44, 94.37),
        "CXR-IQAD": (89.69, 91.61, 93.96),
        "DRAC": (85.79, 76.42, 65.12),
        "DeepDR": (82.30, 63.75, 53.61),
        "EyeQ": (79.71, 76.57, 60.50),
    },
    "DETACH": {
        "CT-IQAD": (92.53, 92.52, 92.41),
        "CXR-IQAD": (89.52, 90.64, 93.16),
        "DRAC": (84.81, 76.94, 65.24),
        "DeepDR": (83.61, 71.75, 62.14),
        "EyeQ": (81.68, 74.80, 59.64),
    },
    "MKCNet": {
        "CT-IQAD": (95.73, 95.73, 95.65),
        "CXR-IQAD": (90.71, 91.91, 94.12),
        "DRAC": (88.68, 82.38, 73.87),
        "DeepDR": (86.58, 80.00, 54.73),
        "EyeQ": (83.83, 78.01, 59.68),
    },
}


def paper_rows(dataset: str) -> list[tuple[str, tuple[float, float, float]]]:
    """(method, (AUC, ACC, F1) %) for one of our dataset names; [] if not in the paper."""
    column = PAPER_DATASET.get(dataset.upper().replace("-", "_"))
    if column is None:
        return []
    return [(method, cols[column]) for method, cols in TABLE2.items()]
