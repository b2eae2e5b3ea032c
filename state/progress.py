"""The whole copy's progress as a live tick carries it, and the one sentence that says it (terminal and Slack alike).

Sizes are the source's own (each table's heap, pg_relation_size): what streams through COPY is another count
(text or binary, TOAST included), so a table in flight counts at most its own size and the ETA is an estimate.
"""

from __future__ import annotations

from pydantic import BaseModel


class CopyProgress(BaseModel):
    bytes_done: int = 0  # finished tables and ranges in full, ranges in flight by what they streamed (capped)
    bytes_total: int = 0
    tables_done: int = 0
    tables_total: int = 0
    databases_listed: int = 0  # databases whose tables are known: until all are, the totals are lower bounds
    databases: int = 0
    bytes_resumed: int = 0  # kept from an earlier attempt: done, but not by this run, so not in the rate
    seconds: float = 0.0  # since the first table started streaming in this run

    @property
    def complete_totals(self) -> bool:
        return self.databases_listed >= self.databases

    @property
    def rate(self) -> float:
        """Bytes per second this run, by the sizes above."""
        return (self.bytes_done - self.bytes_resumed) / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds until the last table's data is in, at this run's rate; None while it cannot be told."""
        if not self.complete_totals or self.rate <= 0:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / self.rate)

    def line(self) -> str:
        """`copy: 12.3 MB of 45.6 MB (27%), 3 of 11 tables, 4.1 MB/s, ETA ~8s for the data`."""
        bound = "" if self.complete_totals else "at least "
        share = min(self.bytes_done / self.bytes_total, 1.0) if self.bytes_total else 0.0
        if self.tables_done < self.tables_total:
            share = min(share, 0.99)  # a table in flight is never 100%, whatever the estimates say
        text = (f"copy: {megabytes(self.bytes_done)} of {bound}{megabytes(self.bytes_total)} ({share:.0%}), "
                f"{self.tables_done} of {bound}{self.tables_total} tables, {megabytes(int(self.rate))}/s")
        eta = self.eta_seconds
        if eta is not None:
            text += f", ETA ~{duration(eta)} for the data"
        else:
            text += f", ETA once all {self.databases} databases are listed ({self.databases_listed} so far)"
        return text


def megabytes(size: int) -> str:
    """Every size pgmove shows, one way."""
    return f"{size / 1e6:.1f} MB"


def duration(seconds: float) -> str:
    """`8s`, `2m05s`, `1h04m`: short enough for a status line."""
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
