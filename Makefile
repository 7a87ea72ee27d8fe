# image-labeler — one verb per target; CI runs `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
STAMP     := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

LAMBDA_ZIP := target/lambda/dispatcher/bootstrap.zip

.PHONY: help setup fmt fmt-check lint build lambda test unit integration clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

setup: $(STAMP) ## Install the pinned local tooling (moto, cargo-lambda, zig, awscli) into .venv
	rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu

fmt: ## Format the code
	cargo fmt --all

fmt-check: ## Fail if the code is not formatted
	cargo fmt --all -- --check

lint: fmt-check ## Format check and clippy with warnings as errors
	cargo clippy --workspace --all-targets -- -D warnings

build: ## Build every binary (debug)
	cargo build --workspace --bins

lambda: setup ## Build the dispatcher Lambda zip for arm64 (provided.al2023)
	cargo lambda build --release --arm64 --output-format zip -p dispatcher
	@ls -l $(LAMBDA_ZIP)

unit: ## Unit, property and fault-injection tests (no local stack)
	cargo test --workspace --exclude integration-tests

integration: setup build ## Integration tests against moto on loopback and cargo-lambda's emulator
	cargo test -p integration-tests -- --test-threads=2

test: setup lint lambda ## Every test: lint, unit, integration, Lambda packaging
	cargo test --workspace --no-fail-fast -- --test-threads=2

clean: ## Remove build output and the local tooling
	cargo clean
	rm -rf $(VENV) .local
