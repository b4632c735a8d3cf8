"""Code generation: prompts for the model, its reply parsed into edits and applied to a copy of the workspace,
the rules a change must keep, the checks between rounds, and the rounds themselves (generate, validate, retry).
"""
