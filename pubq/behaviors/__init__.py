"""Behaviours: objects that subscribe several handlers to a queue's events at once (Yii's ``as log``)."""
