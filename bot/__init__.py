"""The Slack surface and runtime of DNA Bot: CLI, settings, Bolt app."""
