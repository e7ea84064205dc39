"""wrk with a generated Lua script: POST a JSON body, report percentiles as JSON.

wrk (C, epoll) costs far less CPU per request than any Python client, which matters
on a 2-core machine where the load generator shares the cores with what it measures.
Latency is request written -> response complete; with --check the Lua `response`
hook also counts 200 responses whose body lacks the expected bytes (streams that
ended without `data: [DONE]`).
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.procs import Procs

LUA = r"""
local body_file, token, expect = "%(body)s", "%(token)s", "%(expect)s"
local f = assert(io.open(body_file, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
if token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
%(extra_headers)s

local threads = {}
function setup(thread)
  table.insert(threads, thread)
%(spread_threads)s
end

function init(args)
  bad = 0
  non200 = 0
  sample = ""
end

%(response_hook)s

function done(summary, latency, requests)
  local bad_total, non200_total, smp = 0, 0, ""
  for _, t in ipairs(threads) do
    bad_total = bad_total + (t:get("bad") or 0)
    non200_total = non200_total + (t:get("non200") or 0)
    local s = t:get("sample")
    if s and s ~= "" and smp == "" then smp = s end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"bad_body":%%d,"non200":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"mean_us":%%f,"max_us":%%d,"sample":%%q}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    bad_total, non200_total, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max, smp))
end
"""

CHECK_HOOK = r"""
function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if sample == "" then sample = string.gsub(string.sub(body or "", 1, 200), "%c", " ") end
  elseif not string.find(body or "", expect, 1, true) then
    bad = bad + 1
    if sample == "" then sample = string.gsub(string.sub(body or "", 1, 200), "%c", " ") end
  end
end
"""


def script(path: Path, body_file: Path, token: str, expect: str = "", headers: dict[str, str] | None = None,
           ports: list[int] | None = None) -> Path:
    """ports: send thread i's connections to 127.0.0.1:ports[i % len(ports)] instead of the
    URL's address (several gateway instances from one wrk, one latency histogram)."""
    extra = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items())
    path.write_text(LUA % {"body": str(body_file), "token": token, "expect": expect, "extra_headers": extra,
                           "response_hook": CHECK_HOOK if expect else "", "spread_threads": spread_threads(ports)})
    return path


def spread_threads(ports: list[int] | None) -> str:
    """LUA's `spread_threads` slot: thread i connects to 127.0.0.1:ports[i % len(ports)]."""
    return "" if not ports else (
        f"  local ports = {{{', '.join(str(p) for p in ports)}}}\n"
        "  thread.addr = wrk.lookup(\"127.0.0.1\", tostring(ports[(#threads - 1) % #ports + 1]))[1]")


def run(procs: Procs, url: str, lua: Path, connections: int, duration: float, threads: int = 1,
        timeout: float = 10.0) -> dict[str, object]:
    argv = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max(1, round(duration))}s",
            f"--timeout={timeout:g}s", "-s", str(lua), url]
    out = procs.run(argv, timeout=duration + timeout + 30)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    raw = json.loads(line[len("BENCHJSON "):])
    secs = raw["duration_us"] / 1e6
    errors = {k: raw[k] for k in ("connect", "read", "write", "timeout", "bad_body", "non200") if raw[k]}
    if raw["status"] and not raw["non200"]:
        errors["status"] = raw["status"]
    return {
        "requests": raw["requests"],
        "elapsed_s": secs,
        "rps": raw["requests"] / secs if secs else 0.0,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "error_sample": raw["sample"],
        "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
    }
