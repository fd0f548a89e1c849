#!/bin/sh
# Test service: one line, then runs until stopped.
echo "sleeper: up (pid $$)"
exec sleep 1000
