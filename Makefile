# containerd-shim-autokill-v1: build, dependencies and test tiers. Run the test targets as root.
SHELL := /bin/bash
GO ?= go
AUTOKILL_CACHE ?= /var/cache/autokill
export AUTOKILL_CACHE

SHIM := $(CURDIR)/bin/containerd-shim-autokill-v1
IMAGE_TAR := $(AUTOKILL_CACHE)/images/busybox.tar

.PHONY: all build deps image test-unit test-host test-vm test demo clean

all: build

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/autokill/containerd-shim-autokill-v1/pkg/shim.Version=$(VERSION) \
	-X github.com/autokill/containerd-shim-autokill-v1/pkg/shim.Revision=$(REVISION)

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/containerd-shim-autokill-v1 ./cmd/containerd-shim-autokill-v1

# Debian's containerd 1.6/runc/crun/busybox-static, containerd 2.4.2 built from the module proxy,
# and the busybox OCI image tar.
deps:
	hack/deps.sh
	hack/build-image.sh $(IMAGE_TAR)

image:
	hack/build-image.sh $(IMAGE_TAR)

test-unit:
	$(GO) vet ./...
	$(GO) test -race ./pkg/... ./internal/... ./cmd/... ./bench/...

# Integration tests on this host's kernel, against containerd 1.6 and 2.4.2.
test-host: build
	AUTOKILL_SHIM=$(SHIM) AUTOKILL_IMAGE_TAR=$(IMAGE_TAR) hack/test-host.sh

# Integration tests inside a Linux 7.x VM (native pidfd autokill).
test-vm:
	@if [ ! -x hack/vm/run-tests.sh ]; then \
		echo "test-vm: hack/vm/run-tests.sh does not exist (yet); the VM tier cannot run" >&2; exit 1; \
	fi
	$(MAKE) build
	hack/vm/run-tests.sh

# Sequential on purpose: each tier needs the previous one's results.
test:
	$(MAKE) deps
	$(MAKE) test-unit
	$(MAKE) test-fuzz
	$(MAKE) test-host
	$(MAKE) bench-quick
	$(MAKE) test-vm

demo:
	hack/demo.sh

# Every Go fuzz target for FUZZTIME each (hack/fuzz.sh). Crashers land in the package's
# testdata/fuzz/ and fail the target: keep them there.
.PHONY: test-fuzz
FUZZTIME ?= 20s
FUZZPARALLEL ?= 1
FUZZ_TARGETS := internal/spec:FuzzLoadNewPlan internal/spec:FuzzParseMountOptions \
	internal/initsync:FuzzDecode internal/initsync:FuzzRecv internal/mount:FuzzParseOptions \
	pkg/shim:FuzzStartStdin pkg/shim:FuzzGroupID
test-fuzz:
	hack/fuzz.sh $(FUZZTIME) $(FUZZPARALLEL) $(FUZZ_TARGETS)

# Benchmark against containerd's runc shim (docs/bench/, README). BENCH_CONTAINERD=2.4.2 or 1.6,2.4.2
# for the other containerd; bench-quick is the smoke run for the test suite (temp dir, < 2 min).
.PHONY: bench bench-quick
BENCH_CONTAINERD ?= 1.6
bench: build
	BENCH_CONTAINERD=$(BENCH_CONTAINERD) hack/bench.sh full

bench-quick: build
	BENCH_CONTAINERD=$(BENCH_CONTAINERD) hack/bench.sh quick

clean:
	rm -rf bin
