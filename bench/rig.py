"""The pieces infra/scripts/bench drives: the moto emulator's state, the local server (its EMF
metric lines give the AWS calls of each HostFactory call), and the HostFactory scripts as Symphony
runs them (a process per call, JSON on stdout)."""

import json
import math
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "infra", "hostfactory", "scripts")
# The RunInstances template the getRequestStatus cases launch, and its copy for the largest case.
STATUS_TEMPLATE, SCALE_TEMPLATE = "OnDemand-C5Large", "OnDemand-C5Large-Scale"


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary(samples):
    """Median/p99/n of the wall times and median/max of the AWS calls of (wall_ms, aws_calls)s."""
    walls = [wall for wall, _ in samples]
    calls = [aws for _, aws in samples if aws is not None]
    return {
        "n": len(samples),
        "wall_ms_p50": round(percentile(walls, 50), 1),
        "wall_ms_p99": round(percentile(walls, 99), 1),
        "aws_calls": percentile(calls, 50) if calls else None,
        "aws_calls_max": max(calls) if calls else None,
    }


def http_json(method, url, body=None, timeout=600):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read() or b"null")


class Emulator:
    """The moto server infra/scripts/lib.sh started (AWS_ENDPOINT_URL): reset and seeded per configuration."""

    def __init__(self, python):
        self.endpoint = os.environ["AWS_ENDPOINT_URL"]
        self.python = python

    def large_network(self):
        """A /16 subnet for the status cases: the seeded /20s hold 4,096 instances, fewer than they launch."""
        ec2 = boto3.client("ec2", endpoint_url=self.endpoint)
        vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.99.0.0/16")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="hostfactory-bench", Description="bench", VpcId=vpc)["GroupId"]
        return {"subnetId": subnet, "securityGroupIds": [group]}

    def reset(self):
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=60)

    def seed(self, folder):
        """Seeds the emulator for the sample templates; returns their file, with every maxNumber at
        the cap (10,000) and a sixth template, SCALE_TEMPLATE, for the 10,000-machine case alone."""
        subprocess.run([self.python, os.path.join(ROOT, "infra", "scripts", "seed_emulator.py"),
                        os.path.join(ROOT, "infra", "templates"), folder], check=True, stdout=subprocess.DEVNULL)
        path = os.path.join(folder, "awsprov_templates.json")
        document = json.load(open(path))
        for template in document["templates"]:
            template["maxNumber"] = 10_000
        status = next(t for t in document["templates"] if t["templateId"] == STATUS_TEMPLATE)
        status.update(self.large_network())
        document["templates"].append(dict(status, templateId=SCALE_TEMPLATE))
        json.dump(document, open(path, "w"), indent=2)
        return path


class Server:
    """`hostfactory serve` on a free loopback port with metrics on; its EMF lines are queued."""

    def __init__(self, binary, env, log):
        env = dict(env, HOSTFACTORY_LISTEN="127.0.0.1:0", HOSTFACTORY_METRICS="true")
        self.process = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        self.metrics, self.url, ready = queue.Queue(), None, threading.Event()

        def read():
            for line in self.process.stdout:
                if line.startswith("{") and '"_aws"' in line:
                    self.metrics.put(json.loads(line))
                elif "listening on http://" in line:
                    self.url = line.split("listening on ")[1].split()[0]
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(60) or self.url is None:
            raise RuntimeError("hostfactory serve did not start (see the bench log)")

    def metric(self, operation, timeout=30):
        """The next EMF line of `operation` (earlier lines of other operations are dropped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.metrics.get(timeout=left)
            except queue.Empty:
                break
            if line.get("Operation") == operation:
                return line
        raise RuntimeError(f"no {operation} metric line from the server within {timeout} s")

    def drain(self):
        while not self.metrics.empty():
            self.metrics.get_nowait()

    def call(self, method, path, body=None):
        """A direct HTTP call (setup, not measured); its metric line is consumed."""
        answer = http_json(method, self.url + path, body)
        self.drain()
        return answer

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Scripts:
    """The five HostFactory scripts installed with the client, as README's install section does."""

    def __init__(self, client_binary, workdir):
        self.folder = os.path.join(workdir, "scripts")
        os.makedirs(self.folder, exist_ok=True)
        for name in os.listdir(SCRIPTS):
            shutil.copy(os.path.join(SCRIPTS, name), self.folder)
        shutil.copy(client_binary, os.path.join(self.folder, "hostfactory-client"))
        self.input = os.path.join(workdir, "input.json")

    def run(self, server, call, payload, timeout=None):
        """Runs `<call>.sh -f <input>` against the server: (wall ms, AWS calls, answer).
        Raises subprocess.TimeoutExpired after `timeout` seconds (the caller restarts the server,
        whose late metric line would otherwise be taken for the next call's)."""
        with open(self.input, "w") as file:
            json.dump(payload, file)
        env = dict(os.environ, HOSTFACTORY_API_URL=server.url, HOSTFACTORY_AUTH="none",
                   HOSTFACTORY_TIMEOUT_SECS="600", HF_PROVIDER_NAME="awsinst")
        env.pop("HF_PROVIDER_ACTION_TIMEOUT", None)
        started = time.perf_counter()
        run = subprocess.run([os.path.join(self.folder, f"{call}.sh"), "-f", self.input], env=env,
                             capture_output=True, text=True, timeout=timeout)
        wall_ms = (time.perf_counter() - started) * 1000
        if run.returncode:
            raise RuntimeError(f"{call} failed: {run.stdout.strip()} {run.stderr.strip()[-500:]}")
        line = server.metric(call)
        return wall_ms, int(line["AwsCalls"]), json.loads(run.stdout)


def scratch():
    return tempfile.mkdtemp(prefix="hostfactory-bench-")
