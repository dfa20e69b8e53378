"""A local Lambda Runtime API (no Docker) for infra/scripts/bench: runs a function binary the way
Lambda's provided.al2023 runtime does and times it.

It serves the runtime side of https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html:
GET  /2018-06-01/runtime/invocation/next            the next event (blocks until one is queued)
POST /2018-06-01/runtime/invocation/{id}/response   the function's answer
POST /2018-06-01/runtime/invocation/{id}/error      a failed invocation
POST /2018-06-01/runtime/init/error                 a failed start
and measures init time (spawn -> first /next), each invocation (event handed out -> answer) and
the process's peak RSS (VmHWM in /proc/PID/status).

Standalone: python3 bench/lambda_runtime.py <binary> <event.json> [invocations]
(the binary gets this process's environment plus the Lambda variables).
"""

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"


class Invocation:
    """One event on its way through the function: its answer arrives through the server."""

    def __init__(self, event):
        self.id = str(uuid.uuid4())
        self.body = json.dumps(event).encode()
        self.handed_out = None
        self.answered = threading.Event()
        self.ok = None
        self.answer = None
        self.elapsed_ms = None

    def finish(self, ok, body):
        self.elapsed_ms = (time.perf_counter() - self.handed_out) * 1000
        self.ok, self.answer = ok, body
        self.answered.set()


class Runtime:
    """The Runtime API on a free loopback port with one function process attached."""

    def __init__(self, binary, env, memory_mb=512, timeout_s=300):
        self.binary, self.env, self.memory_mb, self.timeout_s = binary, env, memory_mb, timeout_s
        self.events = queue.Queue()
        self.running = {}
        self.first_next = threading.Event()
        self.first_next_at = None
        self.init_error = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.process = None

    def _handler(runtime):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != f"{PREFIX}/invocation/next":
                    return self._reply(404, b'{"errorMessage":"unknown path"}')
                if runtime.first_next_at is None:
                    runtime.first_next_at = time.perf_counter()
                    runtime.first_next.set()
                invocation = runtime.events.get()
                if invocation is None:  # shutting down: the process is killed while it waits
                    return
                runtime.running[invocation.id] = invocation
                deadline = int(time.time() * 1000 + runtime.timeout_s * 1000)
                invocation.handed_out = time.perf_counter()
                self._reply(200, invocation.body, {
                    "Lambda-Runtime-Aws-Request-Id": invocation.id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline),
                    "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:bench",
                    "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
                })

            def do_POST(self):
                body = self._body()
                parts = self.path[len(PREFIX):].strip("/").split("/")
                if parts == ["init", "error"]:
                    runtime.init_error = body.decode(errors="replace")
                    runtime.first_next.set()
                    return self._reply(202, b"{}")
                if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    invocation = runtime.running.pop(parts[1], None)
                    if invocation is None:
                        return self._reply(400, b'{"errorMessage":"unknown request id"}')
                    self._reply(202, b"{}")
                    return invocation.finish(parts[2] == "response", body)
                self._reply(404, b'{"errorMessage":"unknown path"}')

            def _body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while (size := int(self.rfile.readline().strip().split(b";")[0], 16)) > 0:
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status, body, headers=None):
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def start(self, log):
        """Spawns the function; returns its init time in ms (spawn -> first /next)."""
        host, port = self.server.server_address
        name = os.path.basename(os.path.dirname(self.binary)) or "bench"
        env = dict(self.env)
        env.update({
            "AWS_LAMBDA_RUNTIME_API": f"{host}:{port}",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
            "AWS_EXECUTION_ENV": "AWS_Lambda_provided.al2023",
            "LAMBDA_TASK_ROOT": os.path.dirname(self.binary),
        })
        started = time.perf_counter()
        self.process = subprocess.Popen([self.binary], env=env, stdout=log, stderr=log)
        if not self.first_next.wait(60) or self.init_error is not None:
            raise RuntimeError(f"{self.binary} did not start: {self.init_error or 'no /next within 60 s'}")
        return (self.first_next_at - started) * 1000

    def invoke(self, event):
        """Hands one event to the function; returns the finished Invocation."""
        invocation = Invocation(event)
        self.events.put(invocation)
        if not invocation.answered.wait(self.timeout_s):
            raise RuntimeError(f"{self.binary}: no answer within {self.timeout_s} s")
        return invocation

    def peak_rss_kb(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return None

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.events.put(None)
        self.server.shutdown()
        self.server.server_close()


def main(binary, event_file, count=10):
    event = json.load(open(event_file))
    runtime = Runtime(os.path.abspath(binary), dict(os.environ))
    try:
        init_ms = runtime.start(sys.stderr)
        times = []
        for _ in range(count):
            invocation = runtime.invoke(event)
            times.append(invocation.elapsed_ms)
            status = "ok" if invocation.ok else "error"
        print(json.dumps({"init_ms": round(init_ms, 1), "invocations_ms": [round(t, 1) for t in times],
                          "last": status, "answer": invocation.answer.decode(errors="replace")[:500],
                          "peak_rss_kb": runtime.peak_rss_kb()}, indent=2))
    finally:
        runtime.stop()


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else 10)
