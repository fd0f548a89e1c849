#!/bin/sh
# The image builder's stand-in for tests/image/run.py (make IMAGE_BUILDER=...): no mkosi,
# the test is about make's decisions. It writes what make passed it as the "disk".
set -eu
[ -n "${CVMINIT_IMAGE_OUT:-}" ] || { echo "fake-builder: no CVMINIT_IMAGE_OUT" >&2; exit 1; }
[ "${FAKE_BUILDER_FAIL:-}" != 1 ] || { echo "fake-builder: failing as asked" >&2; exit 1; }
mkdir -p "$CVMINIT_IMAGE_OUT"
for v in KUBELET KUBELET_SHA256 CVMINIT_INIT CVMINIT_INITRD CVMINIT_EXTRA_TREE \
	CVMINIT_STATE_SIZE SOURCE_DATE_EPOCH JOIN JOIN_KEY; do
	eval "printf '%s=%s\n' $v \"\${$v:-}\""
done >"$CVMINIT_IMAGE_OUT/cvminit.raw"
