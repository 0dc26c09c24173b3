"""Queue-depth autoscaling: one pure policy shared by the operator and ``channelapp run``."""

from channelapp.autoscale.policy import Decision, ScalingPolicy, ScalingState, decide, raw_desired

__all__ = ["Decision", "ScalingPolicy", "ScalingState", "decide", "raw_desired"]
