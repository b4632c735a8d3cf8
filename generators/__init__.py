"""Generators: remediation scripts now; the LLM code generator and the improvement cycle later."""
