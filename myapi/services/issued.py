"""A new row and its secret, which is in the creating answer only (API keys, webhook signing secrets)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Issued:
    """``item`` (an ApiKey, a Webhook) and the secret shown once; reads as the item otherwise (marshalling)."""

    item: object
    secret: str

    def __getattr__(self, name: str):
        return getattr(self.item, name)
