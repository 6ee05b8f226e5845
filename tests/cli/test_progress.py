"""The CLI's progress bars: what a person sees while a round downloads, trains and uploads."""

from __future__ import annotations

import io

from rich.console import Console

from backend.cli import common as cli_common


def test_stage_bars_show_bytes_and_steps(monkeypatch) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    monkeypatch.setattr(cli_common, "err", console)
    with cli_common.stage_progress() as report:
        report("download", 512 * 1024, None)  # IPFS streams without a known size
        report("train", 7, 20)
        report("upload", 3 * 1024, 3 * 1024)
        console.file.flush()
        shown = screen.getvalue()
    assert "download" in shown and "512.0 KiB" in shown
    assert "train" in shown and "7/20 steps" in shown
    assert "upload" in shown and "3.0 KiB / 3.0 KiB" in shown
