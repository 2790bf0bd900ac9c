"""pub-article: push the recorded callback after success; fail only that account finally."""

from __future__ import annotations

from .upload_asset import UploadAssetEventHandler


class PubArticleEventHandler(UploadAssetEventHandler):
    """Same per-row contract as upload-asset: follow-ups after success, one row → 3 on final failure."""
