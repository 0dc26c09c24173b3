"""The ChannelApp operator: reconciles ChannelApp resources and scales workers from queue depth."""
