"""infra/scripts/bench's default: the issue #16 figures on the moto emulator, each next to its
target. Writes bench/results.json and bench/results.svg and prints one table.

Run through infra/scripts/bench (it builds the release binaries, starts moto and passes
--target-dir); sizes are options (--help), defaults keep the run under ~15 minutes.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import boto3

import calls
import functions
import report
import scale
from rig import ROOT, Emulator, Scripts, scratch

BUCKET, PREFIX, TABLES = "hostfactory-bench", "templates/", "bench"


def shape(text):
    """`REQUESTSxMACHINES[:FIRST_POLL_REPEATS[:LATER_POLLS]]`, e.g. 20x50:3:10."""
    parts = text.split(":")
    requests, machines = (int(n) for n in parts[0].split("x"))
    repeats = int(parts[1]) if len(parts) > 1 else 1
    polls = int(parts[2]) if len(parts) > 2 else 30
    return requests, machines, repeats, polls


def options():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-dir", required=True, help="cargo target dir holding release/")
    parser.add_argument("--calls", type=int, default=30, help="samples per call (wall time median/p99)")
    parser.add_argument("--cold-starts", type=int, default=5, help="server starts for getAvailableTemplates cold")
    parser.add_argument("--shapes", type=shape, nargs="+",
                        default=[shape(s) for s in ("1x10:30:30", "5x10:10:30", "20x50:2:10")],
                        help="getRequestStatus cases on moto REQUESTSxMACHINES:FIRST_POLLS:LATER_POLLS (the "
                             "second is also the return and Lambda cases' set; the last launches on a large network)")
    parser.add_argument("--scale-binary", help="the `scale` bench binary (infra/scripts/bench builds it); "
                                               "without it the 10,000-machine case is skipped")
    parser.add_argument("--scale", type=shape, default=shape("100x100:1:5"),
                        help="the scale case REQUESTSxMACHINES[:1:LATER_POLLS], EC2 in process")
    parser.add_argument("--call-timeout", type=float, default=300,
                        help="seconds a first poll may take before it is recorded as timed out")
    parser.add_argument("--reconcile-requests", type=int, default=100)
    parser.add_argument("--lambda-starts", type=int, default=5, help="process starts per function (init time)")
    parser.add_argument("--load-requests", type=int, default=3000, help="throughput: at most this many calls")
    parser.add_argument("--load-seconds", type=float, default=10, help="throughput: for at most this long")
    parser.add_argument("--load-threads", type=int, default=4)
    parser.add_argument("--configs", nargs="+", default=["local", "deployed"], choices=["local", "deployed"])
    parser.add_argument("--output", default=os.path.join(ROOT, "bench"))
    return parser.parse_args()


def binaries(target_dir):
    release = os.path.join(target_dir, "release")
    names = ["hostfactory", "hostfactory-client", "templates", "requests", "machines", "reconciler"]
    found = {name: os.path.join(release, name) for name in names}
    missing = [path for path in found.values() if not os.path.exists(path)]
    if missing:
        sys.exit(f"bench: release binaries missing (cargo build --release): {' '.join(missing)}")
    return found


def base_env():
    env = dict(os.environ, RUST_LOG="warn", HF_PROVIDER_NAME="awsinst", HOSTFACTORY_TEMPLATES_CACHE_TTL_SECS="60")
    for name in ("HOSTFACTORY_STORE", "HOSTFACTORY_TEMPLATES", "HOSTFACTORY_TABLE_PREFIX", "HOSTFACTORY_LISTEN"):
        env.pop(name, None)
    return env


def local_env(emulator, workdir):
    folder = os.path.join(workdir, "local-templates")
    emulator.seed(folder)
    return dict(base_env(), HOSTFACTORY_TEMPLATES=folder, HOSTFACTORY_STORE=f"sqlite:{workdir}/local.sqlite")


def deployed_env(emulator, workdir, hostfactory):
    file = emulator.seed(os.path.join(workdir, "deployed-templates"))
    s3 = boto3.client("s3", endpoint_url=emulator.endpoint)
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(file, BUCKET, PREFIX + os.path.basename(file))
    env = dict(base_env(), HOSTFACTORY_TEMPLATES=f"s3://{BUCKET}/{PREFIX}", HOSTFACTORY_STORE="dynamodb",
               HOSTFACTORY_TABLE_PREFIX=TABLES)
    subprocess.run([hostfactory, "create-tables", "--prefix", TABLES], env=env, check=True, stdout=subprocess.DEVNULL)
    return env


def main():
    args = options()
    bins = binaries(args.target_dir)
    workdir = scratch()
    emulator = Emulator(sys.executable)
    scripts = Scripts(bins["hostfactory-client"], workdir)
    started = time.monotonic()
    kept = {k: v for k, v in vars(args).items() if k not in ("target_dir", "output", "scale_binary")}
    results = {"sizes": kept, "configs": {}}
    with open(os.path.join(workdir, "bench.log"), "w") as log:
        print(f"bench: scratch and logs in {workdir}", flush=True)
        for name in args.configs:
            emulator.reset()
            env = local_env(emulator, workdir) if name == "local" else deployed_env(emulator, workdir, bins["hostfactory"])
            config = calls.Config(name, env, args, bins, scripts, workdir, log)
            print(f"configuration {name}", flush=True)
            results["configs"][name] = config.run()
            write(results, started, args.output)  # each finished part is kept, should a later one fail
            if name == "deployed":
                lambda_set = config.kept[f"{args.shapes[1][0]}x{args.shapes[1][1]}"]
                results["functions"] = functions.run(bins, env, lambda_set, args, workdir)
        if args.scale_binary:
            requests, machines, _, polls = args.scale
            results["scale"] = scale.run(args.scale_binary, emulator, requests, machines, polls,
                                         args.call_timeout * (polls + 2) + 600, log)
    rows = write(results, started, args.output)
    print(report.table(rows))
    print(f"\nbench: {results['duration_s']} s; wrote {args.output}/results.json and results.svg")


def write(results, started, output):
    results["duration_s"] = round(time.monotonic() - started)
    os.makedirs(output, exist_ok=True)
    results["table"] = rows = report.rows(results)
    with open(os.path.join(output, "results.json"), "w") as out:
        json.dump(results, out, indent=2)
        out.write("\n")
    report.svg(results, os.path.join(output, "results.svg"))
    return rows


if __name__ == "__main__":
    main()
