"""The federation's tables: one row per round, and what differential privacy spent."""

from __future__ import annotations

from shared.report.document import Block, Paragraph, Table
from shared.report.format import megabytes, number
from shared.report.rundir import RunData


def round_table(run: RunData) -> Table:
    """One row per round: status, replies, global and server AUC, bytes, epsilon."""
    eps: dict[int, float] = {}
    for series in run.epsilon.values():
        for rnd, m in series:
            eps[rnd] = max(eps.get(rnd, float("-inf")), m["epsilon"])
    rows = []
    for r in run.rounds:
        glob, srv = r.get("global") or {}, r.get("server_eval") or {}
        replies = r.get("replies") or {}
        rows.append(
            [
                str(r["round"]),
                str(r.get("status", "-")),
                f"{replies.get('train_ok', '-')}/{replies.get('sampled', '-')}",
                number(glob.get("auc")),
                number(srv.get("auc")),
                megabytes(r.get("bytes_down")),
                megabytes(r.get("bytes_up")),
                number(eps.get(int(r["round"]))),
            ]
        )
    header = ["round", "status", "sites ok", "global AUC", "server AUC", "MB down", "MB up"]
    return Table(header + ["max epsilon"], rows, "Per round (from metrics.json); MB = 10^6 bytes.")


def privacy_blocks(rounds: list[dict]) -> list[Block]:
    """Epsilon per site per round (sample-level DP, 'stopped' = budget spent) and the
    client-level epsilon; nothing when DP was off."""
    names = sorted(
        {n for r in rounds for n, s in (r.get("sites") or {}).items()
         if "dp_epsilon" in ((s or {}).get("train") or {})}
    )  # fmt: skip
    client = [r["client_dp"] for r in rounds if r.get("client_dp")]
    blocks: list[Block] = []
    if names:
        delta = next(
            s["train"]["dp_delta"]
            for r in rounds
            for s in (r.get("sites") or {}).values()
            if "dp_delta" in ((s or {}).get("train") or {})
        )
        rows = []
        for r in rounds:
            cells = [str(r["round"])]
            for name in names:
                site = (r.get("sites") or {}).get(name) or {}
                eps = number((site.get("train") or {}).get("dp_epsilon"))
                stopped = str(site.get("status", "")).startswith("stopped")
                cells.append(eps + (" (stopped)" if stopped else ""))
            rows.append(cells)
        blocks.append(
            Table(
                ["round", *names],
                rows,
                f"Sample-level DP: epsilon spent per site (delta {delta:g}); 'stopped' = "
                "privacy budget spent, the site no longer trains.",
            )
        )
    if client:
        last = client[-1]
        blocks.append(
            Paragraph(
                f"Client-level DP: epsilon {number(last['client_epsilon'])} at delta "
                f"{last['delta']:g} after {int(last['releases'])} noisy aggregate(s) "
                f"(clipping norm {last['clipping_norm']:g})."
            )
        )
    return blocks
