#!/bin/sh
# HostFactory runs `getReturnRequests.sh -f <input-file>`; hostfactory-client sends it to hostfactory-aws.
exec "$(dirname "$0")/hostfactory-client" getReturnRequests -f "$2"
