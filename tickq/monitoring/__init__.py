"""Queue monitoring: the loop that measures the queues, keeps snapshots and raises alerts, and
the channels alerts go out through. The decisions themselves (thresholds, cooldowns) are the
pure `tickq.engine.monitor`."""

from __future__ import annotations

from tickq.monitoring.channels import (
    CHANNELS,
    AlertChannels,
    ChannelResult,
    DeliveryTracker,
    Outcome,
)
from tickq.monitoring.service import (
    MonitorService,
    RaisedAlert,
    always_leader,
    prune_monitor_data,
    thresholds_from_settings,
)

__all__ = ["CHANNELS", "AlertChannels", "ChannelResult", "DeliveryTracker", "MonitorService",
           "Outcome", "RaisedAlert", "always_leader", "prune_monitor_data",
           "thresholds_from_settings"]
