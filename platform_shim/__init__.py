"""A local serverless-style platform for Python: services, durable workflows, event handlers."""
