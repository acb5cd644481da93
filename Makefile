# containerd-shim-autokill-v1: build, dependencies and test tiers. Run the test targets as root.
SHELL := /bin/bash
GO ?= go
AUTOKILL_CACHE ?= /var/cache/autokill
export AUTOKILL_CACHE

SHIM := $(CURDIR)/bin/containerd-shim-autokill-v1
IMAGE_TAR := $(AUTOKILL_CACHE)/images/busybox.tar

.PHONY: all build deps deps-cri image lint-sh test-unit test-host test-ref test-vm test test-cri test-cri-ref test-cri-16 demo clean

all: build

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/autokill/containerd-shim-autokill-v1/pkg/shim.Version=$(VERSION) \
	-X github.com/autokill/containerd-shim-autokill-v1/pkg/shim.Revision=$(REVISION)

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/containerd-shim-autokill-v1 ./cmd/containerd-shim-autokill-v1

# Debian's containerd 1.6, runc, crun, busybox-static, shellcheck, apparmor, libseccomp, iptables, iproute2, curl (hack/deps.sh), the containerd versions pinned in hack/lib.sh
# built from the module proxy, and the busybox OCI image tar.
deps:
	hack/deps.sh
	hack/build-image.sh $(IMAGE_TAR)

image:
	hack/build-image.sh $(IMAGE_TAR)

# critest, crictl, the registry and the CNI plugins from the module proxy, and the images critest
# pulls, built from Debian packages (hack/cri/; cached under $(AUTOKILL_CACHE)/cri).
deps-cri:
	hack/cri/tools.sh
	hack/cri/tools.sh $$(cat $$(hack/cri/images.sh | tail -n 1)/digest)

# Every script in hack/ and .ci/ (shellcheck from hack/deps.sh).
lint-sh:
	shellcheck -x hack/*.sh hack/cri/*.sh hack/vm/*.sh hack/vm/init .ci/run
	hack/check-docs.sh

test-unit:
	$(GO) vet ./...
	$(GO) test -race ./pkg/... ./internal/... ./cmd/... ./bench/...

# Integration tests on this host's kernel, against every containerd of hack/lib.sh's
# AK_HOST_VERSIONS (1.6, 1.7, 2.2, 2.4: each start handshake).
test-host: build
	AUTOKILL_SHIM=$(SHIM) AUTOKILL_IMAGE_TAR=$(IMAGE_TAR) hack/test-host.sh

# The runtime-agnostic integration tests (TestAPI*, TestCtr*) against containerd's runc shim on one
# containerd: they must describe runc's behaviour, not only ours.
test-ref:
	AUTOKILL_IMAGE_TAR=$(IMAGE_TAR) hack/test-host.sh ref

# Integration tests inside a Linux 7.x VM (native pidfd autokill).
test-vm: build
	hack/vm/run-tests.sh

# critest (cri-tools) through containerd 2.4's CRI with our shim as the only and default runtime
# handler, then hack/cri/crictl-test.sh on the same CRI (hack/cri/critest.sh; AUTOKILL_CRI_ARGS for
# critest/ginkgo flags). test-cri-ref: the same with containerd's runc shim.
test-cri: build deps-cri
	AUTOKILL_SHIM=$(SHIM) hack/cri/critest.sh

test-cri-ref: deps-cri
	AUTOKILL_CRI_RUNTIME=io.containerd.runc.v2 hack/cri/critest.sh

# Through Debian's containerd 1.6 CRI (config version 2). The two specs skipped fail with
# containerd's runc shim too: 1.6's CRI answers NotFound to a StopPodSandbox or StopContainer of an
# unknown id (fixed in 1.7); every other spec that passes with runc there must pass.
CRI_16_SKIP := -ginkgo.skip=Idempotence.(StopPodSandbox|StopContainer).should.not.return.an.error.if.not.found
test-cri-16: build deps-cri
	AUTOKILL_SHIM=$(SHIM) AUTOKILL_CRI_CONTAINERD=1.6 AUTOKILL_CRI_ARGS="$(CRI_16_SKIP)" hack/cri/critest.sh

# The same inside the Linux 7.x VM (native mode, cgroup v2; hack/vm/run.sh): registry, CNI and
# containerd run in the guest. Slow under TCG: CRI_VM_TIMEOUT seconds, boot included.
.PHONY: test-cri-vm
CRI_VM_TIMEOUT ?= 1500
CRI_VM_REPORT := $(CURDIR)/bin/cri-vm-report
test-cri-vm: build deps-cri
	mkdir -p $(CRI_VM_REPORT)
	AUTOKILL_SHIM=$(SHIM) AUTOKILL_CRI_REPORT=$(CRI_VM_REPORT) AUTOKILL_CRI_TIMEOUT=20m \
		hack/vm/run.sh --timeout $(CRI_VM_TIMEOUT) --rw $(CRI_VM_REPORT) -- hack/cri/critest.sh

# The same with the systemd cgroup driver (hack/cri/runtime-systemd.toml), in the VM booted with
# Debian's systemd as pid 1.
.PHONY: test-cri-vm-systemd
CRI_VM_SYSTEMD_REPORT := $(CURDIR)/bin/cri-vm-systemd-report
test-cri-vm-systemd: build deps-cri
	mkdir -p $(CRI_VM_SYSTEMD_REPORT)
	AUTOKILL_VM_INIT=systemd AUTOKILL_SHIM=$(SHIM) AUTOKILL_CRI_SYSTEMD=1 AUTOKILL_CRI_REPORT=$(CRI_VM_SYSTEMD_REPORT) \
		AUTOKILL_CRI_TIMEOUT=20m hack/vm/run.sh --timeout $(CRI_VM_TIMEOUT) --rw $(CRI_VM_SYSTEMD_REPORT) -- hack/cri/critest.sh

# Sequential on purpose: each tier needs the previous one's results.
test:
	$(MAKE) deps
	$(MAKE) lint-sh
	$(MAKE) test-unit
	$(MAKE) test-fuzz
	$(MAKE) test-host
	$(MAKE) test-ref
	$(MAKE) bench-quick
	$(MAKE) test-vm
	$(MAKE) test-cri
	$(MAKE) test-cri-16
	$(MAKE) test-cri-vm

demo:
	hack/demo.sh

# Every Go fuzz target for FUZZTIME each (hack/fuzz.sh). Crashers land in the package's
# testdata/fuzz/ and fail the target: keep them there.
.PHONY: test-fuzz
FUZZTIME ?= 20s
FUZZPARALLEL ?= 1
FUZZ_TARGETS := internal/spec:FuzzLoadNewPlan internal/spec:FuzzParseMountOptions \
	internal/initsync:FuzzDecode internal/initsync:FuzzRecv internal/mountopt:FuzzParseOptions \
	pkg/shim:FuzzStartStdin pkg/shim:FuzzGroupID
test-fuzz:
	hack/fuzz.sh $(FUZZTIME) $(FUZZPARALLEL) $(FUZZ_TARGETS)

# Benchmark against containerd's runc shim (docs/bench/, README). BENCH_CONTAINERD=2.4 or 1.6,2.4
# for other containerd versions (hack/lib.sh); bench-quick is the smoke run for the test suite (temp dir, < 2 min).
.PHONY: bench bench-quick
BENCH_CONTAINERD ?= 1.6
bench: build
	BENCH_CONTAINERD=$(BENCH_CONTAINERD) hack/bench.sh full

bench-quick: build
	BENCH_CONTAINERD=$(BENCH_CONTAINERD) hack/bench.sh quick

clean:
	rm -rf bin
