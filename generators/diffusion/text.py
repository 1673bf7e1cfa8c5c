"""Offline text handling: the LDM BERT tokeniser and text encoder, and truncation accounting.

XReal and Cheff tokenise with the ``bert-base-uncased`` vocabulary (loaded from the local
``bert-tokenizer`` artifact, ``vocab.txt``) exactly as their ``BERTTokenizer``:
``truncation=True, max_length=150, padding="max_length"`` — so a longer prompt keeps its
first 148 word pieces between [CLS] and [SEP] — and feed the ids to the encoder without an
attention mask (padding positions are attended to, as in the original). Every truncated
prompt is counted and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from xreal_bench.errors import UserFacingError
from xreal_bench.weights import Artifact

BERT_TOKENIZER = Artifact(
    name="bert-tokenizer",
    path="tokenizers/bert-base-uncased",
    kind="dir",
    files=("vocab.txt",),
    source="https://huggingface.co/google-bert/bert-base-uncased (vocab.txt, tokenizer_config.json)",
    hub_id="google-bert/bert-base-uncased",
    fetch_files=("vocab.txt", "tokenizer_config.json"),
    license="Apache-2.0",
    description="BERT tokenizer vocabulary used by XReal/Cheff's text encoder",
)


class TruncationCounter:
    """Counts prompts longer than a tokeniser's limit and logs each batch that had some."""

    def __init__(self, tokenizer, max_length: int, log: logging.Logger, model: str):
        self.tokenizer, self.max_length, self.log, self.model = tokenizer, max_length, log, model
        self.prompts = 0
        self.truncated = 0

    def count(self, prompts: Sequence[str]) -> list[int]:
        """Record a batch; returns, per prompt, how many tokens truncation cuts (0 for most)."""
        lengths = [len(ids) for ids in self.tokenizer(list(prompts), truncation=False)["input_ids"]]
        over = [n for n in lengths if n > self.max_length]
        self.prompts += len(prompts)
        self.truncated += len(over)
        if over:
            self.log.warning(
                "%s: %d of %d prompt(s) exceed %d tokens (longest %d) and are truncated as the original does "
                "(%d truncated so far)",
                self.model,
                len(over),
                len(prompts),
                self.max_length,
                max(over),
                self.truncated,
            )
        return [max(n - self.max_length, 0) for n in lengths]


def load_bert_tokenizer(folder: Path):
    """``BertTokenizerFast`` from a local folder holding ``vocab.txt`` (lower-casing as bert-base-uncased)."""
    from transformers import BertTokenizerFast

    try:
        return BertTokenizerFast.from_pretrained(str(folder), local_files_only=True, do_lower_case=True)
    except (OSError, ValueError) as exc:
        raise UserFacingError(f"cannot load the BERT tokenizer from {folder}: {exc}") from None


class BertPromptEncoder:
    """Prompts -> ``(B, max_length, width)`` float32 contexts through the LDM BERT encoder.

    Contexts of recently seen prompts are kept (label prompts and the empty unconditional
    prompt repeat across a run), so the 32-layer encoder runs once per distinct prompt; each
    prompt is encoded on its own, so its context is bit-identical whatever else is in the batch.
    """

    def __init__(
        self, tokenizer, encoder, *, max_length: int, device: torch.device, log: logging.Logger, model: str, cache_size: int = 512
    ):
        positions = encoder.config.max_position_embeddings
        if max_length > positions:
            raise UserFacingError(f"{model}: max_tokens={max_length} exceeds the text encoder's {positions} positions")
        self.tokenizer, self.encoder, self.max_length, self.device = tokenizer, encoder, max_length, device
        self.truncation = TruncationCounter(tokenizer, max_length, log, model)
        self.cache: dict[str, torch.Tensor] = {}
        self.cache_size = cache_size

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(
            list(prompts), truncation=True, max_length=self.max_length, padding="max_length", return_tensors="pt"
        )["input_ids"]

    def tokens_cut(self, prompts: Sequence[str]) -> list[int]:
        """Per prompt, the tokens truncation cuts (counted and logged once per call)."""
        return self.truncation.count(prompts)

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:
        new = sorted({p for p in prompts if p not in self.cache})
        if len(self.cache) + len(new) > self.cache_size:
            self.cache.clear()
        for prompt in new:  # one at a time: a context never depends on which prompts it was batched with
            ids = self.tokenize([prompt]).to(self.device)
            self.cache[prompt] = self.encoder(input_ids=ids, return_dict=False)[0][0].float()
        return torch.stack([self.cache[p] for p in prompts])
