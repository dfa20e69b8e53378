#!/bin/sh
# HostFactory runs `getRequestStatus.sh -f <input-file>`; hostfactory-client sends it to hostfactory-aws.
exec "$(dirname "$0")/hostfactory-client" getRequestStatus -f "$2"
