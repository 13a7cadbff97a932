"""Evaluation split across the ranks of one run (torchrun, accelerate launch, SLURM tasks) and gathered.

Each rank computes a share of every evaluator's rows; the results come back in the rows' order, so the main rank
scores and writes exactly what one process would. The share is strided over the rows sorted longest first: every rank
gets as many rows as the others (at most one more) with the same mix of lengths, so the ranks finish together, and
each rank's batches stay as free of padding as one process's (contiguous blocks would give one rank all the long
rows). With one process everything here is the identity.

The harness engine (`eval.engine=hf`) is split below the harness, at the model's requests: the harness itself runs as
one process on every rank (the same few-shot draws, which its own data-parallel mode would draw per rank, and the
same scoring over all rows), while its model wrapper computes only this rank's documents and gathers the others'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any, TypeVar

from .. import dist

T = TypeVar("T")


def share(lengths: Sequence[int]) -> list[int]:
    """The indices of the rows this rank computes, longest first (the order one process's batches take them in)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return order[dist.rank() :: dist.world_size()]


def _in_order(parts: list[list[tuple[int, Any]]], n: int) -> list[Any]:
    out: list[Any] = [None] * n
    seen = 0
    for i, value in chain.from_iterable(parts):
        out[i] = value
        seen += 1
    if seen != n:
        raise RuntimeError(f"the ranks returned {seen} of {n} evaluation rows")
    return out


def gather(mine: list[int], values: list[T], n: int) -> list[T] | None:
    """All `n` rows' values in row order on the main rank (each rank gives its rows `mine`); None on the others."""
    parts = dist.gather(list(zip(mine, values)))
    return None if parts is None else _in_order(parts, n)


def all_gather(mine: list[int], values: list[T], n: int) -> list[T]:
    """All `n` rows' values in row order, on every rank."""
    return _in_order(dist.all_gather(list(zip(mine, values))), n)


def split_requests(requests: Sequence[Any]) -> tuple[list[int], int]:
    """(indices of the requests this rank computes, how many documents they are). A document's requests (the choices
    of a multiple-choice question, which share one context) stay on one rank; a document's size is its text's."""
    docs: dict[tuple[Any, Any], list[int]] = {}
    for i, request in enumerate(requests):
        docs.setdefault((getattr(request, "task_name", None), getattr(request, "doc_id", i)), []).append(i)
    groups = list(docs.values())
    sizes = [sum(len(a) for i in g for a in requests[i].args if isinstance(a, str)) for g in groups]
    mine = share(sizes)
    return sorted(i for g in mine for i in groups[g]), len(mine)


def data_parallel(lm_class: type) -> type:
    """`lm_class` (the harness's HFLM) itself with one process; else a subclass whose requests are split across the
    ranks (the harness still sees one process: rank 0 of 1)."""
    if not dist.active():
        return lm_class

    class DataParallel(lm_class):  # type: ignore[misc, valid-type]
        docs_computed = 0

        def _split(self, compute: Callable[..., list], requests: list, disable_tqdm: bool = False) -> list:
            mine, docs = split_requests(requests)
            self.docs_computed += docs
            values = compute([requests[i] for i in mine], disable_tqdm or not dist.is_main()) if mine else []
            return all_gather(mine, values, len(requests))

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return self._split(super().loglikelihood, requests, disable_tqdm)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            return self._split(super().loglikelihood_rolling, requests, disable_tqdm)

        def generate_until(self, requests, disable_tqdm: bool = False):
            return self._split(super().generate_until, requests, disable_tqdm)

    return DataParallel


def docs_computed(lm: Any, everything: int) -> int:
    """The documents this rank computed since the last call (then counted from 0 again): its share under several
    ranks, else `everything`."""
    done = getattr(lm, "docs_computed", None)
    if done is None:
        return everything
    lm.docs_computed = 0
    return done


def generate(model, tokenizer, prompts: list[str], batch_size: int, max_new_tokens: int,
             desc: str) -> list[tuple[str, bool]]:
    """(reply, whether the model ended it) for this rank's prompts, given longest first. Under several ranks one batch
    at a time, with a stop signal agreed before each (a rank stopping alone would leave the others waiting)."""
    from . import generation

    if not dist.active():
        stopped: list[bool] = []
        replies = generation.generate(model, tokenizer, prompts, batch_size, max_new_tokens, desc, stopped=stopped)
        return list(zip(replies, stopped))
    rounds = dist.all_max([-(-len(prompts) // batch_size)])[0]
    out: list[tuple[str, bool]] = []
    for start in range(0, rounds * batch_size, batch_size):
        dist.check_interrupt("during evaluation")
        stopped = []
        batch = prompts[start : start + batch_size]
        # The stop was agreed just above: a rank checking its own flag again could stop alone and leave the others
        # in the next agreement's collective.
        replies = generation.generate(model, tokenizer, batch, batch_size, max_new_tokens, desc, stopped=stopped,
                                      check=lambda where: None)
        out += zip(replies, stopped)
    return out
