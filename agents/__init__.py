"""Incident pipeline and Q&A agent (observer, analyst, fixer, explainer)."""
