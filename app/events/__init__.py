"""Outgoing events: subscriptions, the transactional outbox, and its delivery."""
