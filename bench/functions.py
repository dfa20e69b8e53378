"""Section 3 of the bench: each Lambda function's release binary under the local Runtime API
(lambda_runtime.py) on the deployed configuration (S3 templates, DynamoDB on moto): binary size,
init time, first and warm invocations of its main event, peak RSS, AWS calls of the first."""

import json
import os

from lambda_runtime import Runtime
from rig import ROOT, percentile

EVENTS = os.path.join(ROOT, "events")


def event(name, body=None):
    document = json.load(open(os.path.join(EVENTS, name)))
    if body is not None:
        document["body"] = json.dumps(body)
    return document


def main_events(kept):
    """Each function's main event, naming what the deployed configuration's run created."""
    ids, machines = kept
    return {
        "templates": ("getAvailableTemplates", event("get-available-templates.json")),
        "requests": ("getRequestStatus (5 requests x 10)",
                     event("get-request-status.json", {"requests": [{"requestId": i} for i in ids]})),
        "machines": ("getReturnRequests (50 machines)", event("get-return-requests.json", {"machines": machines})),
        "reconciler": ("reconcile pass (schedule)", event("reconcile-schedule.json")),
    }


def failed(invocation):
    if not invocation.ok:
        return invocation.answer.decode(errors="replace")[:300]
    answer = json.loads(invocation.answer or b"null")
    if isinstance(answer, dict) and "statusCode" in answer and answer["statusCode"] >= 400:
        return f"status {answer['statusCode']}: {str(answer.get('body'))[:300]}"
    return None


def aws_calls_of(log_path):
    """AWS calls of the first invocation: its EMF line in the function's stdout."""
    for line in open(log_path, errors="replace"):
        if '"_aws"' in line:
            return int(json.loads(line)["AwsCalls"])
    return None


def measure(name, binary, env, main_event, sizes, workdir):
    # A reconciler pass covers every unfinished request of the whole run: fewer of them.
    starts, calls = (min(sizes.lambda_starts, 3), min(sizes.calls, 5)) if name == "reconciler" else (sizes.lambda_starts, sizes.calls)
    inits, firsts, warm, rss, first_calls = [], [], [], [], []
    for start in range(starts):
        runtime = Runtime(binary, env, memory_mb=512, timeout_s=sizes.call_timeout)
        log_path = os.path.join(workdir, f"{name}-{start}.log")
        try:
            with open(log_path, "w") as log:
                inits.append(runtime.start(log))
                first = runtime.invoke(main_event)
                if (error := failed(first)) is not None:
                    raise RuntimeError(f"{name}: {error}")
                firsts.append(first.elapsed_ms)
                if start == starts - 1:
                    warm = [runtime.invoke(main_event).elapsed_ms for _ in range(calls)]
                rss.append(runtime.peak_rss_kb())
        finally:
            runtime.stop()
        first_calls.append(aws_calls_of(log_path))
    return {
        "binary_mb": round(os.path.getsize(binary) / 1e6, 2),
        "init_ms_p50": round(percentile(inits, 50), 1), "init_ms_max": round(max(inits), 1),
        "first_invocation_ms_p50": round(percentile(firsts, 50), 1),
        "first_invocation_aws_calls": first_calls[0],
        "invocation_ms_p50": round(percentile(warm, 50), 1), "invocation_ms_p99": round(percentile(warm, 99), 1),
        "invocations": len(warm), "starts": len(inits),
        "peak_rss_mb": round(max(rss) / 1024, 1),
    }


def run(binaries, env, kept, sizes, workdir):
    print("lambda functions under the local Runtime API", flush=True)
    results = {}
    env = {k: v for k, v in env.items() if k not in ("HOSTFACTORY_METRICS", "HOSTFACTORY_LISTEN")}
    for name, (case, main_event) in main_events(kept).items():
        try:
            results[name] = dict(measure(name, binaries[name], env, main_event, sizes, workdir), event=case)
        except RuntimeError as err:  # a failed or timed-out invocation: reported, the others still run
            results[name] = {"event": case, "error": str(err)[:300]}
        print(f"  {name}: {results[name]}", flush=True)
    return results
