"""Embeddings, offline: vectors for a few texts, and the nearest one to a
query by cosine similarity.

The deterministic provider embeds with stable hash vectors (the same text,
the same vector). Run it with ``python examples/embeddings.py``.
"""

from __future__ import annotations

import math

import palyra

DOCS = ["the cat sat on the mat", "stock prices fell today", "a cat on a mat"]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def main() -> None:
    with palyra.Palyra(ledger=palyra.MemoryLedger()) as client:
        found = client.embed(DOCS)
        vectors = [item.embedding for item in found.data]
        print(f"{len(vectors)} vectors of {len(vectors[0])} dimensions")
        query = client.embed("the cat sat on the mat").data[0].embedding
        scores = [cosine(query, v) for v in vectors]
        best = max(range(len(DOCS)), key=scores.__getitem__)
        print(f"nearest: {DOCS[best]!r} ({scores[best]:.3f})")
        print("usage:", found.usage.prompt_tokens, "tokens")


if __name__ == "__main__":
    main()
