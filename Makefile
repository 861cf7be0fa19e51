# nodeagent: `make run` brings up a local cluster with this node in it, `make test` runs every test.
# Both need root on Debian and install what is missing (see hack/).
SHELL := /bin/bash
export PATH := /var/cache/nodeagent/bin:/usr/local/go/bin:$(PATH)
VERSION ?= v0.1.0-$(shell git rev-parse --short HEAD 2>/dev/null || echo dev)

.PHONY: build install run stop test unit e2e lint images conformance drills bench-pods bench-idle bench-footprint bench-nodeapi bench-proxy bench-dns bench-logs

build:
	go build -ldflags "-X main.version=$(VERSION)" -o bin/nodeagent ./cmd/nodeagent

# nodeagent as a systemd service on this machine (binary, unit, /etc/nodeagent/config.yaml, state directories).
install: build
	hack/install.sh

run:
	hack/run.sh

stop:
	hack/stop.sh

images:
	go run ./hack/imagebuild --out /var/cache/nodeagent/images

# Everything CI checks: lint, unit tests, then end-to-end tests against a real control plane and containerd.
test:
	hack/test.sh

unit:
	go test -count=1 ./pkg/... ./cmd/... ./internal/...

e2e:
	NODEAGENT_E2E=1 go test -count=1 -timeout 30m -v ./test/e2e/...

lint:
	hack/lint.sh

# The upstream node conformance specs against the cluster of make run (not part of make test; see docs/CONFORMANCE.md).
conformance:
	hack/conformance.sh

# The fault drills (kill -9, API server and log receiver down, containerd restart, full buffer disk, upgrade)
# and their table, as in docs/RELIABILITY.md. Not part of make test: about 20 minutes.
drills:
	hack/drills.sh

bench-pods:
	go run ./hack/bench pods --pods 30,110

bench-idle:
	go run ./hack/bench idle

bench-footprint:
	go run ./hack/bench footprint

bench-nodeapi:
	go run ./hack/bench nodeapi

bench-proxy:
	go run ./hack/bench proxy

bench-dns:
	go run ./hack/bench dns

bench-logs:
	go run ./hack/bench logs
	go run ./hack/bench logs --line-bytes 1024
