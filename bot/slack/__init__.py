"""The Slack surface: the Bolt app and its listeners (the Block Kit renderers are `bot.blocks`)."""
