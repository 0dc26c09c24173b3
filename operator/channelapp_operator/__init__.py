"""The ChannelApp operator: reconciles ChannelApp resources and autoscales workers."""
