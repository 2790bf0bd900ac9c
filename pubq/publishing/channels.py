"""The configured channel types, each with its adapter built on first use (once per process)."""

from __future__ import annotations

from .adapters.base import ChannelTypeService, resolve_adapter
from .settings import PublishingSettings


class ChannelRegistry:
    def __init__(self, settings: PublishingSettings) -> None:
        self.settings = settings
        self._services: dict[str, ChannelTypeService] = {}

    def get(self, code: str) -> ChannelTypeService:
        """The adapter service of a configured channel type (built once per process)."""
        service = self._services.get(code)
        if service is None:
            channel_type = self.settings.channel_type(code)
            adapter_class = resolve_adapter(channel_type.adapter, f"publishing.channel_types.{code}.adapter")
            service = self._services[code] = ChannelTypeService(channel_type, adapter_class(channel_type))
        return service

    def forget_inherited(self) -> None:
        """In a forked child: drop the parent's adapters (they may hold its sockets) without closing them."""
        self._services = {}

    def close(self) -> None:
        for service in self._services.values():
            service.adapter.close()
        self._services = {}
