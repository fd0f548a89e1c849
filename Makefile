# cvminit: a static musl PID 1 for confidential Kubernetes nodes.
# make            build/cvminit (static, musl, libraries from Debian sources)
# make check      install what the tests need, build, run unit + QEMU tests
# make run        build and boot under QEMU with OVMF and swtpm (serial on this terminal)

BUILD    := build
SYSROOT  := $(BUILD)/sysroot
GEN      := $(BUILD)/gen
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)

# lib/ (log sink, hex, digest, files, command-line words) is what both programs build on;
# measured-boot/ uses only lib/, init/ uses both. PID 1 links the measurement backends and
# the sealing code; the host tool's PE and prediction code stay out of it.
LIB_SRCS  := $(wildcard lib/*.c)
LIB_HDRS  := $(wildcard lib/*.h)
MB_HOST_ONLY := measured-boot/cvm-measure.c measured-boot/pe.c measured-boot/predict.c \
		measured-boot/cpio.c measured-boot/tcglog.c measured-boot/measurements.c \
		measured-boot/attest-proto.c measured-boot/attest-node.c measured-boot/attest-verify.c \
		measured-boot/attest-cmd.c measured-boot/join-proto.c measured-boot/join-store.c
MB_SRCS   := $(filter-out $(MB_HOST_ONLY),$(wildcard measured-boot/*.c))
INIT_SRCS := $(wildcard init/*.c) $(MB_SRCS) $(LIB_SRCS)
INIT_HDRS := $(wildcard init/*.h measured-boot/*.h) $(LIB_HDRS) $(GEN)/modules-table.h

WARN     := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral \
	    -Wstrict-prototypes -Wmissing-prototypes -Wvla
HARDEN   := -fstack-protector-strong -fstack-clash-protection -D_FORTIFY_SOURCE=2 \
	    -fcf-protection
CSTD     := -std=gnu11
CPPFLAGS_COMMON := -I$(GEN) -DCVMINIT_VERSION=\"$(VERSION)\"

# Release: static-pie musl against the sysroot built from Debian source packages.
# Debian's musl-gcc specs only know -static (no PIE); ours are derived from them with
# rcrt1.o and a static-pie link, so the kernel can randomise PID 1's text too.
MUSL_SPECS_SYS := /usr/lib/x86_64-linux-musl/musl-gcc.specs
MUSL_SPECS := $(GEN)/musl-static-pie.specs
MUSL_CC  := gcc -specs $(MUSL_SPECS)
PKG_MODS := libkmod blkid libcryptsetup tss2-esys tss2-rc tss2-tcti-device libzstd json-c mbedcrypto
SYS_PKG  = PKG_CONFIG_LIBDIR=$(abspath $(SYSROOT))/lib/pkgconfig PKG_CONFIG_PATH= \
	   PKG_CONFIG_SYSROOT_DIR= pkg-config --static
# -Os: nothing in PID 1's own code is hot (the boot waits on the kernel, the TPM and the
# disk); -O2 made it 25 KB larger. No LTO: 16 KB less, but the libraries are not LTO
# objects and the size report (make size-report) could no longer name our objects.
REL_CFLAGS  = $(CSTD) -Os -fPIE $(WARN) $(HARDEN) -ffunction-sections -fdata-sections \
	      -isystem $(SYSROOT)/include $(shell $(SYS_PKG) --cflags $(PKG_MODS) 2>/dev/null)
REL_LDFLAGS = -fPIE -Wl,--gc-sections -Wl,-z,relro,-z,now -Wl,-z,noexecstack -s
REL_LIBS    = $(shell $(SYS_PKG) --libs $(PKG_MODS) 2>/dev/null)

# Unit tests: the same sources against Debian's -dev packages, with ASan and UBSan.
HOST_CC   := gcc
SAN       := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
UNIT_CFLAGS := $(CSTD) -O1 -g $(WARN) -Wno-missing-prototypes $(SAN) \
	       $(shell pkg-config --cflags libkmod blkid libcryptsetup tss2-esys 2>/dev/null)
UNIT_LIBS := $(shell pkg-config --libs libkmod blkid libcryptsetup tss2-esys tss2-sys tss2-mu tss2-rc tss2-tcti-device \
	       tss2-tcti-swtpm libzstd json-c 2>/dev/null) -lmbedx509 -lmbedcrypto

.PHONY: all deps check unit qemu-test image cloud-images test-image run clean distclean host-deps \
	format format-check \
	bench bench-growth size-report

all: $(BUILD)/cvminit $(BUILD)/dhcp-hook $(BUILD)/cvminit-agent

$(GEN)/modules-table.h: init/modules.list
	@mkdir -p $(GEN)
	awk '!/^#/ && NF { ph = "PHASE_NOW"; dev = "false"; cpu = "NULL"; ex = ""; nex = 0; \
		for (i = 3; i <= NF; i++) { \
			if ($$i == "background") ph = "PHASE_STATE"; \
			else if ($$i == "root") ph = "PHASE_ROOT"; \
			else if ($$i == "device") dev = "true"; \
			else if ($$i ~ /^cpu=/) cpu = "\"" substr($$i, 5) "\""; \
			else if ($$i ~ /^exists=/ && nex < 2) ex = ex (nex++ ? ", " : "") "\"" substr($$i, 8) "\""; \
			else { print FILENAME ": unknown option " $$i > "/dev/stderr"; exit 1 } } \
		printf "{ \"%s\", %s, %s, %s, %s, { %s } },\n", $$1, ($$2 == "required") ? "true" : "false", \
			ph, dev, cpu, nex ? ex : "NULL" }' $< > $@.tmp
	mv $@.tmp $@

$(MUSL_SPECS): $(MUSL_SPECS_SYS)
	@mkdir -p $(GEN)
	sed -e 's|%{!shared: /usr/lib/x86_64-linux-musl/Scrt1.o}|/usr/lib/x86_64-linux-musl/rcrt1.o|' \
	    -e 's|^-dynamic-linker .*|-static -pie --no-dynamic-linker -z text -nostdlib|' $< > $@.tmp
	grep -q rcrt1.o $@.tmp && grep -q -- '--no-dynamic-linker' $@.tmp
	mv $@.tmp $@

# The sysroot is cached outside the tree, keyed by the manifest; this only links it. The
# stamp lives in the shared cache, so another checkout may have touched it: a link that
# points elsewhere than this tree's key is stale whatever the stamp's time says.
SYSROOT_KEYED := $(shell image/deps.sh --print-sysroot 2>/dev/null)
$(SYSROOT)/.stamp: image/deps.sh image/deps.manifest $(wildcard image/deps/*/*) \
		$(if $(filter $(SYSROOT_KEYED),$(realpath $(SYSROOT))),,FORCE)
	image/deps.sh
	@touch $@

deps: $(SYSROOT)/.stamp

# Where the binary's bytes come from, per library and per object (docs/benchmarks.md).
size-report: $(BUILD)/cvminit
	python3 tests/bench/sizes.py --cc "$(MUSL_CC)" --cflags '$(REL_CFLAGS) $(CPPFLAGS_COMMON)' \
		--ldflags "$(REL_LDFLAGS)" --libs "$(REL_LIBS)" $(INIT_SRCS)

$(BUILD)/cvminit: $(INIT_SRCS) $(INIT_HDRS) $(SYSROOT)/.stamp $(MUSL_SPECS) Makefile
	$(MUSL_CC) $(REL_CFLAGS) $(CPPFLAGS_COMMON) -o $@ $(INIT_SRCS) $(REL_LDFLAGS) $(REL_LIBS)
	@file $@ | grep -q 'static-pie linked' || { echo "error: $@ is not static-pie"; exit 1; }
	@rw=$$(size $@ | awk 'NR == 2 { print $$2 + $$3 }'); [ "$$rw" -lt 2097152 ] || { \
		echo "error: $@: .data + .bss are $$rw bytes, not under 2 MiB: a transparent huge" \
		     "page can then back them (init/main.c); map large buffers when used"; exit 1; }
	@printf 'cvminit: %s bytes (%s)\n' "$$(stat -c %s $@)" "$$(file -b $@ | cut -d, -f1-2)"

# dhcpcd's script on the node (the root has no shell): static, no libraries, hardened.
$(BUILD)/dhcp-hook: image/dhcp-hook.c $(MUSL_SPECS) Makefile
	$(MUSL_CC) $(CSTD) -O2 -fPIE $(WARN) $(HARDEN) -o $@ $< $(REL_LDFLAGS)
	@file $@ | grep -q 'static-pie linked' || { echo "error: $@ is not static-pie"; exit 1; }

# The attestation agent (docs/attestation.md): a service on the node, static like PID 1,
# never part of it. Linked with the TPM code and, for the join (agent/join.c), mbedcrypto.
AGENT_SRCS := agent/agent.c agent/join.c measured-boot/attest-node.c measured-boot/attest-proto.c \
	      measured-boot/join-proto.c \
	      measured-boot/tpm.c $(LIB_SRCS)
AGENT_PKGS := tss2-esys tss2-mu tss2-rc tss2-tcti-device mbedcrypto
$(BUILD)/cvminit-agent: $(AGENT_SRCS) $(INIT_HDRS) $(SYSROOT)/.stamp $(MUSL_SPECS) Makefile
	$(MUSL_CC) $(CSTD) -O2 -fPIE $(WARN) $(HARDEN) -ffunction-sections -fdata-sections \
		-isystem $(SYSROOT)/include $(shell $(SYS_PKG) --cflags $(AGENT_PKGS) 2>/dev/null) \
		$(CPPFLAGS_COMMON) -o $@ $(AGENT_SRCS) $(REL_LDFLAGS) \
		$(shell $(SYS_PKG) --libs $(AGENT_PKGS) 2>/dev/null)
	@file $@ | grep -q 'static-pie linked' || { echo "error: $@ is not static-pie"; exit 1; }

# The same agent for the host tests, against a swtpm (tests/unit/test_attest.c).
$(BUILD)/unit/cvminit-agent: $(AGENT_SRCS) $(INIT_HDRS) Makefile
	@mkdir -p $(BUILD)/unit
	$(HOST_CC) $(UNIT_CFLAGS) $(CPPFLAGS_COMMON) -DCVM_TPM_SWTPM -o $@ $(AGENT_SRCS) $(UNIT_LIBS)

# And without sanitizers, for the flood test's memory figures (tests/qemu/test_attest.py).
$(BUILD)/agent-host/cvminit-agent: $(AGENT_SRCS) $(INIT_HDRS) Makefile
	@mkdir -p $(BUILD)/agent-host
	$(HOST_CC) $(CSTD) -O2 $(WARN) $(CPPFLAGS_COMMON) -DCVM_TPM_SWTPM \
		$(shell pkg-config --cflags tss2-esys 2>/dev/null) -o $@ $(AGENT_SRCS) \
		$(shell pkg-config --libs tss2-esys tss2-mu tss2-rc tss2-tcti-device tss2-tcti-swtpm 2>/dev/null) \
		-lmbedcrypto

# --- unit tests ---------------------------------------------------------------
# The sources under test are compiled once (gcc, ASan, UBSan) into one archive that every
# test binary links; a test pulls in only the objects it uses.
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(wildcard tests/unit/test_*.c))
UNIT_LIB_SRCS := init/config.c init/settings.c init/state_plan.c init/log.c init/timeline.c init/partition.c init/svc.c \
		 init/svclog.c init/netup.c init/sysctl.c $(wildcard init/luks.c init/reference.c) \
		 $(filter-out measured-boot/cvm-measure.c,$(wildcard measured-boot/*.c)) $(LIB_SRCS)
UNIT_OBJS := $(patsubst %.c,$(BUILD)/unit/obj/%.o,$(UNIT_LIB_SRCS))
UNIT_LIB  := $(BUILD)/unit/libcvm.a

$(BUILD)/unit/obj/%.o: %.c $(INIT_HDRS) Makefile
	@mkdir -p $(dir $@)
	$(HOST_CC) $(UNIT_CFLAGS) $(CPPFLAGS_COMMON) -DCVM_TPM_SWTPM -c -o $@ $<

$(UNIT_LIB): $(UNIT_OBJS)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/unit/test_%: tests/unit/test_%.c tests/unit/harness.c $(wildcard tests/unit/*.h) image/dhcp-hook.c \
		$(UNIT_LIB) $(INIT_HDRS)
	@mkdir -p $(BUILD)/unit
	$(HOST_CC) $(UNIT_CFLAGS) $(CPPFLAGS_COMMON) -DCVM_TPM_SWTPM -o $@ $< tests/unit/harness.c \
		$(UNIT_LIB) $(UNIT_LIBS)

# The sealing code against the release tpm2-tss (musl, mbedtls backend): its crypto
# backend is not the one Debian's -dev packages use (see tests/release/).
REL_TEST_SRCS := measured-boot/seal.c measured-boot/tpm.c measured-boot/eventlog.c \
		 measured-boot/replay.c $(LIB_SRCS) tests/unit/harness.c
$(BUILD)/unit/test_release_seal: tests/release/test_release_seal.c $(REL_TEST_SRCS) \
		$(INIT_HDRS) tests/unit/harness.h tests/unit/swtpm.h tests/unit/sapi_scan.h \
		$(SYSROOT)/.stamp $(MUSL_SPECS)
	@mkdir -p $(BUILD)/unit
	$(MUSL_CC) $(CSTD) -O1 -g $(WARN) -Wno-missing-prototypes -isystem $(SYSROOT)/include \
		$(shell $(SYS_PKG) --cflags $(PKG_MODS) 2>/dev/null) $(CPPFLAGS_COMMON) -DCVM_TPM_SWTPM \
		-static -o $@ $< $(REL_TEST_SRCS) $(REL_LIBS) -ltss2-tcti-swtpm

# The host join test's node (tests/qemu/test_join.py): PCR 15's per-node records on a
# swtpm, measured by the functions PID 1 uses.
$(BUILD)/unit/node-records: tests/unit/node_records.c $(UNIT_LIB) $(INIT_HDRS)
	@mkdir -p $(BUILD)/unit
	$(HOST_CC) $(UNIT_CFLAGS) $(CPPFLAGS_COMMON) -DCVM_TPM_SWTPM -o $@ $< $(UNIT_LIB) $(UNIT_LIBS)

unit: $(UNIT_TESTS) $(BUILD)/unit/test_release_seal $(BUILD)/agent-host/cvminit-agent \
	$(BUILD)/unit/node-records

# --- cvm-measure: the host tool (PCR 11 prediction for a UKI, event log verification) ----
CVM_MEASURE_SRCS := measured-boot/cvm-measure.c measured-boot/pe.c measured-boot/predict.c \
		    measured-boot/cpio.c measured-boot/tcglog.c measured-boot/eventlog.c \
		    measured-boot/replay.c measured-boot/tpm.c measured-boot/identity.c \
		    measured-boot/measurements.c measured-boot/attest-cmd.c \
		    measured-boot/attest-verify.c measured-boot/attest-proto.c \
		    measured-boot/generation.c $(LIB_SRCS)
CVM_MEASURE_PKGS := json-c libcryptsetup tss2-esys tss2-mu tss2-rc tss2-tcti-device tss2-tcti-swtpm

# -DCVM_TPM_SWTPM: the host tool may read PCRs from a swtpm (`verify --tpm swtpm:…`).
$(BUILD)/cvm-measure: $(CVM_MEASURE_SRCS) $(wildcard measured-boot/*.h) $(LIB_HDRS) Makefile
	@mkdir -p $(BUILD)
	$(HOST_CC) $(CSTD) -O2 $(WARN) $(HARDEN) $(CPPFLAGS_COMMON) -DCVM_TPM_SWTPM \
		$(shell pkg-config --cflags $(CVM_MEASURE_PKGS) 2>/dev/null) -o $@ $(CVM_MEASURE_SRCS) \
		$(shell pkg-config --libs $(CVM_MEASURE_PKGS) 2>/dev/null) -lmbedx509 -lmbedcrypto

# --- cvm-join: the join service (docs/attestation.md), on cvm-measure attest's verifier ---
CVM_JOIN_SRCS := join/cvm-join.c measured-boot/join-proto.c measured-boot/join-store.c \
		 $(filter-out measured-boot/cvm-measure.c,$(CVM_MEASURE_SRCS))
$(BUILD)/cvm-join: $(CVM_JOIN_SRCS) $(wildcard measured-boot/*.h) $(LIB_HDRS) Makefile
	@mkdir -p $(BUILD)
	$(HOST_CC) $(CSTD) -O2 $(WARN) $(HARDEN) $(CPPFLAGS_COMMON) -DCVM_TPM_SWTPM \
		$(shell pkg-config --cflags $(CVM_MEASURE_PKGS) 2>/dev/null) -o $@ $(CVM_JOIN_SRCS) \
		$(shell pkg-config --libs $(CVM_MEASURE_PKGS) 2>/dev/null) -lmbedx509 -lmbedcrypto

# --- the supervisor as PID 1 of a pid namespace (root; see tests/ns/run.py) -----------
NS_SRCS := init/supervise.c init/power.c init/powerbtn.c

$(BUILD)/ns/svc_pid1: tests/ns/svc_pid1.c $(NS_SRCS) $(UNIT_LIB) $(INIT_HDRS)
	@mkdir -p $(BUILD)/ns
	$(HOST_CC) $(UNIT_CFLAGS) $(CPPFLAGS_COMMON) -o $@ $< $(NS_SRCS) $(UNIT_LIB) $(UNIT_LIBS)

.PHONY: ns-test
ns-test: $(BUILD)/ns/svc_pid1
	python3 tests/ns/run.py

# --- test fixtures -------------------------------------------------------------
# A stand-in for kubelet (Debian has none): static, so it runs in the shell-less root.
$(BUILD)/kubelet-standin: tests/fixtures/kubelet-standin.c $(SYSROOT)/.stamp
	@mkdir -p $(BUILD)
	musl-gcc -static -pthread -O2 -std=gnu11 -Wall -Wextra -Werror -idirafter $(SYSROOT)/include \
		-o $@ $< -L$(SYSROOT)/lib -lmbedtls -lmbedx509 -lmbedcrypto

# A static busybox from Debian's busybox-static (downloaded into build/, never into git) and
# a one-layer OCI image of it, which the stand-in runs with ctr + runc in the test image.
$(BUILD)/busybox-static/bin/busybox:
	rm -rf $(BUILD)/busybox-static && mkdir -p $(BUILD)/busybox-static/deb
	cd $(BUILD)/busybox-static/deb && apt-get download busybox-static
	dpkg-deb -x $(BUILD)/busybox-static/deb/busybox-static_*.deb $(BUILD)/busybox-static
	test -x $@

TEST_TREE := $(BUILD)/image-test-tree
$(TEST_TREE)/usr/share/cvminit-test/busybox-oci.tar: tests/fixtures/mkoci.py $(BUILD)/busybox-static/bin/busybox
	@mkdir -p $(dir $@)
	python3 tests/fixtures/mkoci.py $(BUILD)/busybox-static/bin/busybox $@ \
		docker.io/cvminit-test/busybox:1

# --- fuzzing (libFuzzer, clang; docs/fuzzing.md) ----------------------------------------
# Each target in tests/fuzz/ calls the parser PID 1 or cvm-measure calls, linked against
# the same sources built with clang's fuzzer instrumentation, ASan and UBSan.
FUZZ_CC      := clang
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS  := $(CSTD) -O1 -g $(WARN) $(FUZZ_SAN) \
		$(shell pkg-config --cflags libkmod blkid libcryptsetup tss2-esys json-c 2>/dev/null)
FUZZ_SRCS    := $(filter-out init/main.c init/modules.c init/net.c,$(wildcard init/*.c)) \
		$(filter-out measured-boot/cvm-measure.c,$(wildcard measured-boot/*.c)) $(LIB_SRCS)
FUZZ_OBJS    := $(patsubst %.c,$(BUILD)/fuzz/obj/%.o,$(FUZZ_SRCS))
FUZZ_LIB     := $(BUILD)/fuzz/libcvm.a
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 120
FUZZ_JOBS    ?= 1

$(BUILD)/fuzz/obj/%.o: %.c $(INIT_HDRS) Makefile
	@mkdir -p $(dir $@)
	@echo "  CC (fuzz) $<"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(CPPFLAGS_COMMON) -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_OBJS)
	@rm -f $@ && ar rcs $@ $^

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_LIB)
	@echo "  LD (fuzz) $@"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -Wno-missing-prototypes -fsanitize=fuzzer $(CPPFLAGS_COMMON) \
		-o $@ $< $(FUZZ_LIB) $(UNIT_LIBS)

.SECONDARY: $(FUZZ_OBJS) $(UNIT_OBJS)
.PHONY: fuzz-build fuzz fuzz-check fuzz-merge
fuzz-build: $(FUZZ_TARGETS)

# Every target for FUZZ_SECONDS (FUZZ_JOBS at a time), new inputs kept in build/fuzz/corpus/,
# crashes in build/fuzz/crashes/; a table of executions, coverage and crashes at the end.
fuzz: fuzz-build
	python3 tests/fuzz/run.py fuzz --seconds $(FUZZ_SECONDS) --jobs $(FUZZ_JOBS)

# Each target over its corpus and for a few seconds more (what `make check` runs).
fuzz-check: fuzz-build
	python3 tests/fuzz/run.py check

# Folds the inputs of build/fuzz/corpus/ that add coverage into tests/fuzz/corpus/.
fuzz-merge: fuzz-build
	python3 tests/fuzz/run.py merge

# --- the whole suite ----------------------------------------------------------
host-deps:
	tests/install-deps.sh

check: host-deps
	$(MAKE) format-check
	$(MAKE) all unit image cloud-images test-image $(BUILD)/ns/svc_pid1 $(BUILD)/cvm-measure \
		$(BUILD)/unseal-attacker $(BUILD)/agent-host/cvminit-agent $(BUILD)/cvm-join \
		$(BUILD)/unit/node-records fuzz-build
	python3 tests/run.py

qemu-test: all
	python3 tests/run.py --qemu-only

# --- the node image (mkosi, trixie tools tree cached outside the clone) ------------
IMAGE_INPUTS := mkosi.conf $(shell find image/mkosi.* rootfs-overlay -type f 2>/dev/null) \
		image/mkinitrd.py image/build-image.sh image/tools-tree.sh image/uki-refs.py init/modules.list
IMAGE_DIR     := $(BUILD)/image
IMAGE_BUILDER := image/build-image.sh

# The variables image/build-image.sh reads are inputs of the image as much as its files:
# each image records the values it was built with (.inputs beside it), and a make whose
# values differ remakes it (`make image KUBELET=...` after a plain `make image` must not
# answer "Nothing to be done"). The files they name are prerequisites too.
IMAGE_VARS      := KUBELET KUBELET_SHA256 CVMINIT_INIT CVMINIT_INITRD CVMINIT_EXTRA_TREE \
		   CVMINIT_STATE_SIZE SOURCE_DATE_EPOCH JOIN JOIN_KEY MODULE_SIGNATURES
# The test image sets KUBELET, KUBELET_SHA256 and CVMINIT_EXTRA_TREE itself.
TEST_IMAGE_VARS := $(filter-out KUBELET KUBELET_SHA256 CVMINIT_EXTRA_TREE,$(IMAGE_VARS))
image_vars  = $(foreach v,$(1),$(v)=[$($(v))])
same        = $(if $(subst x$(1)x,,x$(2)x)$(subst x$(2)x,,x$(1)x),,y)
image_stale = $(if $(call same,$(file <$(1)/.inputs),$(call image_vars,$(2))),,FORCE)
image_files = $(wildcard $(KUBELET) $(CVMINIT_INIT) $(CVMINIT_INITRD) $(IMAGE_DIR)/initrd.cpio) \
	      $(if $(CVMINIT_EXTRA_TREE),$(shell find $(CVMINIT_EXTRA_TREE) -type f 2>/dev/null))
sq          = '$(subst ','\'',$(1))'

.PHONY: FORCE
FORCE:

# The join service a node of the image trusts (docs/attestation.md, "Join"): its address and
# its public key, both measured with the image. The defaults are for development: the
# address QEMU's user network forwards to the host in `make run` and the tests, and a key
# pair made once under build/join-dev/ (the private key 0600, never in an image). A node of
# such an image joins only a development cvm-join holding that private key.
DEV_JOIN_DIR := $(BUILD)/join-dev
DEV_JOIN_KEY := $(DEV_JOIN_DIR)/join-service.pub
JOIN         ?= 10.0.2.100:7742
JOIN_KEY     ?= $(DEV_JOIN_KEY)
JOIN_ENV      = JOIN=$(call sq,$(JOIN)) JOIN_KEY=$(call sq,$(abspath $(JOIN_KEY)))

$(DEV_JOIN_KEY):
	@mkdir -p $(DEV_JOIN_DIR)
	(umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
		-out $(DEV_JOIN_DIR)/join-service.pem)
	openssl pkey -in $(DEV_JOIN_DIR)/join-service.pem -pubout -out $@

$(IMAGE_DIR)/cvminit.raw: $(BUILD)/cvminit $(BUILD)/dhcp-hook $(BUILD)/cvminit-agent $(IMAGE_INPUTS) \
		$(image_files) $(JOIN_KEY) \
		$(call image_stale,$(IMAGE_DIR),$(IMAGE_VARS))
	@mkdir -p $(IMAGE_DIR) && rm -f $(IMAGE_DIR)/.inputs
	CVMINIT_IMAGE_OUT=$(abspath $(IMAGE_DIR)) $(JOIN_ENV) $(IMAGE_BUILDER)
	@printf '%s\n' $(call sq,$(call image_vars,$(IMAGE_VARS))) >$(IMAGE_DIR)/.inputs

# measurements.json beside the disk (docs/attestation.md): what `cvm-measure attest` checks a
# node of this image against. PCR 4 for OVMF on QEMU's q35: `make run` (image/run.sh) has
# the empty DVD drive first in the boot order (one failed boot option), the test VMs put
# the disk first (none). The firmware's PCRs warnOnly from image/ovmf-q35.tcglog, a firmware
# log of one such boot, when present.
# join-measurements.json is what cvm-join holds: a node joins before its last service
# (kubelet) starts, so before `ready` is measured; PCR 11 is its value at leave-initrd.
# $(1): the image's directory, $(2): the failed boot options before the disk.
MEASURE_JSON = $(BUILD)/cvm-measure predict --uki $(1)/cvminit.efi --failed-boot-options $(2) \
	$(if $(wildcard image/ovmf-q35.tcglog),--firmware-log image/ovmf-q35.tcglog) \
	--json $(1)/measurements.json > $(1)/measurements.txt && \
	$(BUILD)/cvm-measure predict --uki $(1)/cvminit.efi --failed-boot-options $(2) \
	$(if $(wildcard image/ovmf-q35.tcglog),--firmware-log image/ovmf-q35.tcglog) \
	--phase leave-initrd --json $(1)/join-measurements.json > /dev/null
MEASURE_DEPS = $(BUILD)/cvm-measure $(wildcard image/ovmf-q35.tcglog)

# Explicit rules: IMAGE_DIR may be any directory (`make image IMAGE_DIR=...`).
$(IMAGE_DIR)/measurements.json $(IMAGE_DIR)/join-measurements.json &: \
		$(IMAGE_DIR)/cvminit.raw $(MEASURE_DEPS)
	$(call MEASURE_JSON,$(IMAGE_DIR),1)

$(BUILD)/image-test/measurements.json $(BUILD)/image-test/join-measurements.json &: \
		$(BUILD)/image-test/cvminit.raw $(MEASURE_DEPS)
	$(call MEASURE_JSON,$(BUILD)/image-test,0)

image: $(IMAGE_DIR)/cvminit.raw $(IMAGE_DIR)/measurements.json $(IMAGE_DIR)/join-measurements.json

# The image in each cloud's upload format, checked, with sizes, sha256 sums and
# measurements.json (image/cloud-images.sh; docs/clouds.md).
CLOUD_DIR := $(BUILD)/cloud
$(CLOUD_DIR)/SHA256SUMS: $(IMAGE_DIR)/cvminit.raw $(IMAGE_DIR)/measurements.json $(BUILD)/cvm-measure \
		image/cloud-images.sh \
		image/vhd-footer.py
	CVM_MEASURE=$(BUILD)/cvm-measure image/cloud-images.sh $(IMAGE_DIR) $(CLOUD_DIR)

# Cloud images without an operator's JOIN/JOIN_KEY are built (the upload formats can be
# tried out) but join only a development cvm-join: said at the end of every such build.
DEV_JOIN_WARNING = printf '%s\n' \
	"cloud-images: WARNING: built with the DEVELOPMENT join service ($(JOIN), key $(JOIN_KEY))." \
	"cloud-images: WARNING: its nodes join only a cvm-join holding build/join-dev/join-service.pem;" \
	"cloud-images: WARNING: for a cluster: make cloud-images JOIN=host:port JOIN_KEY=service.pub" >&2

cloud-images: $(CLOUD_DIR)/SHA256SUMS
	@$(if $(filter $(abspath $(DEV_JOIN_KEY)),$(abspath $(JOIN_KEY))),$(DEV_JOIN_WARNING))

# image/uki-refs.py fills the initrd's reference slot with `cvm-measure refs --write`.
$(BUILD)/image/cvminit.raw $(BUILD)/image-test/cvminit.raw: $(BUILD)/cvm-measure

# The same image with the kubelet stand-in as /usr/bin/kubelet, for the node tests.
# Its extra tree adds the OCI image the stand-in runs (/usr/share/cvminit-test/).
# The attacker fixture, run by the stand-in as the workload (the fence check).
$(TEST_TREE)/usr/share/cvminit-test/unseal-attacker: $(BUILD)/unseal-attacker
	@mkdir -p $(dir $@)
	install -m 0755 $< $@

$(BUILD)/image-test/cvminit.raw: $(BUILD)/cvminit $(BUILD)/dhcp-hook $(BUILD)/kubelet-standin \
		$(BUILD)/cvminit-agent $(JOIN_KEY) \
		$(IMAGE_INPUTS) \
		$(TEST_TREE)/usr/share/cvminit-test/busybox-oci.tar \
		$(TEST_TREE)/usr/share/cvminit-test/unseal-attacker \
		$(wildcard $(CVMINIT_INIT) $(CVMINIT_INITRD)) \
		$(call image_stale,$(BUILD)/image-test,$(TEST_IMAGE_VARS))
	@mkdir -p $(BUILD)/image-test && rm -f $(BUILD)/image-test/.inputs
	CVMINIT_IMAGE_OUT=$(abspath $(BUILD)/image-test) KUBELET=$(BUILD)/kubelet-standin $(JOIN_ENV) \
	CVMINIT_EXTRA_TREE=$(abspath $(TEST_TREE)) \
	KUBELET_SHA256=$$(sha256sum $(BUILD)/kubelet-standin | cut -d' ' -f1) $(IMAGE_BUILDER)
	@printf '%s\n' $(call sq,$(call image_vars,$(TEST_IMAGE_VARS))) >$(BUILD)/image-test/.inputs

test-image: $(BUILD)/image-test/cvminit.raw $(BUILD)/image-test/measurements.json \
	$(BUILD)/image-test/join-measurements.json

# CVM=snp|tdx: as a confidential guest under KVM (image/run.sh says what the host needs and
# refuses before anything is built when it lacks it).
run:
	$(if $(CVM),CVM=$(CVM) image/run.sh --check)
	$(MAKE) host-deps image $(BUILD)/cvm-join
	image/run.sh

# Every C file of the tree (the fuzz corpus is data); `make format-check` is part of
# `make check`: a clean clone has no base to diff against, so the whole tree is checked.
FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null | grep -v '^tests/fuzz/corpus/')

format:
	clang-format -i $(FORMAT_FILES)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_FILES) && \
		echo "format-check: $(words $(FORMAT_FILES)) files as .clang-format has them"

clean:
	rm -rf $(BUILD)/cvminit $(BUILD)/unit $(GEN) $(BUILD)/test-work

distclean:
	rm -rf $(BUILD)

# --- benchmark: cvminit against a systemd-based node (not part of check; takes a while) ---
# Builds both images (build/bench/), boots them alternately under QEMU (TCG, OVMF, swtpm)
# and writes build/bench/report.md, docs/benchmarks.md's results and docs/benchmarks.svg.
# BENCH_N later boots per image (default 2), BENCH_FIRST first boots (default 1): about
# 30 min on a 2-core host, where a systemd boot under TCG takes 4-6 min.
BENCH_N ?= 2
BENCH_FIRST ?= 1
bench: host-deps
	$(MAKE) all $(BUILD)/kubelet-standin $(BUILD)/cvm-join $(BUILD)/cvm-measure $(DEV_JOIN_KEY)
	BENCH_COMMAND="make bench BENCH_N=$(BENCH_N) BENCH_FIRST=$(BENCH_FIRST)" \
		python3 tests/bench/bench.py -n $(BENCH_N) --first $(BENCH_FIRST) --docs

# How cvminit's first and later boots grow with the state volume (256 MiB, 2 GiB, 8 GiB,
# sparse; with and without integrity) and the number of services (1, 4, 8): four more
# image variants and 18 boots, about 30 min; the table goes into docs/benchmarks.md.
bench-growth: host-deps
	$(MAKE) all $(BUILD)/kubelet-standin $(BUILD)/cvm-join $(BUILD)/cvm-measure $(DEV_JOIN_KEY)
	nice python3 tests/bench/bench.py --growth --docs

# The attacker of tests/qemu/test_seal.py: a static /init for the image's bare kernel that
# replays PCRs 11 and 15 and tries to unseal (a test program; never in an image).
ATTACKER_SRCS := measured-boot/seal.c measured-boot/tpm.c measured-boot/eventlog.c \
		 measured-boot/replay.c $(LIB_SRCS)
$(BUILD)/unseal-attacker: tests/fixtures/unseal-attacker.c $(ATTACKER_SRCS) $(INIT_HDRS) \
		$(SYSROOT)/.stamp $(MUSL_SPECS)
	@mkdir -p $(BUILD)
	$(MUSL_CC) $(CSTD) -O2 $(WARN) -Wno-missing-prototypes -isystem $(SYSROOT)/include \
		$(shell $(SYS_PKG) --cflags $(PKG_MODS) 2>/dev/null) $(CPPFLAGS_COMMON) \
		-static -o $@ $< $(ATTACKER_SRCS) $(REL_LIBS)
