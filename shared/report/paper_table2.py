"""MKCNet paper, Table 2: published AUC / ACC / macro-F1 (%) per dataset and method.

Source: Che, Chen and Chen, "Image Quality-aware Diagnosis via Meta-knowledge
Co-embedding", CVPR 2023, Table 2 (selection of methods), read from the shipped
`shared/reference/table2_paper_results.tsv`. These numbers are the paper's, never
this project's results.

The paper scores binary tasks (CT, CXR) the authors' way: AUC from hard
predictions and binary F1 (`auc_hard_compat` / `f1_compat` in our metrics).
"""

from __future__ import annotations

import csv
from functools import cache

from shared.reference_files import reference_file

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


@cache
def table2() -> dict[str, dict[str, tuple[float, float, float]]]:
    """method -> paper dataset -> (AUC, ACC, F1) in percent, from the shipped TSV.

    Read on first use, not at import: a Flower App Bundle (the deployed ServerApp)
    carries only code, and its report then leaves this table out (FileNotFoundError)."""
    path = reference_file("table2_paper_results.tsv")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return {
        row["method"]: {
            column: tuple(float(row[f"{column}_{m}"]) for m in METRICS)  # type: ignore[misc]
            for column in PAPER_DATASET.values()
        }
        for row in rows
    }


def paper_rows(dataset: str) -> list[tuple[str, tuple[float, float, float]]]:
    """(method, (AUC, ACC, F1) %) for one of our dataset names; [] if not in the paper."""
    column = PAPER_DATASET.get(dataset.upper().replace("-", "_"))
    if column is None:
        return []
    return [(method, cols[column]) for method, cols in table2().items()]
