"""How a run stays within its disk budget: what to give up, in order, when it would not.

A run's size is known before its first epoch: each recorded epoch's maps, each kept
checkpoint, and the probe (and held-out samples). Over the budget, the recorder gives up, in
this order, only as much as it must:
    1. float16 maps -> q8 maps (attnviz.store.quant: half the disk, errors bounded);
    2. keeping K checkpoints -> keeping fewer, down to the last one;
    3. maps every epoch -> maps every k epochs (epoch 0 and the last always);
    4. checkpoints -> none (attention is still recorded; explain then needs the model).
It says what it gave up, and how to raise the budget. While a checkpoint is written the one
it replaces still exists: the disk briefly holds one checkpoint more than the run.
"""

from __future__ import annotations

from dataclasses import dataclass

MB = 2**20


@dataclass(frozen=True)
class Sizes:
    """Bytes of one recorded epoch's maps (float16 as captured, and q8), one checkpoint, and
    everything written once (probe, held-out samples, config)."""

    maps: int
    maps_q8: int
    checkpoint: int
    once: int


@dataclass(frozen=True)
class Plan:
    compact: bool  # maps as q8
    every: int  # record maps every k epochs
    keep: int  # checkpoints kept (0: all)
    checkpoints: bool  # False: none fit the budget
    size: int  # the run's bytes when training ends
    gave_up: tuple[str, ...]  # what was given up, as sentences

    def said(self, limit_mb: float) -> str | None:
        """One line for the user when anything was given up."""
        if not self.gave_up:
            return None
        return (f"to stay within max_run_mb={limit_mb:g} ({megabytes(self.size)} planned): "
                + "; ".join(self.gave_up) + ". Raise max_run_mb (or pass None) to keep them")


def megabytes(size: int) -> str:
    mb = size / MB
    return f"{mb:,.0f} MB" if mb >= 10 else f"{mb:.1f} MB"


def recorded_epochs(epochs: int, every: int) -> int:
    """Epochs whose maps are written: 0, every multiple of `every`, and the last."""
    if epochs <= 0:
        return 1
    return 1 + epochs // every + (epochs % every != 0)


def checkpoint_epochs(epochs: int, every: int) -> int:
    if every == 0 or epochs <= 0:
        return 0
    return epochs // every + (epochs % every != 0)


def run_size(sizes: Sizes, epochs: int, *, compact: bool, every: int, checkpoint_every: int,
             keep: int, step_maps: int = 0) -> int:
    """`step_maps`: records taken inside epochs (recording by steps), each one epoch's maps."""
    maps = sizes.maps_q8 if compact else sizes.maps
    kept = checkpoint_epochs(epochs, checkpoint_every)
    if keep:
        kept = min(kept, keep)
    return (sizes.once + (recorded_epochs(epochs, every) + step_maps) * maps
            + kept * sizes.checkpoint)


def fit(sizes: Sizes, epochs: int, limit: int | None, *, every: int, checkpoint_every: int,
        keep: int, compact_allowed: bool = True, step_maps: int = 0) -> Plan:
    """The least given up so that `epochs` of training stay within `limit` bytes (None: no
    limit). When even the least the recorder can do is over, that is the plan, said so.
    `step_maps`: the records recording by steps adds inside epochs (never thinned)."""
    def size(compact, every, keep, checkpoints=True):
        return run_size(sizes, epochs, compact=compact, every=every,
                        checkpoint_every=checkpoint_every if checkpoints else 0, keep=keep,
                        step_maps=step_maps)

    compact, gave_up = False, []
    checkpoints = True
    if limit is None or size(compact, every, keep) <= limit:
        return Plan(False, every, keep, True, size(False, every, keep), ())
    if compact_allowed and sizes.maps_q8 < sizes.maps:
        compact = True
        gave_up.append("multi-head maps are stored as q8 (each weight within 0.4 % of its "
                       "row's maximum) instead of float16")
        if size(compact, every, keep) <= limit:
            return Plan(compact, every, keep, True, size(compact, every, keep), tuple(gave_up))
    wanted = checkpoint_epochs(epochs, checkpoint_every)
    if wanted > 1 and (keep == 0 or keep > 1):
        fewer = next(k for k in range(min(keep or wanted, wanted) - 1, 0, -1)
                     if size(compact, every, k) <= limit or k == 1)
        gave_up.append(f"only the last {fewer} checkpoints are kept" if fewer > 1
                       else "only the last checkpoint is kept")
        keep = fewer
        if size(compact, every, keep) <= limit:
            return Plan(compact, every, keep, True, size(compact, every, keep), tuple(gave_up))
    for sparser in range(every + 1, max(epochs, every) + 1):
        if size(compact, sparser, keep) <= limit:
            gave_up.append(f"maps are recorded every {sparser} epochs (and the last), not "
                           f"every {every}")
            return Plan(compact, sparser, keep, True, size(compact, sparser, keep),
                        tuple(gave_up))
    sparsest = max(epochs, every)
    if sparsest != every:
        gave_up.append("maps are recorded at epoch 0 and the last only")
    if checkpoint_every and sizes.checkpoint and size(compact, sparsest, keep) > limit:
        checkpoints = False
        gave_up = [said for said in gave_up if "checkpoint" not in said]
        gave_up.append(f"no checkpoints are kept (one takes {megabytes(sizes.checkpoint)})")
    final = size(compact, sparsest, keep, checkpoints)
    if final > limit:
        gave_up.append(f"even so the run needs {megabytes(final)}")
    return Plan(compact, sparsest, keep, checkpoints, final, tuple(gave_up))
