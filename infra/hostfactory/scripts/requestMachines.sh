#!/bin/sh
# HostFactory runs `requestMachines.sh -f <input-file>`; hostfactory-client sends it to hostfactory-aws.
exec "$(dirname "$0")/hostfactory-client" requestMachines -f "$2"
