"""Training logs: a CSV row per epoch, a training-curve PNG, optional TensorBoard."""

from __future__ import annotations

import csv
import importlib.util
import io
import math
from pathlib import Path
from typing import Any

from medseg.io import atomic_path, write_text_atomic


class EpochLog:
    """Collects one row per epoch and rewrites ``log.csv`` and ``curve.png`` atomically.

    Args:
        out_dir: folder of the run.
        tensorboard: also write TensorBoard events under ``out_dir/tensorboard`` (only if
            the ``tensorboard`` package is installed).
        rows: rows of an earlier run (when resuming).
    """

    def __init__(self, out_dir: Path, *, tensorboard: bool = False, rows: list[dict[str, Any]] | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.csv_path = self.out_dir / "log.csv"
        self.png_path = self.out_dir / "curve.png"
        self.rows: list[dict[str, Any]] = list(rows or [])
        self.writer = None
        if tensorboard and importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """Rows of an existing ``log.csv`` (numbers parsed)."""
        if not path.exists():
            return []
        with path.open(newline="") as fh:
            return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(fh)]

    def append(self, row: dict[str, Any]) -> None:
        """Add an epoch's row; rewrite the CSV and the curve."""
        self.rows.append(row)
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, restval="")
        w.writeheader()
        for r in self.rows:
            w.writerow({k: _format(v) for k, v in r.items()})
        write_text_atomic(self.csv_path, buf.getvalue())
        self._plot()
        if self.writer is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "epoch" and not math.isnan(float(v)):
                    self.writer.add_scalar(k, v, int(row["epoch"]))
            self.writer.flush()

    def _plot(self) -> None:
        import matplotlib.pyplot as plt

        fig = self.figure()
        with atomic_path(self.png_path) as tmp:
            fig.savefig(tmp, dpi=80)
        plt.close(fig)

    def figure(self) -> Any:
        """The training-curve figure: loss per epoch, and validation on a right axis when there is any."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        epochs = [r["epoch"] for r in self.rows]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(epochs, [r["train_loss"] for r in self.rows], label="train loss", color="tab:blue")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        for key in ("val_dice_mean", "val_accuracy"):
            pts = [
                (r["epoch"], r[key])
                for r in self.rows
                if isinstance(r.get(key), (int, float)) and not math.isnan(r[key])
            ]
            if pts:  # a right axis only when there is something to show on it
                ax2 = ax.twinx()
                ax2.plot(*zip(*pts), "o-", label=key.replace("_", " "), color="tab:green")
                ax2.set_ylabel("validation")
                ax2.set_ylim(0, 1)
        fig.legend(loc="upper right")
        fig.tight_layout()
        return fig

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()


def _format(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def _number(v: str) -> Any:
    if v == "":
        return float("nan")
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f
