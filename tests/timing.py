"""One scaling rule for every delay, timeout and tolerance of the tests (python side; the
unit harness reads the same variable): seconds * CVM_TIMEOUT_SCALE, default 1."""
import os

ENV = "CVM_TIMEOUT_SCALE"


def scale():
    """The factor from CVM_TIMEOUT_SCALE (a loaded or slow machine sets it above 1).
    Anything that is not a positive number is a mistake, not a reason to run unbounded."""
    text = os.environ.get(ENV, "1")
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value != value or value == float("inf"):
        raise SystemExit(f"{ENV}={text!r}: expected a positive number")
    return value


def scaled(seconds):
    """A fixed delay, timeout or tolerance on this machine: seconds * CVM_TIMEOUT_SCALE."""
    return seconds * scale()
