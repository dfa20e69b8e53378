"""Section 4's 10,000-machine case: the `scale` bench binary (tests/benches/scale.rs) drives
getRequestStatus over REQUESTS x MACHINES machines through the real router and store, with EC2
answered in process (moto launches one instance per RunInstances and describes 1,000 ids in
seconds once it holds thousands: on moto the figure would be moto's). Once per store: SQLite,
and DynamoDB on the moto server of the run."""

import json
import subprocess


def run(binary, emulator, requests, machines, polls, timeout_s, log):
    """{store: figures} for sqlite and dynamodb; a store whose run fails or times out says so."""
    results = {}
    for store in ("sqlite", "dynamodb"):
        emulator.reset()
        command = [binary, "--store", store, "--requests", str(requests), "--machines", str(machines),
                   "--polls", str(polls)]
        print(f"scale: {requests}x{machines} on {store}", flush=True)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=True)
            results[store] = json.loads(done.stdout.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            results[store] = {"timed_out_after_s": timeout_s}
        except (subprocess.CalledProcessError, ValueError, IndexError) as err:
            log.write(f"scale {store}: {err}\n{getattr(err, 'stderr', '')}\n")
            results[store] = {"error": str(err)}
        print(f"  {store}: {results[store]}", flush=True)
    return results
