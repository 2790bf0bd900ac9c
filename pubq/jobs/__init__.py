"""pubq's own jobs (registered by every job registry as ``pubq.jobs.<Name>``)."""

from .pipeline import CopyAssetJob, PubArticleJob, SourceCallbackJob, UploadAssetJob

__all__ = ["CopyAssetJob", "PubArticleJob", "SourceCallbackJob", "UploadAssetJob"]
