# Wire-contract tooling for protos/ (see protos/README.md).
#
# Works standalone (`make -f make/protos.mk protos`) and included from the main Makefile
# (`include make/protos.mk`). Recipes run from the repository root, found from this file's
# location, so relative tool paths such as the default PYTHON/BUF resolve there.
# Everything is offline: no BSR, no remote plugins; the breaking baseline is a committed image.

PROTOS_MK_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
PROTOS_MK_STANDALONE := $(if $(filter 1,$(words $(MAKEFILE_LIST))),yes,)
PROTOS_MK_SAVED_GOAL := $(.DEFAULT_GOAL)

PYTHON ?= .venv/bin/python
BUF ?= .venv/bin/buf

PROTOS_DIR := protos
PROTOS_GEN := $(PROTOS_DIR)/gen
PROTOS_RELEASED := $(PROTOS_DIR)/released/tongban-v1.binpb
# buf keeps a cache under HOME; without it (bare CI sandboxes) it would write ./v3/, so point it at TMPDIR.
PROTOS_BUF = $(if $(BUF_CACHE_DIR)$(XDG_CACHE_HOME)$(HOME),,BUF_CACHE_DIR="$${TMPDIR:-/tmp}/buf-cache" )$(BUF)
# Console scripts of mypy-protobuf, taken from PYTHON's environment so the venv need not be on PATH.
PROTOS_SCRIPTS_DIR = $(shell cd $(PROTOS_MK_ROOT) && $(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
PROTOC_GEN_MYPY ?= $(PROTOS_SCRIPTS_DIR)/protoc-gen-mypy
PROTOC_GEN_MYPY_GRPC ?= $(PROTOS_SCRIPTS_DIR)/protoc-gen-mypy_grpc

# protos_generate(out_dir): generate the Python package tongban.v1 into an empty out_dir.
# Sorted inputs, fixed flags and a fixed marker-file content keep the output byte-reproducible
# for a given grpcio-tools / mypy-protobuf version.
define protos_generate
	set -eu; \
	out="$(1)"; \
	wkt="$$($(PYTHON) -c 'import os, grpc_tools; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"; \
	files="$$(cd $(PROTOS_DIR) && find tongban -name '*.proto' | LC_ALL=C sort)"; \
	test -n "$$files" || { echo "no .proto files under $(PROTOS_DIR)/" >&2; exit 1; }; \
	mkdir -p "$$out"; \
	$(PYTHON) -m grpc_tools.protoc \
	  -I $(PROTOS_DIR) -I "$$wkt" \
	  --plugin=protoc-gen-mypy=$(PROTOC_GEN_MYPY) \
	  --plugin=protoc-gen-mypy_grpc=$(PROTOC_GEN_MYPY_GRPC) \
	  --python_out="$$out" --grpc_python_out="$$out" \
	  --mypy_out=quiet:"$$out" --mypy_grpc_out=quiet:"$$out" \
	  $$(cd $(PROTOS_DIR) && for f in $$files; do printf '%s ' "$$f"; done); \
	for d in $$(cd "$$out" && find tongban -type d | LC_ALL=C sort); do \
	  printf '"""Generated from $(PROTOS_DIR)/%s by `make protos`. Do not edit."""\n' "$$d" > "$$out/$$d/__init__.py"; \
	done; \
	: > "$$out/tongban/py.typed"
endef

.PHONY: protos protos-check protos-lint protos-format protos-breaking protos-release

## protos: regenerate protos/gen/ (the committed Python package tongban.v1) from protos/
protos:
	@cd $(PROTOS_MK_ROOT) && set -eu; \
	tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	$(call protos_generate,$$tmp/gen); \
	rm -rf $(PROTOS_GEN); \
	mkdir -p $(PROTOS_GEN); \
	cp -R "$$tmp/gen/." $(PROTOS_GEN)/; \
	echo "generated $(PROTOS_GEN)/tongban"

## protos-lint: buf lint (STANDARD) on the module in protos/
protos-lint:
	@cd $(PROTOS_MK_ROOT) && $(PROTOS_BUF) lint

## protos-format: rewrite the .proto files in buf's canonical format
protos-format:
	@cd $(PROTOS_MK_ROOT) && $(PROTOS_BUF) format -w

## protos-breaking: FILE-level breaking check against the released image
protos-breaking:
	@cd $(PROTOS_MK_ROOT) && set -eu; \
	test -f $(PROTOS_RELEASED) || { echo "missing $(PROTOS_RELEASED): run make protos-release" >&2; exit 1; }; \
	$(PROTOS_BUF) breaking $(PROTOS_DIR) --against $(PROTOS_RELEASED)

## protos-check: lint, format, breaking, and generated code up to date (CI gate)
protos-check: protos-lint protos-breaking
	@cd $(PROTOS_MK_ROOT) && set -eu; \
	$(PROTOS_BUF) format --diff --exit-code || { echo "protos are not formatted: run make protos-format" >&2; exit 1; }; \
	tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	$(call protos_generate,$$tmp/gen); \
	if ! diff -r -x __pycache__ "$$tmp/gen" $(PROTOS_GEN); then \
	  echo "generated code is stale: run make protos" >&2; exit 1; \
	fi; \
	echo "protos OK: lint, format, breaking, generated code up to date"

## protos-release: rebuild the released image (deliberate step when a release ships)
protos-release: protos-lint
	@cd $(PROTOS_MK_ROOT) && set -eu; \
	mkdir -p $(dir $(PROTOS_RELEASED)); \
	$(PROTOS_BUF) build $(PROTOS_DIR) -o $(PROTOS_RELEASED); \
	echo "wrote $(PROTOS_RELEASED): commit it with the release"

# Standalone, `make -f make/protos.mk` regenerates; included, the includer's default goal is kept.
ifeq ($(PROTOS_MK_STANDALONE),yes)
.DEFAULT_GOAL := protos
else
.DEFAULT_GOAL := $(PROTOS_MK_SAVED_GOAL)
endif
