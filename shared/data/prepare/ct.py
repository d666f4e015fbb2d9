"""CT-IQAD = COVID-CT (Zhao et al. 2020; folders `CT_COVID`, `CT_NonCOVID`, images taken
from papers: LQ) + SARS-CoV-2 CT-scan (Soares et al. 2020; folders `COVID`,
`non-COVID`, hospital scans: HQ). Table 1 uses 800 SARS images per class
(`sars_per_class`, 0 keeps all). Protocol: random 70/10/20."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.config import preset
from shared.data.prepare.build import Entry, FileIndex, Options, sample, write_dataset
from shared.errors import UserError

# folder name -> (diagnosis, quality, source)
FOLDERS = {
    "ct_covid": (1, 1, "covid-ct"),
    "ct_noncovid": (0, 1, "covid-ct"),
    "covid": (1, 0, "sars-cov-2-ct"),
    "non-covid": (0, 0, "sars-cov-2-ct"),
}


def prepare(source: Path, out: Path, opts: Options) -> Path:
    cfg = preset("IQAD_CT").dataset
    index = FileIndex(source)
    per_class = int(opts.extra.get("sars_per_class", 800))  # type: ignore[call-overload]
    rng = np.random.default_rng(opts.seed)
    entries: list[Entry] = []
    for folder, (diagnosis, quality, origin) in FOLDERS.items():
        dirs = [d for d in index.directories(folder) if index.images_in(d)]
        if not dirs:
            release = "COVID-CT" if folder.startswith("ct_") else "SARS-CoV-2 CT-scan"
            raise UserError(
                f"{release} folder {folder!r} with images not found under the "
                "source folder (unpack both releases there)",
                path=source,
            )
        images = index.images_in(dirs[0])
        if origin == "sars-cov-2-ct":
            images = sample(images, per_class, rng)
        entries += [
            Entry(p.name, diagnosis, diagnosis, quality, src=p, source=origin) for p in images
        ]
    return write_dataset(
        cfg,
        entries,
        out,
        opts,
        {"from": "covid-ct+sars", "source": str(source), "sars_per_class": per_class},
    )
