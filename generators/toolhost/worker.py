"""The code of a generated tool's worker: it runs in the jail, never in the server.

It imports the tool's module from a read-only copy (``args``: the copy's root, the module's dotted name, the
function's name, the most bytes one answer may have), says once what the tool is — its docstring and the JSON
schemas of its arguments and its result, both made by pydantic from the function's annotations — and then answers
one call per line of stdin, as one line of stdout: ``{"id", "ok": true, "result"}`` or ``{"id", "ok": false, "kind":
"invalid" | "failed" | "too_large", "error"}``. Whatever the tool prints goes to stderr, never into the answers. A
result that is not a JSON object is wrapped as ``{"result": …}`` (as MCP's structured output wants an object).
"""

WORKER = r"""
import asyncio, inspect, json, typing
answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
os.dup2(2, 1)  # what the tool prints goes to stderr
root, module_name, function_name, max_bytes = args[0], args[1], args[2], int(args[3])
sys.path.insert(0, root)


def say(message):
    answers.write(json.dumps(message, separators=(",", ":")) + "\n")
    answers.flush()


try:
    import importlib
    import pydantic

    function = getattr(importlib.import_module(module_name), function_name)
    hints = typing.get_type_hints(function, include_extras=True)
    fields = {}
    for name, parameter in inspect.signature(function).parameters.items():
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[name] = (hints.get(name, typing.Any), default)
    config = pydantic.ConfigDict(extra="forbid")
    arguments = pydantic.create_model(function_name + "Arguments", __config__=config, **fields)
    result = pydantic.TypeAdapter(hints.get("return", typing.Any))
    output = result.json_schema()
    wrapped = output.get("type") != "object"
    if wrapped:
        output = {"type": "object", "properties": {"result": output}, "required": ["result"]}
    say({"ready": True, "description": inspect.getdoc(function) or "", "input_schema": arguments.model_json_schema(),
         "output_schema": output, "wrapped": wrapped})
except BaseException as exc:
    say({"ready": False, "error": (type(exc).__name__ + ": " + str(exc))[:2000]})
    raise SystemExit(1)

for line in sys.stdin:
    request = json.loads(line)
    try:
        given = arguments.model_validate(request["arguments"])
    except pydantic.ValidationError as exc:
        say({"id": request["id"], "ok": False, "kind": "invalid", "error": str(exc)[:2000]})
        continue
    try:
        value = function(**{name: getattr(given, name) for name in fields})
        if inspect.isawaitable(value):
            value = asyncio.run(value)
        data = result.dump_python(value, mode="json")
    except Exception as exc:  # ValueError: the tool's refusal of input it cannot handle; anything else: a crash
        error = (type(exc).__name__ + ": " + str(exc))[:2000]
        kind = "refused" if isinstance(exc, ValueError) and not isinstance(exc, pydantic.ValidationError) else "crashed"
        say({"id": request["id"], "ok": False, "kind": kind, "error": error})
        continue
    answer = json.dumps({"id": request["id"], "ok": True, "result": {"result": data} if wrapped else data},
                       separators=(",", ":"))
    if len(answer) > max_bytes:
        say({"id": request["id"], "ok": False, "kind": "too_large",
             "error": "the result is %d bytes; a call may answer at most %d" % (len(answer), max_bytes)})
        continue
    answers.write(answer + "\n")
    answers.flush()
"""
