"""The task folders hold workspaces whose tests import their own ``components`` package: pytest must not collect
them from here (the validation sandbox and the hidden checks run them in their workspace)."""

collect_ignore = ["tasks"]
