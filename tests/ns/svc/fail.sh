#!/bin/sh
# Test service: fails at once, every time.
echo "fail: exiting with status 3"
exit 3
