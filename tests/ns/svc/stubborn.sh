#!/bin/sh
# Test service: ignores SIGTERM, so only the cgroup kill at the end of the timeout
# stops it.
trap '' TERM
echo "stubborn: ignoring SIGTERM"
while :; do sleep 0.1; done
