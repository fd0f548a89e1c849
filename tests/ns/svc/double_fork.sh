#!/bin/sh
# Test service: leaves a grandchild behind (re-parented to PID 1 when the subshell
# exits), then exits itself.
( sleep 0.5 & )
echo "double_fork: left a sleep behind"
exit 0
