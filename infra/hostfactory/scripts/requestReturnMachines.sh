#!/bin/sh
# HostFactory runs `requestReturnMachines.sh -f <input-file>`; hostfactory-client sends it to hostfactory-aws.
exec "$(dirname "$0")/hostfactory-client" requestReturnMachines -f "$2"
