#!/usr/bin/python3
# Test service: says hello, waits $DELAY seconds, then accepts on the unix socket $SOCK
# (the readiness check) until it is killed.
import os
import socket
import sys
import time

print("sock_ready: up, listening in", os.environ["DELAY"], "s", flush=True)
time.sleep(float(os.environ["DELAY"]))
path = os.environ["SOCK"]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(16)
print("sock_ready: listening on", path, flush=True)
sys.stdout.flush()
while True:
    c, _ = s.accept()
    c.close()
