"""The console: one progress bar or one live status line per phase, and no library noise.

`quiet(verbose)` is called once by the CLI before any command runs. Without `-v` it silences what the
libraries print on their own: warnings (transformers' FutureWarnings, setuptools'), the datasets
`map` bars ("Building labels for train dataset", "Truncating train dataset"), the transformers and
Hub bars ("Loading weights", "Writing model shards", "Creating parquet from Arrow format") and
transformers' info logs. It sets the libraries' own switches (environment variables they read at
import, so nothing heavy is imported here) and calls their functions for the ones already imported.
With `-v` it changes nothing.

Each phase then shows its own bar (training: `TrainProgress`, generation, push) or `StatusLine`
(waiting for labelers).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from typing import TextIO

QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # also turns off transformers' own tqdm bars
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "PYTHONWARNINGS": "ignore",  # child processes: the embedded server, its worker
}
OURS = r"(loop|argilla_setup)(\.|$)"


def quiet(verbose: int = 0) -> None:
    """Silence library warnings, bars and info logs unless `verbose`; our own warnings stay."""
    if verbose:
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=OURS)
    if "transformers" in sys.modules:
        from transformers.utils import logging as tf_logging

        tf_logging.set_verbosity_error()
        tf_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        from datasets.utils import logging as ds_logging

        ds_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def train_progress(disable: bool = False):
    """A `TrainerCallback` that replaces transformers' `ProgressCallback`/`PrinterCallback`: one bar,
    step/total, the latest loss as its postfix, and no log dicts printed as lines."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class TrainProgress(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero and not disable:
                self.bar = tqdm(total=state.max_steps, desc="train", unit="step", dynamic_ncols=True)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.3f}", refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return TrainProgress()


def use_train_progress(trainer, *, disable: bool = False) -> None:
    """Swap the trainer's default progress/printer callbacks for `train_progress`.

    `disable` comes from the run config: `args.disable_tqdm` is also set by transformers itself when
    its logger is quieter than WARNING, which `quiet()` makes it."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for default in (ProgressCallback, PrinterCallback):
        trainer.remove_callback(default)
    trainer.add_callback(train_progress(disable=disable))


class StatusLine:
    """One line that changes: rewritten in place on a terminal; elsewhere (logs, CI) printed only
    when it changed and at most every `min_interval_s`, plus the last one on `close()`."""

    def __init__(
        self, stream: TextIO | None = None, *, min_interval_s: float = 10.0, tty: bool | None = None
    ):
        self.stream = sys.stderr if stream is None else stream
        self.tty = self.stream.isatty() if tty is None else tty
        self.min_interval_s = min_interval_s
        self._shown: str | None = None  # last text written
        self._pending: str | None = None  # newer text not written yet (not a TTY)
        self._shown_at = float("-inf")
        self._width = 0

    def update(self, text: str, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if text == self._shown:
            self._pending = None
            return
        if self.tty:
            pad = " " * max(self._width - len(text), 0)
            self.stream.write(f"\r{text}{pad}")
            self._width = len(text)
        elif now - self._shown_at >= self.min_interval_s:
            self.stream.write(text + "\n")
        else:
            self._pending = text
            return
        self.stream.flush()
        self._shown, self._shown_at, self._pending = text, now, None

    def close(self) -> None:
        """End the line (terminal) or print the last change not printed yet."""
        if self.tty and self._shown is not None:
            self.stream.write("\n")
        elif self._pending is not None:
            self.stream.write(self._pending + "\n")
            self._shown, self._pending = self._pending, None
        self.stream.flush()
