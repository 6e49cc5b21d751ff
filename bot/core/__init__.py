"""The service layer the CLI and the Slack listeners both call (answers, settings, checks, who may act)."""
