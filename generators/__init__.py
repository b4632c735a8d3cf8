"""Generators: the LLM client, code generation (prompts, edits, the rules a change keeps, generation rounds),
validation, atomic deployment and rollback of a workspace, the improvement cycle, and remediation scripts from safe
templates. Never imports ``telemetry``: what it learns from arrives through the tools layer.
"""
