#!/bin/sh
# HostFactory runs `getAvailableTemplates.sh -f <input-file>`; hostfactory-client sends it to hostfactory-aws.
exec "$(dirname "$0")/hostfactory-client" getAvailableTemplates -f "$2"
