SHELL := bash -o pipefail
.DEFAULT_GOAL := help

SYSTEM_PYTHON ?= python3
VENV ?= .venv
# Debian's python3 refuses `pip install` (externally managed): `make install` makes the project's
# own virtualenv, and every target runs with it once it is there (else with python3, e.g. on a
# machine whose python3 already has the packages).
PYTHON ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,$(SYSTEM_PYTHON))
APP ?= channelapp.examples.chat:app
HOST ?= 127.0.0.1
PORT ?= 8000
NAMESPACE ?= channelapp-system
HELM ?= helm
KUBECTL ?= kubectl
PYTEST_ARGS ?=

##@ General

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
	  /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

$(VENV)/bin/python:
	@$(SYSTEM_PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "make: channelapp needs Python 3.11+, $(SYSTEM_PYTHON) is $$($(SYSTEM_PYTHON) -V 2>&1)" >&2; exit 1; }
	@$(SYSTEM_PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "make: $(SYSTEM_PYTHON) cannot make a virtualenv; on Debian: apt-get install python3-venv" >&2; exit 1; }

.PHONY: install
install: $(VENV)/bin/python ## Install the runtime alone (what `make run` needs) into .venv (editable)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e .

.PHONY: install-dev
install-dev: $(VENV)/bin/python ## Install with the operator, test and benchmark extras into .venv
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[operator,test,bench]'

.PHONY: run
run: ## Run the example app locally in one process (no Redis, no cluster): http://127.0.0.1:8000/
	$(PYTHON) -m channelapp dev $(APP) --host $(HOST) --port $(PORT)

.PHONY: lint
lint: ## ruff check + format check, mypy (strict) over app/, operator/ and devtools/
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

.PHONY: format
format: ## Apply ruff fixes and formatting
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

##@ Test

.PHONY: test
test: lint ## Run everything: unit, Redis, control-plane, e2e and browser tests, then the real-node tier
	$(PYTHON) -m pytest -ra $(PYTEST_ARGS)
	$(MAKE) test-realnode

.PHONY: test-realnode
test-realnode: cluster-tools node-tools test-images ## Real pods on a real node (root, containerd): helm-installed operator, chat, autoscaling, failures, teardown
	$(PYTHON) -m pytest -rA -m realnode tests/realnode $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: ## Only the tests that need neither a cluster nor a browser
	$(PYTHON) -m pytest -ra -m 'not cluster and not browser' $(PYTEST_ARGS)

.PHONY: bench
bench: ## Run the benchmarks (layer, websocket, fanout, idle sockets, sync HTTP, autoscaling, operator scale), print their tables and draw bench/report/
	$(PYTHON) -m bench.layer
	$(PYTHON) -m bench.websocket
	$(PYTHON) -m bench.fanout
	$(PYTHON) -m bench.idle_sockets
	$(PYTHON) -m bench.sync_http
	$(PYTHON) -m bench.autoscale
	$(PYTHON) -m bench.autoscale_steady
	$(PYTHON) -m bench.autoscale_processes
	$(PYTHON) -m bench.operator_scale
	$(PYTHON) -m bench.report

##@ Cluster

.PHONY: cluster-tools
cluster-tools: ## Build kube-apiserver, controller-manager, scheduler, helm and kwok from Go modules (cached)
	bash hack/cluster/build.sh

.PHONY: cluster
cluster: cluster-tools ## Start a local control plane (etcd, apiserver, controller-manager, scheduler, kwok); NODE=real adds a real node (root)
ifeq ($(NODE),real)
	$(MAKE) node-tools
	$(PYTHON) -m devtools.realnode up
else
	$(PYTHON) -m devtools.controlplane up
endif

.PHONY: cluster-down
cluster-down: ## Stop the local control plane (and a real node: its pods, processes, mounts, network, cgroups) and remove its data
	$(PYTHON) -m devtools.realnode down
	$(PYTHON) -m devtools.controlplane down

.PHONY: node-tools
node-tools: ## Build kubelet, kube-proxy, CoreDNS and the pause image of the real node (cached)
	bash hack/cluster/build-node.sh

.PHONY: test-images
test-images: ## Build the images the real node runs with podman, on a Debian-made base (cached by content hash)
	bash hack/images/build.sh

##@ Images

.PHONY: images
images: ## Build the app and operator images with docker or podman
	bash images/build.sh

##@ Deploy

.PHONY: chart-crd
chart-crd: ## Copy operator/crd/channelapps.yaml into the chart (a test checks they match)
	cp operator/crd/channelapps.yaml charts/channelapp-operator/files/channelapps.yaml

DEPLOY = $(PYTHON) -m devtools.deploy --namespace $(NAMESPACE) --kubectl $(KUBECTL) --helm $(HELM)

.PHONY: deploy
deploy: ## helm install the operator and the sample ChannelApp (KUBECONFIG, else make cluster's), wait Ready, print its URL
	$(DEPLOY) up

.PHONY: undeploy
undeploy: ## Remove the sample ChannelApp and the operator
	$(DEPLOY) down
