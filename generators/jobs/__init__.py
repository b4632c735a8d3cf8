"""Work a cycle hands out: validation jobs, run in this process (one server, SQLite) or by ``self-building-mcp worker``
processes that take them from a queue in PostgreSQL (several replicas, issue 17). See :mod:`.validation` for the job
itself, :mod:`.queue_pg` for the queue and :mod:`.worker` for the workers."""

from generators.jobs.validation import LocalValidation, Validation, ValidationJob

__all__ = ["LocalValidation", "Validation", "ValidationJob"]
