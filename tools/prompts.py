"""The ``diagnose_system`` prompt (status → performance analysis → remediation script), argument completion, and
the answer to a prompt name the server does not have."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.types import INVALID_PARAMS, Completion, CompletionArgument, PromptReference, ResourceTemplateReference

PLATFORMS = ("auto", "bash", "powershell")
SYMPTOMS = (
    "high CPU usage",
    "out of memory",
    "disk full",
    "slow responses",
    "GPU overheating",
    "GPU out of memory",
    "service keeps crashing",
)
CompletionHandler = Callable[
    [PromptReference | ResourceTemplateReference, CompletionArgument, Any], Awaitable[Completion | None]
]
MAX_COMPLETIONS = 100  # the protocol's cap per response
MAX_NAME_ECHO = 64  # of an unknown prompt name, what the error repeats


def complete_argument(prompt: str, argument: str, prefix: str) -> list[str]:
    """Values for a prompt argument that start with ``prefix`` (case-insensitive)."""
    if prompt != "diagnose_system":
        return []
    choices = {"platform": PLATFORMS, "symptom": SYMPTOMS}.get(argument, ())
    return [c for c in choices if c.lower().startswith(prefix.lower())][:MAX_COMPLETIONS]


def unknown_prompts(server: MCPServer) -> ServerMiddleware[Any]:
    """Middleware answering ``prompts/get`` for a name the server lacks with invalid params (-32602), naming the
    prompts it has. Without it the SDK turns its own ``ValueError("Unknown prompt")`` into JSON-RPC code 0 and logs a
    traceback at ERROR, as if the server had crashed."""

    async def refuse_unknown_prompts(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        name = ctx.params.get("name") if ctx.method == "prompts/get" and isinstance(ctx.params, dict) else None
        if isinstance(name, str):
            known = sorted(prompt.name for prompt in await server.list_prompts())
            if name not in known:
                shown = name if len(name) <= MAX_NAME_ECHO else name[:MAX_NAME_ECHO] + "..."
                raise MCPError(
                    INVALID_PARAMS,
                    f"Unknown prompt {shown!r}. This server's prompts: {', '.join(known) or 'none'} "
                    "(prompts/list describes them and their arguments).",
                )
        return await call_next(ctx)

    return refuse_unknown_prompts


def register(server: MCPServer) -> None:
    """Add the prompts, the completion handler and the unknown-prompt answer to ``server``."""
    server.middleware.append(unknown_prompts(server))

    @server.prompt(title="Diagnose this system")
    def diagnose_system(symptom: str = "", platform: str = "auto") -> str:
        """Walk an agent from the system status to the bottleneck to a remediation script a human can run.

        symptom: what the user noticed, in their words (optional). platform: auto, bash or powershell.
        """
        concern = f'The user reports: "{symptom.strip()}".\n\n' if symptom.strip() else ""
        shell = platform if platform in PLATFORMS else "auto"
        return f"""{concern}Diagnose this host step by step with the self-building-mcp tools:

1. Call get_system_status. Read `verdict` and `reasons`; note CPU, memory, the fullest disk, I/O rates and GPUs.
2. Call get_monitoring_status and query_monitoring_events (since="1h") to see what has been happening. If
   monitoring is not running and the problem comes and goes, call start_monitoring.
3. Call analyze_system_performance. For each bottleneck, read its evidence and suggestions.
4. Call get_top_processes (sort_by="cpu" or "memory") to name the processes behind it.
5. Call list_script_templates, pick the `remediation_template` of the worst bottleneck, and call generate_script
   with platform="{shell}" and the parameters it needs (a PID or process name from step 4, a path, ...).
6. Show the user the diagnosis (figures, cause) and the script. It runs as a dry run by default; explain that
   they must re-run it with --apply (bash) or -Apply (PowerShell) to act, and what it will change.
   Offer save_script to store it in the workspace's scripts/ folder. Never claim the fix was applied."""

    async def complete(
        ref: PromptReference | ResourceTemplateReference, argument: CompletionArgument, context: Any
    ) -> Completion | None:
        if not isinstance(ref, PromptReference):
            return None
        values = complete_argument(ref.name, argument.name, argument.value)
        return Completion(values=values, total=len(values), has_more=False)

    # MCPServer.completion() carries no type annotations in mcp 2.3.
    register_completion: Callable[[CompletionHandler], object] = server.completion()  # type: ignore[no-untyped-call]
    register_completion(complete)
