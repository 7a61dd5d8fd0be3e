"""Read models that combine domains: a pipeline's status at a glance."""
