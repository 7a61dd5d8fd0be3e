"""The pipeline spec language: its schema, cron expressions, estimators and trigger ids."""
