"""Sections 1, 2 and 4 of the bench, per configuration: AWS calls and wall time of each
HostFactory call as Symphony makes it, the 10,000-machine poll, and the server's throughput."""

import http.client
import json
import os
import subprocess
import threading
import time
from urllib.parse import urlparse

from lambda_runtime import Runtime
from rig import ROOT, SCALE_TEMPLATE, STATUS_TEMPLATE, Server, percentile, summary

# requestMachines per provider API: the sample template that uses it.
PROVIDER_APIS = [
    ("RunInstances", "OnDemand-C5Large"),
    ("EC2Fleet instant", "EC2Fleet-Instant"),
    ("SpotFleet", "Spot-Compute-Mixed"),
    ("ASG", "ASG-OnDemand-Arm"),
]


def request(server, template, count):
    answer = server.call("POST", "/api/v1/requests", {"template": {"templateId": template, "machineCount": count}})
    return answer["requestId"]


def status_payload(ids):
    return {"requests": [{"requestId": rid} for rid in ids]}


def machines_of(answer):
    return [{"name": m["name"], "machineId": m["machineId"]} for r in answer["requests"] for m in r["machines"]]


class Config:
    """One configuration (folder+SQLite or S3+DynamoDB) on a freshly seeded emulator."""

    def __init__(self, name, env, sizes, binaries, scripts, workdir, log):
        self.name, self.env, self.sizes, self.bin, self.scripts, self.log = name, env, sizes, binaries, scripts, log
        self.workdir = workdir
        self.results, self.server, self.kept = {}, None, {}

    def record(self, case, samples, **extra):
        self.results[case] = dict(summary(samples), **extra)
        figure = self.results[case]
        print(f"  [{self.name}] {case}: {figure['aws_calls']} AWS calls, "
              f"p50 {figure['wall_ms_p50']} ms, p99 {figure['wall_ms_p99']} ms (n={figure['n']})", flush=True)

    def run(self):
        try:
            self.templates()
            self.request_machines()
            self.statuses()
            self.returns()
            self.reconcile()
            self.throughput()
        finally:
            if self.server:
                self.server.stop()
        return self.results

    def templates(self):
        cold = []
        for _ in range(self.sizes.cold_starts):
            if self.server:
                self.server.stop()
            self.server = Server(self.bin["hostfactory"], self.env, self.log)
            cold.append(self.scripts.run(self.server, "getAvailableTemplates", {})[:2])
        self.record("getAvailableTemplates cold", cold)
        warm = [self.scripts.run(self.server, "getAvailableTemplates", {})[:2] for _ in range(self.sizes.calls)]
        self.record("getAvailableTemplates warm", warm)

    def request_machines(self):
        for api, template in PROVIDER_APIS:
            payload = {"template": {"templateId": template, "machineCount": 1}}
            samples = [self.scripts.run(self.server, "requestMachines", payload)[:2] for _ in range(self.sizes.calls)]
            self.record(f"requestMachines {api}", samples)

    def statuses(self):
        for index, (requests, machines, repeats, polls) in enumerate(self.sizes.shapes):
            template = SCALE_TEMPLATE if index == len(self.sizes.shapes) - 1 else STATUS_TEMPLATE
            first, ids, shape = [], [], f"{requests}x{machines}"
            for _ in range(repeats):
                ids = [request(self.server, template, machines) for _ in range(requests)]
                try:
                    wall, aws, answer = self.scripts.run(self.server, "getRequestStatus", status_payload(ids),
                                                         timeout=self.sizes.call_timeout)
                except subprocess.TimeoutExpired:
                    self.timed_out(f"getRequestStatus {shape} first poll", first)
                    break
                first.append((wall, aws))
            else:
                self.record(f"getRequestStatus {shape} first poll", first, machines=len(machines_of(answer)),
                            states=sorted({r["status"] for r in answer["requests"]}))
                later = [self.scripts.run(self.server, "getRequestStatus", status_payload(ids))[:2]
                         for _ in range(polls)]
                self.record(f"getRequestStatus {shape} later poll", later)
                self.kept[shape] = (ids, machines_of(answer))

    def timed_out(self, case, samples):
        """A call past --call-timeout: recorded as such; the server is restarted (see Scripts.run)."""
        self.results[case] = dict(summary(samples) if samples else {}, timed_out_after_s=self.sizes.call_timeout)
        print(f"  [{self.name}] {case}: no answer within {self.sizes.call_timeout} s", flush=True)
        self.server.stop()
        self.server = Server(self.bin["hostfactory"], self.env, self.log)

    def returns(self):
        _, machines = self.kept[f"{self.sizes.shapes[1][0]}x{self.sizes.shapes[1][1]}"]
        returned, ret_ids = [], []
        for machine in machines[: self.sizes.calls]:
            wall, aws, answer = self.scripts.run(self.server, "requestReturnMachines", {"machines": [machine]})
            returned.append((wall, aws))
            ret_ids.append(answer["requestId"])
        self.record("requestReturnMachines", returned)
        wall, aws, _ = self.scripts.run(self.server, "getRequestStatus", status_payload(ret_ids[:1]))
        self.record("getRequestStatus return request", [(wall, aws)])
        listed = {"machines": machines}
        samples = [self.scripts.run(self.server, "getReturnRequests", listed)[:2] for _ in range(self.sizes.calls)]
        self.record("getReturnRequests", samples)

    def reconcile(self):
        """One pass of the reconciler function (its EMF line counts the pass's AWS calls; the
        `hostfactory reconcile` command prints the report only) after creating the active requests."""
        for _ in range(self.sizes.reconcile_requests):
            request(self.server, STATUS_TEMPLATE, 1)
        case = f"reconcile pass ({self.sizes.reconcile_requests} new active requests)"
        env = {k: v for k, v in self.env.items() if k != "HOSTFACTORY_METRICS"}
        runtime = Runtime(self.bin["reconciler"], env, timeout_s=self.sizes.call_timeout)
        log_path = os.path.join(self.workdir, f"reconcile-{self.name}.log")
        try:
            with open(log_path, "w") as log:
                runtime.start(log)
                invocation = runtime.invoke(json.load(open(os.path.join(ROOT, "events", "reconcile-schedule.json"))))
        except RuntimeError as err:  # no answer within --call-timeout
            print(f"  [{self.name}] reconcile: {err}", flush=True)
            self.results[case] = {"timed_out_after_s": self.sizes.call_timeout}
            return
        finally:
            runtime.stop()
        if not invocation.ok:
            raise RuntimeError(f"reconcile failed: {invocation.answer[:500]}")
        line = next(json.loads(l) for l in open(log_path) if '"_aws"' in l and '"reconcile"' in l)
        self.record(case, [(invocation.elapsed_ms, int(line["AwsCalls"]))], requests_checked=int(line["RequestsChecked"]))

    def throughput(self):
        """getAvailableTemplates on one keep-alive connection per thread, bounded in count and time."""
        url = urlparse(self.server.url)
        budget, deadline = self.sizes.load_requests, time.monotonic() + self.sizes.load_seconds
        lock, latencies, errors = threading.Lock(), [], [0]

        def worker():
            connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            nonlocal budget
            while time.monotonic() < deadline:
                with lock:
                    if budget <= 0:
                        return
                    budget -= 1
                started = time.perf_counter()
                connection.request("GET", "/api/v1/templates")
                answer = connection.getresponse()
                answer.read()
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000)
                    errors[0] += answer.status != 200

        started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(self.sizes.load_threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        self.server.drain()
        self.results["throughput getAvailableTemplates"] = {
            "n": len(latencies), "errors": errors[0], "threads": self.sizes.load_threads,
            "requests_per_s": round(len(latencies) / elapsed, 1),
            "latency_ms_p50": round(percentile(latencies, 50), 2), "latency_ms_p99": round(percentile(latencies, 99), 2),
        }
        print(f"  [{self.name}] throughput: {self.results['throughput getAvailableTemplates']}", flush=True)

