"""The one list of reasons a test may skip in CI: reason id -> why CI's machine cannot meet
it. A test names its reason as "[id]" at the start of its skip message; tests/run.py fails a
SKIP whose id is not listed here (see the README's Tests section)."""

# Every prerequisite the tests have today (root, cgroup2, unshare, zstd, swtpm, tpm2-tools,
# cryptsetup, the built binaries, the kernel and images) is installed or built by
# `make check` on CI's machine (.ci/run: tests/install-deps.sh, then the build), so no
# reason is listed: any skip there fails the run. Add an entry only for something CI
# cannot have (e.g. real SEV-SNP or TDX hardware), with why:
#     "sev-snp-hw": "CI runs on a machine without SEV-SNP; QEMU TCG cannot emulate it",
ALLOWED = {}
