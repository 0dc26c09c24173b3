SHELL := bash -o pipefail
.DEFAULT_GOAL := help

PYTHON ?= python3
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

.PHONY: install
install: ## Install the package with operator, test and benchmark extras (editable)
	$(PYTHON) -m pip install -e '.[operator,test,bench]'

.PHONY: run
run: ## Run the example app locally in one process (no Redis, no cluster): http://127.0.0.1:8000/
	$(PYTHON) -m channelapp dev $(APP) --host $(HOST) --port $(PORT)

.PHONY: lint
lint: ## ruff check + format check, chart lint
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

.PHONY: format
format: ## Apply ruff fixes and formatting
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

##@ Test

.PHONY: test
test: lint ## Run everything: unit, Redis, control-plane, e2e and browser tests
	$(PYTHON) -m pytest -ra $(PYTEST_ARGS)

.PHONY: test-fast
test-fast: ## Only the tests that need neither a cluster nor a browser
	$(PYTHON) -m pytest -ra -m 'not cluster and not browser' $(PYTEST_ARGS)

.PHONY: bench
bench: ## Run the benchmarks (layer, websocket, fanout, autoscale) and print their tables
	$(PYTHON) -m bench.layer
	$(PYTHON) -m bench.websocket
	$(PYTHON) -m bench.fanout
	$(PYTHON) -m bench.autoscale

##@ Cluster

.PHONY: cluster-tools
cluster-tools: ## Build kube-apiserver, controller-manager, scheduler, helm and kwok from Go modules (cached)
	bash hack/cluster/build.sh

.PHONY: cluster
cluster: cluster-tools ## Start a local control plane (etcd, apiserver, controller-manager, scheduler, kwok)
	$(PYTHON) -m tests.support.controlplane up

.PHONY: cluster-down
cluster-down: ## Stop the local control plane and remove its data
	$(PYTHON) -m tests.support.controlplane down

##@ Images

.PHONY: images
images: ## Build the app and operator images with docker or podman
	bash images/build.sh

##@ Deploy

.PHONY: chart-crd
chart-crd: ## Copy operator/crd/channelapps.yaml into the chart (a test checks they match)
	cp operator/crd/channelapps.yaml charts/channelapp-operator/files/channelapps.yaml

.PHONY: deploy
deploy: ## helm install the operator and apply the sample ChannelApp into the current kubectl context
	$(HELM) upgrade --install channelapp-operator charts/channelapp-operator \
	  --namespace $(NAMESPACE) --create-namespace --wait
	$(KUBECTL) apply -f examples/chat.yaml

.PHONY: undeploy
undeploy: ## Remove the sample ChannelApp and the operator
	-$(KUBECTL) delete -f examples/chat.yaml --wait=true
	$(HELM) uninstall channelapp-operator --namespace $(NAMESPACE)
