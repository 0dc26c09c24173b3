//go:build tools

// Package tools pins the Kubernetes node commands built for the real test node:
// kubelet and kube-proxy. A module of its own (with the same replace directives
// as ../kubernetes) so the control plane's go.sum, and so its build stamps, stay put.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
