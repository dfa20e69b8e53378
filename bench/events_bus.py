"""Issue #15's latency figure: a HostFactory cycle, as Symphony runs the scripts, with domain
events off and with events going to an EventBridge bus that answers every PutEvents with an
error (a bus that does not exist: ResourceNotFoundException), while the server's background
drain retries it every second. Prints the p50 wall time and AWS calls of each call in both
configurations and their ratio; the calls make no event call, so the two should match.

Run through `infra/scripts/bench events [--cycles N]` (moto started, debug binaries built)."""

import argparse
import json
import os
import sys
import time

from rig import Emulator, Scripts, Server, scratch, summary
from calls import machines_of

CALLS = ["getAvailableTemplates", "requestMachines", "getRequestStatus", "requestReturnMachines", "getReturnRequests"]
TEMPLATE = "OnDemand-C5Large"


def settled(scripts, server, request_id, samples):
    """Polls getRequestStatus until the request is complete; every poll is a sample."""
    for _ in range(60):
        wall, aws, answer = scripts.run(server, "getRequestStatus", {"requests": [{"requestId": request_id}]})
        samples["getRequestStatus"].append((wall, aws))
        if answer["requests"][0]["status"] == "complete":
            return answer
        time.sleep(0.2)
    raise RuntimeError(f"{request_id} did not complete")


def cycle(scripts, server, samples):
    """getAvailableTemplates, one machine requested and polled, returned and polled."""
    samples["getAvailableTemplates"].append(scripts.run(server, "getAvailableTemplates", {})[:2])
    wall, aws, answer = scripts.run(server, "requestMachines", {"template": {"templateId": TEMPLATE, "machineCount": 1}})
    samples["requestMachines"].append((wall, aws))
    machines = machines_of(settled(scripts, server, answer["requestId"], samples))
    wall, aws, answer = scripts.run(server, "requestReturnMachines", {"machines": machines})
    samples["requestReturnMachines"].append((wall, aws))
    settled(scripts, server, answer["requestId"], samples)
    samples["getReturnRequests"].append(scripts.run(server, "getReturnRequests", {"machines": machines})[:2])


def measure(name, events, args, emulator, scripts, workdir, log):
    folder = os.path.join(workdir, f"{name.replace(' ', '-')}-templates")
    emulator.reset()
    emulator.seed(folder)
    env = dict(os.environ, RUST_LOG="warn", HF_PROVIDER_NAME="awsinst", HOSTFACTORY_TEMPLATES=folder,
               HOSTFACTORY_STORE=f"sqlite:{folder}.sqlite", HOSTFACTORY_EVENTS=events)
    server = Server(os.path.join(args.bin_dir, "hostfactory"), env, log)
    samples = {call: [] for call in CALLS}
    try:
        cycle(scripts, server, {call: [] for call in CALLS})  # warm-up, not counted
        for _ in range(args.cycles):
            cycle(scripts, server, samples)
    finally:
        server.stop()
    return {call: summary(values) for call, values in samples.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", required=True, help="folder of the hostfactory and hostfactory-client binaries")
    parser.add_argument("--cycles", type=int, default=10)
    args = parser.parse_args()
    workdir = scratch()
    emulator = Emulator(sys.executable)
    scripts = Scripts(os.path.join(args.bin_dir, "hostfactory-client"), workdir)
    results = {}
    with open(os.path.join(workdir, "bench.log"), "w") as log:
        print(f"bench events: scratch and logs in {workdir}", flush=True)
        for name, events in [("off", "off"), ("failing bus", "eventbridge:hostfactory-no-such-bus")]:
            results[name] = measure(name, events, args, emulator, scripts, workdir, log)
    print(f"{'call':24} {'off p50 ms':>11} {'failing p50 ms':>15} {'ratio':>6} {'AWS off':>8} {'AWS failing':>12}")
    for call in CALLS:
        off, failing = results["off"][call], results["failing bus"][call]
        ratio = failing["wall_ms_p50"] / off["wall_ms_p50"]
        print(f"{call:24} {off['wall_ms_p50']:>11} {failing['wall_ms_p50']:>15} {ratio:>6.2f} "
              f"{off['aws_calls']:>8} {failing['aws_calls']:>12}")
    print(json.dumps({"cycles": args.cycles, "results": results}))


if __name__ == "__main__":
    main()
