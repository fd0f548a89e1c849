#!/bin/sh
# Test service: $LINES numbered lines as fast as it can (a flood for the rate limiter,
# enough bytes for a rotation), one more line a while later, then runs until stopped.
seq -f "chatty line %07g: the quick brown fox jumps over the lazy dog" 1 "$LINES"
sleep 1.5
echo "chatty: done"
exec sleep 1000
